"""Open targets kept per host, so a long-running bot reuses warm SSH connections, and a bounded runner."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from bot.config import Environment, Host
from bot.targets.base import Target
from bot.targets.local import LocalTarget
from bot.targets.ssh import SSHTarget

T = TypeVar("T")


class TargetPool:
    """One Target per (environment, host); connections stay open until close()."""

    def __init__(self) -> None:
        self._targets: dict[tuple[str, str], Target] = {}
        self._lock = threading.Lock()

    def get(self, env: Environment, host: Host) -> Target:
        key = (env.name, host.name)
        with self._lock:
            target = self._targets.get(key)
            if target is None:
                if host.is_local:
                    target = LocalTarget(host, env.ssh.command_timeout)
                else:
                    target = SSHTarget(host, env.ssh)
                self._targets[key] = target
            return target

    def close(self) -> None:
        with self._lock:
            targets, self._targets = list(self._targets.values()), {}
        for target in targets:
            target.close()


def on_hosts(hosts: Sequence[Host], work: Callable[[Host], T], parallel: int) -> list[T]:
    """Run work on every host at once (bounded); each call must bound its own time (connect/command timeouts)."""
    if len(hosts) == 1:
        return [work(hosts[0])]
    with ThreadPoolExecutor(max_workers=min(parallel, len(hosts)), thread_name_prefix="host") as ex:
        return list(ex.map(work, hosts))
