"""`register(app, service, jobs=...)`: wires every Slack listener to one Bot context."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

from slack_bolt import App, BoltResponse
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.webhook import WebhookClient

from bot.service import DeployService
from handlers import actions, commands, home
from handlers.approvers import GroupCache
from handlers.context import Bot, Responder, Submitter
from handlers.progress import ProgressBoard

log = logging.getLogger(__name__)


def retry_handlers() -> list:
    """429 (honouring Retry-After), 5xx and dropped connections are retried by slack_sdk itself."""
    return [
        RateLimitErrorRetryHandler(max_retry_count=5),
        ServerErrorRetryHandler(max_retry_count=3),
        ConnectionErrorRetryHandler(max_retry_count=2),
    ]


def post_response_url(url: str, payload: dict) -> None:
    WebhookClient(url, timeout=10, retry_handlers=retry_handlers()).send_dict(payload)


def register(
    app: App,
    service: DeployService,
    *,
    jobs: Submitter,
    client: WebClient | None = None,
    respond: Responder = post_response_url,
    interval: float = 1.0,
) -> Bot:
    """Subscribe the progress board to the engine and register commands, actions and App Home."""
    client = client or app.client
    board = ProgressBoard(service, client, interval=interval, respond=respond)
    service.events.subscribe(board)
    bot = Bot(service=service, client=client, jobs=jobs, board=board, groups=GroupCache(client), respond=respond)
    app.use(_refuse_while_draining(bot))
    app.error(_answer_unexpected_errors)
    commands.register(app, bot)
    actions.register(app, bot)
    home.register(app, bot)
    return bot


RESTARTING = ":arrows_counterclockwise: deploybot is restarting; try again in a minute."


def _refuse_while_draining(bot: Bot) -> Callable[..., None]:
    """While the bot shuts down, every request is acknowledged and nothing new starts: a command is told to try
    again in a minute; a click or a form only closes."""

    def middleware(body: dict, next: Callable[[], None]) -> BoltResponse | None:  # noqa: A002 - Bolt's name
        if not bot.draining.is_set():
            next()
            return None
        if body.get("command"):  # the answer is the acknowledgement itself
            return BoltResponse(status=200, body={"response_type": "ephemeral", "text": RESTARTING})
        return BoltResponse(status=200, body="")

    return middleware


def _answer_unexpected_errors(error: Exception, body: dict) -> BoltResponse:
    """A listener failed in a way nobody planned for: the person gets a short answer with a reference that is
    also in the log (with the traceback), instead of Slack's bare "dispatch_failed"."""
    ref = secrets.token_hex(4)
    log.error("unexpected error (ref %s) on %s", ref, body.get("command") or body.get("type"), exc_info=error)
    if body.get("command"):
        return BoltResponse(
            status=200,
            body={
                "response_type": "ephemeral",
                "text": f":warning: Something went "
                f"wrong on deploybot's side (ref `{ref}`); nothing was started. "
                "Try again, or give the ref to whoever runs the bot.",
            },
        )
    return BoltResponse(status=200, body="")
