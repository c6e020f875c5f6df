"""What every listener needs, built once in the composition root and shared: the service, the Slack client,
the bot's own executors, the progress board and the group cache.

Listeners ack within Slack's 3 seconds and hand anything that can take longer (SSH, artifact checks, Slack
calls) to `jobs`; the service runs deployments where the composition root told it to. Both are bounded: when
full, the caller is told to retry (Busy) instead of the bot queueing without limit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from slack_sdk import WebClient

from bot.service import DeployService
from handlers.approvers import GroupCache
from handlers.progress import ProgressBoard

log = logging.getLogger(__name__)
Responder = Callable[[str, dict], None]  # (response_url, message payload)


class Submitter(Protocol):
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future: ...


@dataclass
class Bot:
    service: DeployService
    client: WebClient
    jobs: Submitter
    board: ProgressBoard
    groups: GroupCache
    respond: Responder
    draining: threading.Event = field(default_factory=threading.Event)  # shutting down: nothing new starts
    status_ttl: float = 2.0
    _status: dict = field(default_factory=dict, repr=False)
    _status_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def status(self, env: str | None) -> list:
        """environments.status, shared: fifty people typing `/deploy status` at once cause one read of the hosts,
        not fifty (answers at most `status_ttl` seconds old)."""
        with self._status_lock:
            entry = self._status.setdefault(env, [threading.Lock(), 0.0, None])
        with entry[0]:
            if entry[2] is None or time.monotonic() - entry[1] > self.status_ttl:
                entry[2], entry[1] = self.service.environments.status(env), time.monotonic()
            return entry[2]

    def job(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Run `fn` off the listener thread; failures are logged, never lost silently."""

        def guarded() -> Any:
            try:
                return fn(*args)
            except Exception:
                log.exception("job %s failed", getattr(fn, "__name__", fn))
                raise

        return self.jobs.submit(guarded)

    def announce(self, deployment_id: int, channel: str, response_url: str | None = None) -> None:
        """Post a recorded request in `channel`, after the service did what follows it (the hosts' current
        versions for an approval request, or the start of an approved one)."""
        self.service.requests.proceed(deployment_id)
        self.board.announce(deployment_id, channel, response_url)

    def ephemeral(self, channel: str, user: str, text: str) -> None:
        """A private note to one user in a channel (refusals of button clicks)."""
        try:
            self.client.chat_postEphemeral(channel=channel, user=user, text=text)
        except Exception as exc:  # noqa: BLE001 - the refusal is audited by the service anyway
            log.warning("chat.postEphemeral to %s failed: %s", user, exc)
