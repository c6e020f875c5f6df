"""App Home: a dashboard of every environment, and buttons that do what the slash commands do.

The tab is published with views.publish when the user opens it, and again after each of their actions there,
with a notice saying what happened (or why it was refused). The hosts are read through the bot's shared status
cache (Bot.status); locks, the running deployment and the last five are read fresh, so a redraw right after a
lock shows it.

Every button goes through the same service calls as its slash command, and so through the same permission
checks and audit: Deploy… -> requests.deploy then Bot.announce (as `/deploy ENV VERSION`), Roll back… -> the
`/rollback` form and its submission (requests.rollback), Lock… -> locks.lock, Unlock -> locks.unlock. A form's
refusal is shown in the form; a button's, as a notice at the top of the tab (the Home has no channel for an
ephemeral message).

Where a Home deploy is posted: the form's channel picker, preset to the channel the environment was last
deployed from (its latest deployment's `slack_channel`). A rollback from the Home is posted there too; with no
such channel yet, the user is told to use `/rollback` in the deploy channel.
"""

from __future__ import annotations

import json

from pydantic import ValidationError
from slack_bolt import Ack, App

from bot.domain import AuditAction
from bot.executors import Busy
from bot.service import Refused, migrations
from handlers import blocks, home_blocks
from handlers.actions import rollback_submit
from handlers.blocks import esc
from handlers.commands import BUSY
from handlers.context import Bot
from handlers.parsing import MAX_REASON, DeployArgs


def register(app: App, bot: Bot) -> None:
    @app.event("app_home_opened")
    def on_home_opened(event: dict) -> None:
        if event.get("tab", "home") == "home":
            bot.job(publish_home, bot, event["user"])

    def clicked(fn):
        def listener(ack: Ack, body: dict) -> None:
            ack()
            bot.job(fn, bot, body["user"]["id"], body["actions"][0].get("value", ""), body.get("trigger_id", ""))

        listener.__name__ = f"on_{fn.__name__}"
        return listener

    app.action("home_deploy")(clicked(open_deploy_form))
    app.action("home_rollback")(clicked(open_rollback_form))
    app.action("home_lock")(clicked(open_lock_form))
    app.action("home_unlock")(clicked(unlock))

    @app.view("home_deploy_submit")
    def on_deploy_submit(ack: Ack, body: dict, view: dict) -> None:
        deploy_submit(bot, ack, body, view)

    @app.view("home_rollback_submit")
    def on_rollback_submit(ack: Ack, body: dict, view: dict) -> None:
        rollback_submit(bot, ack, body["user"]["id"], view)  # the `/rollback` form's own submission
        bot.job(publish_home, bot, body["user"]["id"])

    @app.view("home_lock_submit")
    def on_lock_submit(ack: Ack, body: dict, view: dict) -> None:
        lock_submit(bot, ack, body["user"]["id"], view)


# ---- drawing ------------------------------------------------------------------------------------------------
def publish_home(bot: Bot, user: str, notice: str = "") -> None:
    bot.client.views_publish(user_id=user, view=home_blocks.home_view(cards(bot), notice))


def cards(bot: Bot) -> list[home_blocks.Card]:
    environments = bot.service.environments
    locks = {lock.environment: lock for lock in environments.locks()}
    out = []
    for st in bot.status(None):
        rows = environments.history(st.environment, limit=20)
        env = bot.service.config.environments.get(st.environment)
        out.append(
            home_blocks.Card(
                st,
                locks.get(st.environment),
                next((d for d in rows if d.state.is_active), None),
                rows[: home_blocks.RECENT],
                last_channel(bot, st.environment, rows),
                bool(env and env.production),
            )
        )
    return out


def last_channel(bot: Bot, env: str, rows: list | None = None) -> str | None:
    """The Slack channel `env` was last deployed from (requests made in the CLI have none)."""
    rows = rows if rows is not None else bot.service.environments.history(env, limit=20)
    return next((str(d.meta["slack_channel"]) for d in rows if d.meta.get("slack_channel")), None)


def _refused(exc: Exception) -> str:
    return f":no_entry: {esc(exc, 500)}"


# ---- buttons ------------------------------------------------------------------------------------------------
def open_deploy_form(bot: Bot, user: str, env: str, trigger_id: str) -> None:
    try:
        config = bot.service.requests.environment(env, user)  # an unknown environment is refused and audited
    except Refused as exc:
        return publish_home(bot, user, _refused(exc))
    view = home_blocks.deploy_modal(
        env,
        bot.service.environments.recorded_version(env),
        last_channel(bot, env),
        config.production,
        asks_migration=migrations.needs_confirmation(config),
        has_alarms=config.alarms is not None,
    )
    bot.client.views_open(trigger_id=trigger_id, view=view)


