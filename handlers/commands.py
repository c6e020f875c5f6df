"""Slash commands: `/deploy` (a deploy request, or one of its subcommands status, history, lock, unlock, help)
and `/rollback`; handlers.parsing turns the text into one typed model and HANDLERS picks the function. Each
listener parses, does the cheap checks, acks within Slack's 3 seconds, and hands anything slow (artifact checks,
reading hosts over SSH, Slack calls) to the bot's executor, answering later through the command's response_url.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from slack_bolt import Ack, App

from bot.domain import AuditAction
from bot.executors import Busy
from bot.service import Refused
from handlers import blocks
from handlers.context import Bot
from handlers.parsing import (
    COMMANDS,
    Args,
    DeployArgs,
    HistoryArgs,
    LockArgs,
    RollbackArgs,
    StatusArgs,
    UnlockArgs,
    UsageError,
    parse,
)

log = logging.getLogger(__name__)
BUSY = ":hourglass: deploybot is busy right now; try again in a minute."


def register(app: App, bot: Bot) -> None:
    """`/deploy` (with its subcommands status, history, lock, unlock, help) and `/rollback`: see handlers.parsing."""
    for name in COMMANDS:
        app.command(name)(_listener(name, bot))


def _listener(name: str, bot: Bot) -> Callable[..., None]:
    def listener(ack: Ack, command: dict) -> None:
        try:
            args = parse(name, command.get("text", ""))
        except UsageError as exc:
            ack(response_type="ephemeral", text=exc.text)
            return
        try:
            HANDLERS[type(args)](bot, command, ack, args)
        except UsageError as exc:
            ack(response_type="ephemeral", text=exc.text)
        except Refused as exc:
            ack(response_type="ephemeral", text=f":no_entry: {exc}")
        except Busy as exc:
            log.warning("%s: %s", name, exc)
            ack(response_type="ephemeral", text=BUSY)

    listener.__name__ = f"command_{name.strip('/')}"
    return listener


def _reply(bot: Bot, command: dict, text: str, body: list | None = None, in_channel: bool = False) -> None:
    payload = {"response_type": "in_channel" if in_channel else "ephemeral", "text": text, "replace_original": False}
    if body:
        payload["blocks"] = body
    bot.respond(command["response_url"], payload)


# ---- /deploy ----------------------------------------------------------------------------------------------
def deploy(bot: Bot, command: dict, ack: Ack, args: DeployArgs) -> None:
    user = command["user_id"]
    bot.service.requests.environment(args.env, user)  # unknown env: refused and audited, answered at once
    bot.service.requests.check_version(args.env, args.version, user)
    if args.dry_run:
        ack(response_type="ephemeral", text=f"Planning `{blocks.esc(args.env)}` {blocks.esc(args.version)} (dry run)…")
        bot.job(_dry_run, bot, command, args)
        return
    ack(response_type="ephemeral", text=f"Checking `/deploy {blocks.esc(args.env)} {blocks.esc(args.version)}`…")
    bot.job(_request_deploy, bot, command, args)


def _dry_run(bot: Bot, command: dict, args: DeployArgs) -> None:
    try:
        lines = bot.service.requests.describe_plan(args.env, args.version, command["user_id"])
    except Refused as exc:
        _reply(bot, command, f":no_entry: {exc}")
        return
    _reply(bot, command, "Dry run, nothing ran:\n```" + blocks.esc("\n".join(lines), 2800) + "```")


def _request_deploy(bot: Bot, command: dict, args: DeployArgs) -> None:
    try:
        dep = bot.service.requests.deploy(
            args.env,
            args.version,
            command["user_id"],
            meta={"slack_channel": command["channel_id"]},
            confirm_migration=args.confirm_migration,
            override_alarms=args.override_alarms,
        )
    except Refused as exc:
        _reply(bot, command, f":no_entry: {exc}")
        return
    bot.announce(dep.id, command["channel_id"], command.get("response_url"))


# ---- /rollback: a modal, opened while the trigger_id is fresh ------------------------------------------
def rollback(bot: Bot, command: dict, ack: Ack, args: RollbackArgs) -> None:
    env = args.env or _only_env(bot)
    if env is None:
        raise UsageError("/rollback", "Which environment? (" + ", ".join(sorted(bot.service.config.environments)) + ")")
    requests = bot.service.requests
    requests.environment(env, command["user_id"])
    if args.version is not None:
        requests.check_version(env, args.version, command["user_id"])
    if requests.rollback_options(env).previous_good is None and args.version is None:
        requests.refuse(
            command["user_id"], AuditAction.REFUSED, env, None, f"no previous good release of {env} to roll back to"
        )
    ack()
    bot.job(open_rollback_modal, bot, command["trigger_id"], env, command["channel_id"], args.version)


def open_rollback_modal(bot: Bot, trigger_id: str, env: str, channel: str, version: str | None = None) -> None:
    options = bot.service.requests.rollback_options(env)
    bot.client.views_open(trigger_id=trigger_id, view=blocks.rollback_modal(options, channel, version))


def _only_env(bot: Bot) -> str | None:
    envs = list(bot.service.config.environments)
    return envs[0] if len(envs) == 1 else None


# ---- /deploy status, history, lock, unlock ------------------------------------------------------------------
def status(bot: Bot, command: dict, ack: Ack, args: StatusArgs) -> None:
    if args.env:
        bot.service.environments.environment(args.env, command["user_id"])
    ack(response_type="ephemeral", text="Reading the hosts…")
    bot.job(_status, bot, command, args.env)


def _status(bot: Bot, command: dict, env: str | None) -> None:
    try:
        text, body = blocks.status_blocks(bot.status(env))
    except Refused as exc:
        _reply(bot, command, f":no_entry: {exc}")
        return
    _reply(bot, command, text, body)


def history(bot: Bot, command: dict, ack: Ack, args: HistoryArgs) -> None:
    ack(response_type="ephemeral", text=blocks.history_text(bot.service.environments.history(args.env, limit=15)))


def lock(bot: Bot, command: dict, ack: Ack, args: LockArgs) -> None:
    held = bot.service.locks.lock(args.env, command["user_id"], args.reason)
    ack(
        response_type="in_channel",
        text=f":lock: *{blocks.esc(held.environment)}* locked by {blocks.user(held.holder)}: "
        f"{blocks.esc(held.reason)}. No deploy starts until `/deploy unlock {blocks.esc(held.environment)}`.",
    )


def unlock(bot: Bot, command: dict, ack: Ack, args: UnlockArgs) -> None:
    if bot.service.locks.unlock(args.env, command["user_id"]):
        ack(
            response_type="in_channel",
            text=f":unlock: *{blocks.esc(args.env)}* unlocked by {blocks.user(command['user_id'])}.",
        )
    else:
        ack(response_type="ephemeral", text=f"{blocks.esc(args.env)} was not locked.")


HANDLERS: dict[type[Args], Callable[[Bot, dict, Ack, Args], None]] = {
    DeployArgs: deploy,
    RollbackArgs: rollback,
    StatusArgs: status,
    HistoryArgs: history,
    LockArgs: lock,
    UnlockArgs: unlock,
}
