"""Typed events the engine emits; front ends (CLI, Slack, audit, metrics) subscribe and render them."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Event:
    deployment_id: int
    at: datetime = field(default_factory=_now, kw_only=True)


@dataclass(frozen=True)
class DeploymentStarted(Event):
    environment: str
    version: str
    kind: str  # deploy | rollback
    hosts: tuple[str, ...]
    stages: tuple[str, ...]
    previous_version: str | None = None


@dataclass(frozen=True)
class StageStarted(Event):
    stage: str
    host: str | None = None  # None: the stage as a whole (all hosts of the batch)


@dataclass(frozen=True)
class StageFinished(Event):
    stage: str
    host: str | None
    ok: bool
    seconds: float
    exit_code: int | None = None
    excerpt: str = ""  # redacted output excerpt
    error: str = ""
    output: str = ""  # the whole redacted output (stdout, then stderr); the store keeps its last 256 KB


@dataclass(frozen=True)
class RollbackStarted(Event):
    reason: str
    hosts: tuple[str, ...]
    to_version: str | None


@dataclass(frozen=True)
class DeploymentFinished(Event):
    state: str
    seconds: float
    failed_stage: str | None = None
    failed_host: str | None = None
    error: str = ""


Subscriber = Callable[[Event], None]


class EventBus:
    """Synchronous fan-out. A failing subscriber is logged and never stops a deployment."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        with self._lock:
            self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            with self._lock:
                if subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)

        return unsubscribe

    def emit(self, event: Event) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                subscriber(event)
            except Exception:  # noqa: BLE001 - a renderer must not break a deploy
                log.exception("event subscriber failed on %s", type(event).__name__)