def open_rollback_form(bot: Bot, user: str, env: str, trigger_id: str) -> None:
    """The `/rollback ENV` form, after the same checks as the slash command."""
    requests = bot.service.requests
    try:
        requests.environment(env, user)
        if requests.rollback_options(env).previous_good is None:
            requests.refuse(user, AuditAction.REFUSED, env, None, f"no previous good release of {env} to roll back to")
    except Refused as exc:
        return publish_home(bot, user, _refused(exc))
    channel = last_channel(bot, env)
    if channel is None:
        return publish_home(
            bot,
            user,
            f":warning: No Slack channel has deployed *{esc(env)}* yet, so I do not know "
            f"where to post the rollback: use `/rollback {esc(env)}` in the deploy channel.",
        )
    view = blocks.rollback_modal(bot.service.requests.rollback_options(env), channel)
    bot.client.views_open(trigger_id=trigger_id, view={**view, "callback_id": "home_rollback_submit"})


def open_lock_form(bot: Bot, user: str, env: str, trigger_id: str) -> None:
    try:
        bot.service.requests.environment(env, user)
    except Refused as exc:
        return publish_home(bot, user, _refused(exc))
    bot.client.views_open(trigger_id=trigger_id, view=home_blocks.lock_modal(env))


def unlock(bot: Bot, user: str, env: str, _trigger_id: str = "") -> None:
    try:
        released = bot.service.locks.unlock(env, user)
    except Refused as exc:
        return publish_home(bot, user, _refused(exc))
    publish_home(
        bot,
        user,
        f":unlock: *{esc(env)}* unlocked: deploys can start again." if released else f"{esc(env)} was not locked.",
    )


# ---- forms: decided before the ack, so a refusal shows in the form ------------------------------------------
def _env(view: dict) -> str:
    return str(json.loads(view.get("private_metadata") or "{}").get("env", ""))


def _element(view: dict, block: str) -> dict:
    return ((view.get("state") or {}).get("values") or {}).get(block, {}).get(block) or {}


def deploy_submit(bot: Bot, ack: Ack, body: dict, view: dict) -> None:
    user, env = body["user"]["id"], _env(view)
    version = (_element(view, "version").get("value") or "").strip()
    channel = _element(view, "channel").get("selected_conversation") or ""
    response_url = next(
        (
            r.get("response_url")
            for r in body.get("response_urls") or []
            if r.get("block_id") == "channel" or r.get("channel_id") == channel
        ),
        None,
    )
    if not channel:
        ack(response_action="errors", errors={"channel": "Pick the channel to post the request in."})
        return
    confirmed = bool(_element(view, "confirm_migration").get("selected_options"))
    typed = _element(view, "override_alarms").get("value") or ""
    try:
        reason = DeployArgs(env=env, version=version, override_alarms=typed)
    except ValidationError:
        ack(response_action="errors", errors={"override_alarms": f"Plain text, at most {MAX_REASON} characters."})
        return
    try:
        dep = bot.service.requests.deploy(
            env,
            version,
            user,
            meta={"slack_channel": channel},
            confirm_migration=confirmed,
            override_alarms=reason.override_alarms.strip(),
        )
    except Refused as exc:
        ack(response_action="errors", errors={"version": str(exc)[:300]})
        return
    ack()
    bot.job(_announce, bot, user, dep.id, channel, response_url)


def _announce(bot: Bot, user: str, dep_id: int, channel: str, response_url: str | None) -> None:
    """What `/deploy` does after recording the request; then the user's Home says where it went."""
    try:
        bot.announce(dep_id, channel, response_url)
    except Refused as exc:
        return publish_home(bot, user, _refused(exc))
    except Busy:
        return publish_home(bot, user, BUSY)
    dep = bot.service.environments.deployment(dep_id)
    publish_home(
        bot,
        user,
        f"Deployment #{dep.id} ({esc(dep.version, 100)} to *{esc(dep.environment)}*) is "
        f"{dep.state.value.replace('_', ' ')}; its message is in <#{channel}>.",
    )


def lock_submit(bot: Bot, ack: Ack, user: str, view: dict) -> None:
    env, reason = _env(view), (_element(view, "reason").get("value") or "").strip()
    try:
        held = bot.service.locks.lock(env, user, reason)
    except Refused as exc:
        ack(response_action="errors", errors={"reason": str(exc)[:300]})
        return
    ack()
    bot.job(publish_home, bot, user, f":lock: *{esc(held.environment)}* locked: no deploy starts until it is unlocked.")
