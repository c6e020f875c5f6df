"""Block Kit's small parts (sections, context lines, buttons, confirmations) and the escaping every text goes through.

Everything user-supplied or produced on a host is escaped and passed through the redactor by `esc`, the one
door to Slack, so a secret or a `<!channel>` in a version string can never reach a message. No I/O.
"""

from __future__ import annotations

from bot.domain import DeploymentRecord, Kind
from bot.redact import redact

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


def duration(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f} min"


def deployment_title(dep: DeploymentRecord) -> str:
    """How a deployment is named in its message and in the modals that act on it."""
    verb = "Roll back" if dep.kind is Kind.ROLLBACK else "Deploy"
    return f"{verb} *{esc(dep.version)}* → *{esc(dep.environment)}* (#{dep.id})"
