"""The bot's own bounded thread pools: deployments, and short jobs (reading hosts, answering Slack).

A full pool refuses with Busy instead of queueing without end, so a caller can say "try again in a minute".
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class Busy(RuntimeError):
    """The executor's queue is full: the caller is asked to retry rather than queued without limit."""


class BoundedExecutor:
    """A thread pool that refuses work beyond `workers + backlog` instead of queueing without end."""

    def __init__(self, workers: int, backlog: int, name: str, before: Callable[[], None] | None = None):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._before = before
        self._slots = threading.BoundedSemaphore(workers + backlog)
        self._pending = 0
        self._count = threading.Lock()
        self.name = name

    @property
    def pending(self) -> int:
        """Jobs queued or running (tests wait for 0; a gauge could show it)."""
        return self._pending

    def _done(self, _: Future) -> None:
        with self._count:
            self._pending -= 1
        self._slots.release()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        if not self._slots.acquire(blocking=False):
            raise Busy(f"{self.name} executor is full")
        with self._count:
            self._pending += 1
        try:
            future = self._pool.submit(self._run, fn, *args, **kwargs)
        except BaseException:
            self._done(Future())
            raise
        future.add_done_callback(self._done)
        return future

    def _run(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        if self._before:
            self._before()
        return fn(*args, **kwargs)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
