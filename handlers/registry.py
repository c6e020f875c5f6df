"""`register(app, service, jobs=...)`: wires every Slack listener to one Bot context."""

from __future__ import annotations

from slack_bolt import App
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


def retry_handlers() -> list:
    """429 (honouring Retry-After), 5xx and dropped connections are retried by slack_sdk itself."""
    return [RateLimitErrorRetryHandler(max_retry_count=5), ServerErrorRetryHandler(max_retry_count=3),
            ConnectionErrorRetryHandler(max_retry_count=2)]


def post_response_url(url: str, payload: dict) -> None:
    WebhookClient(url, timeout=10, retry_handlers=retry_handlers()).send_dict(payload)


def register(app: App, service: DeployService, *, jobs: Submitter, client: WebClient | None = None,
             respond: Responder = post_response_url, interval: float = 1.0) -> Bot:
    """Subscribe the progress board to the engine and register commands, actions and App Home."""
    client = client or app.client
    board = ProgressBoard(service, client, interval=interval, respond=respond)
    service.events.subscribe(board)
    bot = Bot(service=service, client=client, jobs=jobs, board=board,
              groups=GroupCache(client), respond=respond)
    commands.register(app, bot)
    actions.register(app, bot)
    home.register(app, bot)
    return bot
