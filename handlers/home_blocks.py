"""App Home as Block Kit: a card per environment (what each host runs, drift, the lock, the running deployment,
the last five), its buttons, and the forms they open (deploy, lock). No I/O: handlers.home gathers the data.

Slack's limits are kept here: at most 100 blocks in a view (cards past that are summed up in one line) and
3000 characters in a text (long host lists are cut with a count of what was left out).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.domain import DeploymentRecord, LockRecord
from bot.service import EnvironmentStatus
from handlers.blocks import Blocks, button, confirm, context, esc, section, user
from handlers.status_blocks import host_line

MAX_BLOCKS = 100
PER_CARD = 5  # section (hosts), section (lock and run), section (last five), actions, divider
TEXT_LIMIT = 2900
RECENT = 5


@dataclass(frozen=True)
class Card:
    """One environment on the App Home: the hosts read live (shared cache), the rest fresh from the store."""

    status: EnvironmentStatus
    lock: LockRecord | None = None
    running: DeploymentRecord | None = None
    recent: list[DeploymentRecord] = field(default_factory=list)
    channel: str | None = None  # where it was last deployed from in Slack
    production: bool = False

    @property
    def env(self) -> str:
        return self.status.environment


def home_view(cards: list[Card], notice: str = "", now: datetime | None = None) -> dict:
    blocks: Blocks = [{"type": "header", "text": {"type": "plain_text", "text": "Deployments"}}]
    if notice:
        blocks.append(section(notice))  # mrkdwn, escaped by whoever wrote it
    room = (MAX_BLOCKS - len(blocks) - 2) // PER_CARD  # keep two for the footer and a "more" line
    for card in cards[:room]:
        blocks += _card(card)
    if len(cards) > room:
        more = ", ".join(esc(c.env) for c in cards[room:])
        blocks.append(
            section(
                esc(f"{len(cards) - room} more environments: ", 200)
                + more[: TEXT_LIMIT - 200]
                + " (`/deploy status ENV`)"
            )
        )
    blocks.append(
        context(
            f"Read {_when(now or datetime.now(UTC))}, each host's version live. The buttons do what "
            "the slash commands do, with the same checks; `/deploy help` lists the commands."
        )
    )
    return {"type": "home", "blocks": blocks}


def _card(card: Card) -> Blocks:
    st, env = card.status, esc(card.env)
    head = (
        f"*{env}*"
        + (" (production)" if card.production else "")
        + f": {esc(st.recorded_version or 'nothing deployed yet')}"
    )
    if st.drift:
        head += "\n:warning: *drift*: the hosts do not all run " + (
            f"{esc(st.recorded_version)}, the last version deploybot deployed"
            if st.recorded_version
            else "the same version"
        )
    hosts = [host_line(h) for h in st.hosts]
    lock = card.lock if card.lock and (card.lock.kind == "manual" or card.running is None) else None
    lock_or_run = [line for line in (_lock(lock), _running(card.running)) if line] or [
        ":unlock: Not locked, nothing running."
    ]
    recent = [_recent(d) for d in card.recent[:RECENT]] or ["No deployments yet."]
    controls = [button("Deploy…", "home_deploy", card.env, "primary"), button("Roll back…", "home_rollback", card.env)]
    if card.lock and card.lock.kind == "manual":
        controls.append(
            button(
                "Unlock",
                "home_unlock",
                card.env,
                None,
                confirm(f"Unlock {card.env[:40]}?", f"Deploys to *{env}* can start again.", "Unlock", "primary"),
            )
        )
    elif not card.lock:
        controls.append(button("Lock…", "home_lock", card.env))
    return [
        section(_fit(head, hosts, f"`/deploy status {env}` lists them all")),
        section("\n".join(lock_or_run)),
        section(_fit("*Last deployments*", recent, "`/deploy history` has more")),
        {"type": "actions", "block_id": f"home-{card.env}"[:255], "elements": controls},
        {"type": "divider"},
    ]


def _lock(lock: LockRecord | None) -> str:
    if lock is None:
        return ""
    if lock.kind == "manual":
        return f":lock: *Locked* by {user(lock.holder)} since {_when(lock.acquired_at)}: _{esc(lock.reason, 300)}_"
    return f":lock: Held by {esc(lock.reason, 300)}"


def _running(dep: DeploymentRecord | None) -> str:
    if dep is None:
        return ""
    stage = f", stage {esc(dep.meta['stage'], 50)}" if dep.meta.get("stage") else ""
    return (
        f":hourglass_flowing_sand: *Running*: #{dep.id} {dep.kind.value} {esc(dep.version, 100)} by "
        f"{user(dep.requested_by)} ({dep.state.value.replace('_', ' ')}{stage})"
    )


def _recent(dep: DeploymentRecord) -> str:
    return (
        f"#{dep.id} {dep.kind.value} *{esc(dep.version, 100)}* {dep.state.value.replace('_', ' ')}, "
        f"by {user(dep.requested_by)}, {_when(dep.finished_at or dep.created_at)}"
    )


def _fit(head: str, lines: list[str], rest: str) -> str:
    """`head` and as many `lines` as fit in one Slack text; the others counted, and where to see them."""
    text, shown = head, 0
    for line in lines:
        if len(text) + len(line) + 80 > TEXT_LIMIT:
            break
        text, shown = f"{text}\n{line}", shown + 1
    return text + (f"\n… and {len(lines) - shown} more: {rest}" if shown < len(lines) else "")


def _when(at: datetime) -> str:
    return f"<!date^{int(at.timestamp())}^{{date_short}} {{time}}|{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC>"


# ---- the forms the buttons open ----------------------------------------------------------------------------
def deploy_modal(
    env: str,
    current: str | None,
    channel: str | None,
    production: bool = False,
    *,
    asks_migration: bool = False,
    has_alarms: bool = False,
) -> dict:
    """Environment fixed, version typed, channel picked: the request is posted there, as `/deploy ENV VERSION`
    typed in that channel would post it. Slack gives the submission a response_url for the picked channel, so a
    channel deploybot cannot post in is reported privately there, as for the slash command. Where the slash
    command would take `confirm-migration` or `override-alarms REASON`, the form has them too."""
    picker: dict = {
        "type": "conversations_select",
        "action_id": "channel",
        "response_url_enabled": True,
        "filter": {"include": ["public", "private"], "exclude_bot_users": True},
    }
    if channel:
        picker["initial_conversation"] = channel
    where = "the channel it was last deployed from" if channel else "the team's deploy channel"
    return {
        "type": "modal",
        "callback_id": "home_deploy_submit",
        "private_metadata": json.dumps({"env": env}),
        "title": {"type": "plain_text", "text": "Deploy"},
        "submit": {"type": "plain_text", "text": "Ask to deploy"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            section(
                f"Deploy to *{esc(env)}*"
                + (" (production)" if production else "")
                + f", which runs *{esc(current or 'nothing yet')}*. The request and its progress are posted "
                f"in the channel below ({where}), where the approvers are asked."
            ),
            {
                "type": "input",
                "block_id": "version",
                "label": {"type": "plain_text", "text": "Version"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": "version",
                    "max_length": 100,
                    "placeholder": {"type": "plain_text", "text": "e.g. v1.4.2"},
                },
            },
            {
                "type": "input",
                "block_id": "channel",
                "label": {"type": "plain_text", "text": "Post it in"},
                "hint": {
                    "type": "plain_text",
                    "text": "deploybot posts only where it is a member: /invite @deploybot there first.",
                },
                "element": picker,
            },
            *([_confirm_migration_input()] if asks_migration else []),
            *([_override_alarms_input()] if has_alarms else []),
        ],
    }


def _confirm_migration_input() -> dict:
    return {
        "type": "input",
        "block_id": "confirm_migration",
        "optional": True,
        "label": {"type": "plain_text", "text": "Migration"},
        "element": {
            "type": "checkboxes",
            "action_id": "confirm_migration",
            "options": [
                {
                    "text": {"type": "plain_text", "text": "The old release keeps working with the new schema"},
                    "value": "confirmed",
                }
            ],
        },
    }


def _override_alarms_input() -> dict:
    return {
        "type": "input",
        "block_id": "override_alarms",
        "optional": True,
        "label": {"type": "plain_text", "text": "Start although a CloudWatch alarm fires, because"},
        "hint": {"type": "plain_text", "text": "Leave empty unless you mean it: the reason goes into the audit trail."},
        "element": {"type": "plain_text_input", "action_id": "override_alarms", "max_length": 200},
    }


def lock_modal(env: str) -> dict:
    return {
        "type": "modal",
        "callback_id": "home_lock_submit",
        "private_metadata": json.dumps({"env": env}),
        "title": {"type": "plain_text", "text": "Lock"},
        "submit": {"type": "plain_text", "text": "Lock"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            section(
                f"Freeze *{esc(env)}*: no deploy or rollback starts until it is unlocked. The reason is "
                "shown to whoever is refused, and goes into the audit trail."
            ),
            {
                "type": "input",
                "block_id": "reason",
                "label": {"type": "plain_text", "text": "Reason"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": "reason",
                    "max_length": 200,
                    "placeholder": {"type": "plain_text", "text": "e.g. release freeze"},
                },
            },
        ],
    }
