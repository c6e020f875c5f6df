"""Buttons and modal submissions: approve, reject (with a reason), abort, roll back.

Clicks are acked at once and decided on the bot's executor; the service's compare-and-swap makes double
clicks and simultaneous approvers harmless. Refusals reach only the clicker (chat.postEphemeral) and are
audited by the service. Modal submissions are decided before the ack, so a refusal shows in the modal.
"""

from __future__ import annotations

import json
import logging

from slack_bolt import Ack, App

from bot.domain import DeploymentRecord, State
from bot.service import Refused
from handlers import blocks
from handlers.commands import open_rollback_modal
from handlers.context import Bot

log = logging.getLogger(__name__)


def register(app: App, bot: Bot) -> None:
    def on_approve(ack: Ack, body: dict) -> None:
        ack()
        user, channel, dep_id = _click(body)
        bot.job(approve, bot, user, channel, dep_id)

    def on_reject(ack: Ack, body: dict) -> None:
        ack()
        user, channel, dep_id = _click(body)
        bot.job(open_reject, bot, user, channel, dep_id, body["trigger_id"])

    def on_abort(ack: Ack, body: dict) -> None:
        ack()
        user, channel, dep_id = _click(body)
        bot.job(abort, bot, user, channel, dep_id)

    def on_rollback_open(ack: Ack, body: dict) -> None:
        ack()
        env = body["actions"][0]["value"]
        bot.job(open_rollback_modal, bot, body["trigger_id"], env, _channel(body))

    def on_reject_submit(ack: Ack, body: dict, view: dict) -> None:
        reject_submit(bot, ack, body["user"]["id"], view)

    def on_rollback_submit(ack: Ack, body: dict, view: dict) -> None:
        rollback_submit(bot, ack, body["user"]["id"], view)

    app.action("approve")(on_approve)
    app.action("reject")(on_reject)
    app.action("abort")(on_abort)
    app.action("rollback_open")(on_rollback_open)
    app.view("reject_submit")(on_reject_submit)
    app.view("rollback_submit")(on_rollback_submit)


def _channel(body: dict) -> str:
    return (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id", "")


def _click(body: dict) -> tuple[str, str, int]:
    value = body["actions"][0].get("value", "")
    return body["user"]["id"], _channel(body), int(value) if value.isdigit() else -1


def _caller(bot: Bot, user: str, dep_id: int) -> tuple[DeploymentRecord, list[str]]:
    """The deployment clicked on, and the approver groups the clicker belongs to (for its environment)."""
    dep = bot.service.environments.deployment(dep_id)
    env = bot.service.config.environments.get(dep.environment)
    return dep, bot.groups.groups_of(user, env.approval.approvers) if env else []


def _refused(bot: Bot, channel: str, user: str, dep_id: int, exc: Exception) -> None:
    bot.ephemeral(channel, user, f":no_entry: {exc}")
    bot.board.refresh(dep_id)  # e.g. it expired meanwhile: the buttons go


def approve(bot: Bot, user: str, channel: str, dep_id: int) -> None:
    try:
        _, groups = _caller(bot, user, dep_id)
        result = bot.service.approvals.approve(dep_id, user, groups=groups)
    except Refused as exc:
        return _refused(bot, channel, user, dep_id, exc)
    bot.board.refresh(dep_id)
    if not result.started and result.deployment.state is State.PENDING_APPROVAL:
        bot.ephemeral(
            channel,
            user,
            f"Your approval of #{dep_id} is recorded ({result.approvals}/{result.needed}); "
            "waiting for another approver.",
        )


def open_reject(bot: Bot, user: str, channel: str, dep_id: int, trigger_id: str) -> None:
    try:
        dep, groups = _caller(bot, user, dep_id)
        if (
            not bot.service.approvals.can_approve(dep.environment, user, groups)
            or dep.state is not State.PENDING_APPROVAL
        ):
            bot.service.approvals.reject(dep_id, user, groups=groups)  # refuses, and audits the attempt
    except Refused as exc:
        return _refused(bot, channel, user, dep_id, exc)
    bot.client.views_open(trigger_id=trigger_id, view=blocks.reject_modal(dep, channel))


def reject_submit(bot: Bot, ack: Ack, user: str, view: dict) -> None:
    meta = json.loads(view.get("private_metadata") or "{}")
    dep_id = int(meta.get("deployment", -1))
    reason = (_value(view, "reason") or "").strip()
    try:
        _, groups = _caller(bot, user, dep_id)
        bot.service.approvals.reject(dep_id, user, reason, groups=groups)
    except Refused as exc:
        ack(response_action="errors", errors={"reason": str(exc)[:150]})
        return
    ack()
    bot.board.refresh(dep_id)


def abort(bot: Bot, user: str, channel: str, dep_id: int) -> None:
    try:
        _, groups = _caller(bot, user, dep_id)
        bot.service.approvals.abort(dep_id, user, groups=groups)
    except Refused as exc:
        return _refused(bot, channel, user, dep_id, exc)
    bot.board.refresh(dep_id)


def rollback_submit(bot: Bot, ack: Ack, user: str, view: dict) -> None:
    meta = json.loads(view.get("private_metadata") or "{}")
    env, channel = str(meta.get("env", "")), str(meta.get("channel", ""))
    version = _value(view, "version")
    reason = (_value(view, "reason") or "").strip()
    restore_db = bool(_value(view, "restore_db"))
    if not reason:
        ack(response_action="errors", errors={"reason": "Say why: it goes into the audit trail."})
        return
    try:
        dep = bot.service.requests.rollback(
            env, user, version, reason=reason, restore_db=restore_db, meta={"slack_channel": channel}
        )
    except Refused as exc:
        ack(response_action="errors", errors={"reason": str(exc)[:150]})
        return
    ack()
    bot.job(bot.announce, dep.id, channel)


def _value(view: dict, block: str) -> str | list | None:
    """The submitted value of input `block` (its action_id is the same), whatever the element type."""
    element = ((view.get("state") or {}).get("values") or {}).get(block, {}).get(block) or {}
    if "selected_option" in element:
        return (element["selected_option"] or {}).get("value")
    if "selected_options" in element:
        return [o["value"] for o in element["selected_options"] or []]
    return element.get("value")
