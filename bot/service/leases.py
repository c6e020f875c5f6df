"""Leases: a deployment's lock is held by a process through a lease it renews on a heartbeat. Another process
decides that the holder died only when the lease has expired, never from a host name or a pid, which lie across
machines and when the bot is PID 1 in a fresh container.

DEPLOYBOT_LEASE_TTL (seconds, default 20) is how long a silent owner keeps its deployments; the heartbeat renews
every quarter of it, so three missed beats in a row are survivable.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.store import Store


log = logging.getLogger(__name__)
DEFAULT_TTL = 20.0


def new_owner() -> str:
    """Unique per process: the host and pid are for people reading the lock; the random part is what makes two
    processes (or two containers that are both PID 1) different owners."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def lease_ttl() -> float:
    return float(os.environ.get("DEPLOYBOT_LEASE_TTL") or DEFAULT_TTL)


class Leases:
    def __init__(self, store: Store, owner: str | None = None, ttl: float | None = None):
        self.store = store
        self.owner = owner or new_owner()
        self.ttl = ttl or lease_ttl()
        self._held: set[int] = set()
        self._lost: set[int] = set()
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._beating: threading.Thread | None = None

    def holding(self, deployment_id: int) -> None:
        """This process now holds `deployment_id`'s lease: keep it alive until released()."""
        with self._guard:
            self._held.add(deployment_id)
            if self._beating is None:
                self._beating = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)
                self._beating.start()

    def released(self, deployment_id: int) -> None:
        with self._guard:
            self._held.discard(deployment_id)

    def lost(self, deployment_id: int) -> bool:
        """Another process took this deployment over (this one was silent past the TTL): stop at a boundary."""
        return deployment_id in self._lost

    def renew(self) -> None:
        still = self.store.renew_leases(self.owner, self.ttl)
        with self._guard:
            gone = self._held - still
            self._lost |= gone
            self._held -= gone
        for dep_id in gone:
            log.error("lease of deployment #%s was taken over by another process", dep_id)

    def close(self) -> None:
        self._stop.set()

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            with self._guard:
                if not self._held:
                    continue
            try:
                self.renew()
            except Exception:  # noqa: BLE001 - the store may be restarting; the next beat tries again
                log.exception("lease renewal failed")
