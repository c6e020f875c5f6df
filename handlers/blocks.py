"""Block Kit rendering: records and checklists in, Slack messages and views out. No I/O.

Everything user-supplied or produced on a host is escaped and passed through the redactor here, the one
door to Slack, so a secret or a `<!channel>` in a version string can never reach a message.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from bot.config import Environment
from bot.domain import ApprovalRecord, DeploymentRecord, Kind, State
from bot.redact import redact
from bot.service import EnvironmentStatus, RollbackOptions
from handlers.checklist import DONE, FAILED, PENDING, RUNNING, SKIPPED, Checklist

MARK = {
    DONE: ":white_check_mark:",
    RUNNING: ":hourglass_flowing_sand:",
    PENDING: ":white_circle:",
    FAILED: ":x:",
    SKIPPED: ":heavy_minus_sign:",
}
OUTCOME = {
    State.SUCCEEDED: ":rocket: Succeeded",
    State.FAILED: ":x: Failed",
    State.ROLLED_BACK: ":leftwards_arrow_with_hook: Failed and rolled back",
    State.ROLLBACK_FAILED: ":rotating_light: Failed, and the automatic rollback failed",
    State.CANCELLED: ":no_entry_sign: Cancelled",
    State.INTERRUPTED: ":warning: Interrupted (the bot stopped)",
    State.REJECTED: ":no_entry: Rejected",
    State.EXPIRED: ":hourglass: Expired",
}
Blocks = list[dict]


def esc(text: object, limit: int = 2900) -> str:
    """Redacted and escaped for mrkdwn; long text is cut (Slack's section limit is 3000)."""
    out = redact(str(text)).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return out if len(out) <= limit else out[: limit - 1] + "…"


def user(uid: str) -> str:
    return f"<@{uid}>" if uid and uid[0] in "UW" and uid.isalnum() else esc(uid)


def section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def context(text: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def button(text: str, action_id: str, value: str, style: str | None = None, confirm: dict | None = None) -> dict:
    b = {"type": "button", "text": {"type": "plain_text", "text": text}, "action_id": action_id, "value": value}
    if style:
        b["style"] = style
    if confirm:
        b["confirm"] = confirm
    return b


def confirm(title: str, text: str, yes: str, style: str = "danger") -> dict:
    return {
        "title": {"type": "plain_text", "text": title},
        "text": {"type": "mrkdwn", "text": text},
        "confirm": {"type": "plain_text", "text": yes},
        "deny": {"type": "plain_text", "text": "Cancel"},
        "style": style,
    }


def ephemeral(text: str) -> dict:
    return {"response_type": "ephemeral", "text": text}


def _secs(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _title(dep: DeploymentRecord) -> str:
    verb = "Roll back" if dep.kind is Kind.ROLLBACK else "Deploy"
    return f"{verb} *{esc(dep.version)}* → *{esc(dep.environment)}* (#{dep.id})"


# ---- the deployment message: request, progress, outcome ------------------------------------------------
def log_link(url: str) -> str:
    """A mrkdwn link to a deployment's log page: Slack reads `&amp;` in a link as `&`; `<`, `>`, `|` would end it."""
    return f"<{url.replace('&', '&amp;').replace('<', '%3C').replace('>', '%3E').replace('|', '%7C')}|Full log>"


def thread_text(lines: list[str], link: str | None = None) -> str:
    """Lines for the deployment's thread; the thread's first post leads with the log link."""
    text = esc("\n".join(lines), 3900)
    return f":page_facing_up: {log_link(link)}: every stage on every host, with its output\n{text}" if link else text


def deployment_message(
    dep: DeploymentRecord,
    env: Environment | None,
    approvals: Iterable[ApprovalRecord] = (),
    checklist: Checklist | None = None,
    link: str | None = None,
) -> tuple[str, Blocks]:
    """One message per deployment, redrawn whole at each state: the approval request becomes the checklist.
    `link`: the deployment's log page, shown once it has started."""
    approvals = list(approvals)
    head = f"{_title(dep)}\nRequested by {user(dep.requested_by)}"
    if dep.reason:
        head += f": _{esc(dep.reason, 500)}_"
    blocks: Blocks = [section(head)]
    if dep.state is State.PENDING_APPROVAL:
        blocks += _request(dep, env, approvals)
        text = (
            f"{user(dep.requested_by)} asks to {'roll back' if dep.kind is Kind.ROLLBACK else 'deploy'} "
            f"{esc(dep.version)} to {esc(dep.environment)}: waiting for approval"
        )
        return text, blocks
    approved = [a for a in approvals if a.decision == "approve"]
    if approved:
        blocks.append(context("Approved by " + ", ".join(user(a.approver) for a in approved)))
    if dep.state in (State.REJECTED, State.EXPIRED) or (dep.state is State.CANCELLED and dep.started_at is None):
        blocks.append(section(_closed(dep, approvals)))
        return f"#{dep.id} {dep.state.value.replace('_', ' ')}", blocks
    if checklist and checklist.stages:
        blocks.append(section(_stages(checklist)))
        if len(checklist.hosts) > 1:
            blocks.append(context(_hosts(checklist)))
    if link:
        blocks.append(context(f":page_facing_up: {log_link(link)} · every stage on every host, with its output"))
    if dep.state.is_final:
        blocks.append(section(_outcome(dep)))
        if dep.state in (State.ROLLBACK_FAILED, State.INTERRUPTED) and dep.kind is Kind.DEPLOY:
            # only where hosts may be left on mixed versions: after an automatic rollback (or a failure before
            # any switch) every host serves the previous release already, and a button would invite a second one
            blocks.append(
                {
                    "type": "actions",
                    "block_id": f"done-{dep.id}",
                    "elements": [button("Roll back", "rollback_open", dep.environment, "danger")],
                }
            )
        return f"#{dep.id} {dep.environment} {dep.version}: {dep.state.value.replace('_', ' ')}", blocks
    stage = (checklist.current_stage if checklist else None) or dep.meta.get("stage") or "starting"
    status = "queued" if dep.state is State.APPROVED else f"running: {stage}"
    if dep.meta.get("abort_requested_by"):
        status += f" (abort requested by {user(str(dep.meta['abort_requested_by']))})"
    blocks.append(context(f":hourglass_flowing_sand: {esc(status)}"))
    blocks.append(
        {
            "type": "actions",
            "block_id": f"running-{dep.id}",
            "elements": [
                button(
                    "Abort & roll back",
                    "abort",
                    str(dep.id),
                    "danger",
                    confirm(
                        "Abort this deployment?",
                        "It stops at the next stage boundary and the hosts that "
                        "switched go back to their previous release.",
                        "Abort",
                    ),
                )
            ],
        }
    )
    return f"#{dep.id} {dep.environment} {dep.version}: {status}", blocks


def _request(dep: DeploymentRecord, env: Environment | None, approvals: list[ApprovalRecord]) -> Blocks:
    hosts_now: dict = dep.meta.get("hosts_now") or {}
    lines = [
        f"• `{esc(h)}`: {esc(hosts_now.get(h) or 'nothing')} → *{esc(dep.version)}*" for h in dep.meta.get("hosts", [])
    ]
    fields = [
        f"*Requester*\n{user(dep.requested_by)}",
        f"*Environment*\n{esc(dep.environment)}" + (" (production)" if env and env.production else ""),
    ]
    needed = 1
    if env:
        s = env.strategy
        fields.append(f"*Strategy*\n{s.kind}" + (f", batches of {s.batch_size}" if s.kind == "rolling" else ""))
        needed = env.approval.approvals_required
        fields.append("*Approvers*\n" + ", ".join(_approver(a) for a in env.approval.approvers))
    got = sorted({a.approver for a in approvals if a.decision == "approve"})
    expires = dep.created_at + timedelta(minutes=env.approval.expires_after_minutes if env else 60)
    blocks: Blocks = [
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
        section("*Hosts*\n" + ("\n".join(lines) or "-")),
        context(
            f"Approvals: {len(got)}/{needed}"
            + (f" ({', '.join(user(a) for a in got)})" if got else "")
            + f" · expires <!date^{int(expires.timestamp())}^{{time}}|{expires:%H:%M} UTC>"
        ),
    ]
    production = bool(env and env.production)
    approve_confirm = (
        confirm(
            f"Approve on {dep.environment}?",
            f"This deploys *{esc(dep.version)}* to production *{esc(dep.environment)}*.",
            "Approve",
            "primary",
        )
        if production
        else None
    )
    blocks.append(
        {
            "type": "actions",
            "block_id": f"approval-{dep.id}",
            "elements": [
                button("Approve", "approve", str(dep.id), "primary", approve_confirm),
                button("Reject", "reject", str(dep.id), "danger"),
            ],
        }
    )
    return blocks


def _approver(entry: str) -> str:
    return f"<!subteam^{entry}>" if entry.startswith("S") and entry.isalnum() else user(entry)


def _closed(dep: DeploymentRecord, approvals: list[ApprovalRecord]) -> str:
    if dep.state is State.REJECTED:
        who = next((a for a in approvals if a.decision == "reject"), None)
        why = f": _{esc(who.reason, 500)}_" if who and who.reason else ""
        return f"{OUTCOME[State.REJECTED]} by {user(who.approver) if who else 'an approver'}{why}"
    if dep.state is State.EXPIRED:
        return f"{OUTCOME[State.EXPIRED]}: nobody approved in time. Ask again with `/deploy`."
    return f"{OUTCOME[State.CANCELLED]}" + (f": {esc(dep.error, 500)}" if dep.error else "")


def _stages(c: Checklist) -> str:
    lines = []
    for s in c.stages.values():
        took = f" {s.seconds:.2f}s" if s.status in (DONE, FAILED) else ""
        lines.append(f"{MARK[s.status]} {s.name} — {s.status}{took}")
    return "\n".join(lines)


def _hosts(c: Checklist) -> str:
    return "  ".join(f"{MARK[h.status]} `{esc(h.name)}` {h.stage or 'waiting'}" for h in c.hosts.values())


def _outcome(dep: DeploymentRecord) -> str:
    text = f"*{OUTCOME.get(dep.state, dep.state.value)}* in {_secs(dep.seconds)}"
    if dep.failed_stage:
        text += f"\nFailed stage: *{esc(dep.failed_stage)}* on host *{esc(dep.failed_host or '-')}*"
    if dep.error and dep.state is not State.SUCCEEDED:
        text += f"\n```{esc(dep.error, 1500)}```"
    return text


# ---- status, history ------------------------------------------------------------------------------------
def status_blocks(statuses: list[EnvironmentStatus]) -> tuple[str, Blocks]:
    blocks: Blocks = []
    for st in statuses:
        blocks.append(section(_status_text(st)))
        blocks.append({"type": "divider"})
    return "\n".join(_status_text(st) for st in statuses), blocks[:-1]


def _status_text(st: EnvironmentStatus) -> str:
    drift = " :warning: *drift*" if st.drift else ""
    lines = [f"*{esc(st.environment)}*: {esc(st.recorded_version or 'nothing deployed yet')}{drift}"]
    for h in st.hosts:
        answer = f"answers {esc(h.answering)}" if h.answering else "no health answer"
        lines.append(
            f"• `{esc(h.name)}` current {esc(h.release or '-')}, {answer}"
            + (f" ({esc(h.error, 200)})" if h.error else "")
        )
    if st.in_progress:
        d = st.in_progress
        stage = esc(d.meta.get("stage", "-"))
        lines.append(
            f":hourglass_flowing_sand: in progress: #{d.id} {d.kind.value} {esc(d.version)} by "
            f"{user(d.requested_by)} ({d.state.value.replace('_', ' ')}, stage {stage})"
        )
    if st.last:
        d = st.last
        lines.append(
            f"Last: #{d.id} {d.kind.value} {esc(d.version)} by {user(d.requested_by)} "
            f"{_when(d.finished_at or d.created_at)}: {d.state.value.replace('_', ' ')}"
        )
    if st.lock:
        lines.append(f":lock: locked by {user(st.lock.holder)}: {esc(st.lock.reason, 300)}")
    return "\n".join(lines)


def _when(at: datetime) -> str:
    return f"<!date^{int(at.timestamp())}^{{date_short}} {{time}}|{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC>"


def history_text(rows: list[DeploymentRecord]) -> str:
    if not rows:
        return "No deployments yet."
    lines = []
    for d in rows:
        tail = f" ({esc(d.failed_stage)} on {esc(d.failed_host or '-')})" if d.failed_stage else ""
        lines.append(
            f"#{d.id} {_when(d.created_at)} *{esc(d.environment)}* {d.kind.value} {esc(d.version)} "
            f"{d.state.value.replace('_', ' ')} {_secs(d.seconds)} by {user(d.requested_by)}{tail}"
        )
    return "\n".join(lines)


# ---- modals ---------------------------------------------------------------------------------------------
def rollback_modal(options: RollbackOptions, channel: str, version: str | None = None) -> dict:
    choices = list(dict.fromkeys([v for v in (version, options.previous_good) if v] + options.available))[:100]
    initial = version or options.previous_good
    select: dict = {
        "type": "static_select",
        "action_id": "version",
        "options": [{"text": {"type": "plain_text", "text": v[:75]}, "value": v} for v in choices],
    }
    if initial:
        select["initial_option"] = {"text": {"type": "plain_text", "text": initial[:75]}, "value": initial}
    blocks: Blocks = [
        section(f"Roll back *{esc(options.environment)}* from *{esc(options.current or 'unknown')}*."),
        {
            "type": "input",
            "block_id": "version",
            "label": {"type": "plain_text", "text": "Target version"},
            "element": select,
        },
        {
            "type": "input",
            "block_id": "reason",
            "label": {"type": "plain_text", "text": "Reason"},
            "element": {"type": "plain_text_input", "action_id": "reason", "multiline": True, "max_length": 500},
        },
    ]
    if options.migrations_since:
        blocks.append(
            section(
                ":warning: The deploy being undone ran database migrations. The old release may "
                "not work with the migrated schema; restoring the database backup loses the writes "
                "made since."
            )
        )
        blocks.append(
            {
                "type": "input",
                "block_id": "restore_db",
                "optional": True,
                "label": {"type": "plain_text", "text": "Database"},
                "element": {
                    "type": "checkboxes",
                    "action_id": "restore_db",
                    "options": [
                        {"text": {"type": "plain_text", "text": "Also restore the database backup"}, "value": "yes"}
                    ],
                },
            }
        )
    return {
        "type": "modal",
        "callback_id": "rollback_submit",
        "private_metadata": json.dumps({"env": options.environment, "channel": channel}),
        "title": {"type": "plain_text", "text": "Roll back"},
        "submit": {"type": "plain_text", "text": "Roll back"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": blocks,
    }


def reject_modal(dep: DeploymentRecord, channel: str) -> dict:
    return {
        "type": "modal",
        "callback_id": "reject_submit",
        "private_metadata": json.dumps({"deployment": dep.id, "channel": channel}),
        "title": {"type": "plain_text", "text": "Reject deployment"},
        "submit": {"type": "plain_text", "text": "Reject"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            section(f"Reject {_title(dep)} requested by {user(dep.requested_by)}?"),
            {
                "type": "input",
                "block_id": "reason",
                "optional": True,
                "label": {"type": "plain_text", "text": "Reason (shown in the channel)"},
                "element": {"type": "plain_text_input", "action_id": "reason", "max_length": 300},
            },
        ],
    }
