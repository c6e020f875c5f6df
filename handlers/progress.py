"""Engine events -> one Slack message per deployment, edited in place, with details in its thread.

The engine calls the subscriber on its own thread, so the subscriber only enqueues. One worker thread owns
every deployment message: it folds events into a Checklist, redraws a message at most once per `interval`,
and when Slack is slow or failing it keeps the latest state and redraws it once Slack answers again, so a
deployment never waits for Slack and the message always catches up to the truth.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.domain import DeploymentRecord
from bot.engine.events import DeploymentFinished, Event
from bot.service import DeployService
from handlers import blocks
from handlers.checklist import Checklist

log = logging.getLogger(__name__)
RETRY_AFTER_FAILURE = 2.0
# Slack's answers that no retry can change: the message is given up and the requester told why
PERMANENT = frozenset(
    {
        "not_in_channel",
        "channel_not_found",
        "is_archived",
        "invalid_auth",
        "missing_scope",
        "account_inactive",
        "token_revoked",
        "restricted_action",
    }
)


@dataclass
class _Message:
    channel: str
    ts: str | None = None
    last_sent: float = 0.0
    not_before: float = 0.0
    response_url: str | None = None  # the requester's private answer channel, for what cannot be posted
    threaded: bool = False  # the thread was started (its first post carries the log link)
    given_up: str = ""  # a permanent Slack error: nothing more is drawn


class ProgressBoard:
    def __init__(
        self,
        service: DeployService,
        client: WebClient,
        interval: float = 1.0,
        respond: Callable[[str, dict], None] | None = None,
        links: Callable[[int], str | None] | None = None,
    ):
        self.service = service
        self.links = links  # deployment id -> its log page's signed URL, or None (set by the composition root)
        self.client = client
        self.respond = respond
        self.interval = interval
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lists: dict[int, Checklist] = {}
        self._messages: dict[int, _Message] = {}
        self._dirty: set[int] = set()
        self._busy = 0
        self._idle = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="slack-progress", daemon=True)
        self._thread.start()

    # ---- called from any thread; never blocks on Slack -------------------------------------------
    def __call__(self, event: Event) -> None:
        """EventBus subscriber: runs on the engine's thread, so it only enqueues."""
        self._put(event)

    def announce(self, deployment_id: int, channel: str, response_url: str | None = None) -> None:
        """Post the deployment's message in `channel` (the approval request, or the queued checklist)."""
        self._put(("announce", deployment_id, channel, response_url))

    def refresh(self, deployment_id: int) -> None:
        """Redraw from the store: after an approval, a rejection, an abort, an expiry or the end of a run."""
        self._put(("refresh", deployment_id))

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """True once every queued change has been drawn (tests and the console adapter)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._busy or self._dirty:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.1))
        return True

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _put(self, item: object) -> None:
        with self._idle:
            self._busy += 1
        self._queue.put(item)

    # ---- the worker ---------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=self._wait_time())
            except queue.Empty:
                item = None
            items = [] if item is None else [item]
            while True:  # take the whole burst, draw only its end state
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for it in items:
                try:
                    self._apply(it)
                except Exception:  # noqa: BLE001 - one bad item must not stop progress for all
                    log.exception("progress: cannot apply %r", it)
            self._flush_due()
            with self._idle:
                self._busy -= len(items)
                self._idle.notify_all()

    def _wait_time(self) -> float:
        now = time.monotonic()
        due = [self._due(d) for d in self._dirty]
        return max(0.01, min(due) - now) if due else 0.5

    def _due(self, deployment_id: int) -> float:
        m = self._messages.get(deployment_id)
        return max(m.last_sent + self.interval, m.not_before) if m else 0.0

    def _apply(self, item: object) -> None:
        if isinstance(item, Event):
            checklist = self._lists.setdefault(item.deployment_id, Checklist(item.deployment_id))
            checklist.apply(item)
            self._dirty.add(item.deployment_id)
            if isinstance(item, DeploymentFinished):
                self._lists_done(item.deployment_id)
        elif isinstance(item, tuple) and item[0] == "announce":
            _, dep_id, channel, response_url = item
            self._messages.setdefault(dep_id, _Message(channel)).response_url = response_url
            self._dirty.add(dep_id)
        elif isinstance(item, tuple) and item[0] == "refresh":
            self._dirty.add(item[1])

    def _lists_done(self, deployment_id: int) -> None:
        """Keep memory bounded: forget checklists of long-finished deployments."""
        if len(self._lists) > 200:
            for old in sorted(self._lists)[:100]:
                self._lists.pop(old, None)

    def _flush_due(self) -> None:
        now = time.monotonic()
        for dep_id in sorted(self._dirty):
            if self._due(dep_id) <= now:
                with self._idle:  # "idle" must not be seen while a draw is on the wire
                    self._busy += 1
                    self._dirty.discard(dep_id)
                try:
                    self._draw(dep_id)
                except SlackApiError as exc:
                    if exc.response.get("error") not in PERMANENT:
                        self._later(dep_id, exc)
                    else:
                        self._give_up(dep_id, str(exc.response.get("error")))
                except Exception as exc:  # noqa: BLE001 - Slack down: keep the state, draw it later
                    self._later(dep_id, exc)
                finally:
                    with self._idle:
                        self._busy -= 1

    def _later(self, dep_id: int, exc: Exception) -> None:
        """Slack is slow or failing: keep the state, draw it again in a moment."""
        log.warning("progress: drawing #%s failed (%s); retrying", dep_id, exc)
        m = self._messages.get(dep_id)
        if m:
            m.not_before = time.monotonic() + RETRY_AFTER_FAILURE
        self._dirty.add(dep_id)

    def _give_up(self, dep_id: int, error: str) -> None:
        """Slack will never take this message (the bot is not in the channel, or lost its token): stop, and say
        so to the requester, privately, through the command's response_url."""
        log.warning("progress: Slack refuses the message of #%s for good (%s); not retrying", dep_id, error)
        m = self._messages.get(dep_id)
        if m is None:
            return
        m.given_up = error
        if m.response_url and self.respond:
            hint = (
                " Invite me with `/invite @deploybot` and ask again."
                if error in ("not_in_channel", "channel_not_found")
                else " An admin should check the app's installation."
            )
            try:
                self.respond(
                    m.response_url,
                    {
                        "response_type": "ephemeral",
                        "replace_original": False,
                        "text": f":no_entry: I cannot post in this channel ({error}), so "
                        f"deployment #{dep_id} is not shown here.{hint}",
                    },
                )
            except Exception:  # noqa: BLE001 - nowhere left to tell
                log.exception("progress: could not tell the requester of #%s", dep_id)

    def _draw(self, dep_id: int) -> None:
        dep, approvals = self.service.environments.deployment(dep_id), self.service.environments.approvals(dep_id)
        m = self._message(dep)
        if m is None or m.given_up:
            return  # started outside Slack (CLI), or Slack refuses it for good: nothing to draw
        env = self.service.config.environments.get(dep.environment)
        link = self.links(dep_id) if self.links and dep.started_at else None
        text, body = blocks.deployment_message(dep, env, approvals, self._lists.get(dep_id), link=link)
        if m.ts is None:
            res = self.client.chat_postMessage(channel=m.channel, text=text, blocks=body, unfurl_links=False)
            m.ts = res["ts"]
            self.service.environments.remember_message(dep_id, slack_channel=m.channel, slack_ts=m.ts)
        else:
            self.client.chat_update(channel=m.channel, ts=m.ts, text=text, blocks=body)
        m.last_sent = time.monotonic()
        checklist = self._lists.get(dep_id)
        lines = checklist.take_thread() if checklist else []
        if lines:
            try:
                self.client.chat_postMessage(
                    channel=m.channel, thread_ts=m.ts, text=blocks.thread_text(lines, None if m.threaded else link)
                )
                m.threaded = True
            except Exception:
                checklist.thread[:0] = lines  # put them back; the next draw posts them
                raise

    def _message(self, dep: DeploymentRecord) -> _Message | None:
        m = self._messages.get(dep.id)
        if m is None and dep.meta.get("slack_channel"):
            m = self._messages[dep.id] = _Message(str(dep.meta["slack_channel"]), dep.meta.get("slack_ts"))
        return m
