"""The deployment message, one per deployment and redrawn whole at each state: the approval request, then the
checklist of stages while it runs, then the outcome. No I/O.

The handlers reach all of Block Kit through this module: the small parts and `esc`, the one door to Slack
(handlers/block_kit.py), the status and history answers (handlers/status_blocks.py) and the modals
(handlers/modals.py) are re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from bot.config import Environment
from bot.domain import ApprovalRecord, DeploymentRecord, Kind, State
from handlers.block_kit import (
    Blocks,
    button,
    confirm,
    context,
    deployment_title,
    duration,
    ephemeral,
    esc,
    section,
    user,
)
from handlers.checklist import DONE, FAILED, PENDING, RUNNING, SKIPPED, Checklist
from handlers.modals import reject_modal, rollback_modal
from handlers.status_blocks import history_text, status_blocks

__all__ = [
    "Blocks",
    "button",
    "confirm",
    "context",
    "deployment_message",
    "ephemeral",
    "esc",
    "history_text",
    "log_link",
    "reject_modal",
    "rollback_modal",
    "section",
    "status_blocks",
    "thread_text",
    "user",
]

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
    head = f"{deployment_title(dep)}\nRequested by {user(dep.requested_by)}"
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
        if s.kind == "canary":
            fields[-1] += (
                f": {s.canary_hosts} for {s.canary_seconds:g}s under the gates, then batches of {s.batch_size}"
            )
        needed = env.approval.approvals_required
        fields.append("*Approvers*\n" + ", ".join(_approver(a) for a in env.approval.approvers))
    got = sorted({a.approver for a in approvals if a.decision == "approve"})
    expires = dep.created_at + timedelta(minutes=env.approval.expires_after_minutes if env else 60)
    blocks: Blocks = [
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
        section("*Hosts*\n" + ("\n".join(lines) or "-")),
        *([section(":warning: " + esc(dep.meta["migration_note"]))] if dep.meta.get("migration_note") else []),
        *(
            [section(":rotating_light: CloudWatch alarms overridden: " + esc(dep.meta["override_alarms"]))]
            if dep.meta.get("override_alarms")
            else []
        ),
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
    text = f"*{OUTCOME.get(dep.state, dep.state.value)}* in {duration(dep.seconds)}"
    if dep.failed_stage:
        text += f"\nFailed stage: *{esc(dep.failed_stage)}* on host *{esc(dep.failed_host or '-')}*"
    if dep.error and dep.state is not State.SUCCEEDED:
        text += f"\n```{esc(dep.error, 1500)}```"
    return text
