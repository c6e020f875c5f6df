"""Open targets kept per host, so a long-running bot reuses warm SSH connections, and a bounded runner."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

from bot.config import Environment, Host
from bot.targets.base import Target
from bot.targets.http import Probe, probe

T = TypeVar("T")


class Fleet(Protocol):
    """The hosts as the engine reaches them: a target per host to run commands on, and the health URL answers.
    TargetPool is the real one (SSH or sh, HTTP from the bot); the unit tests bring an in-memory fleet."""

    def get(self, env: Environment, host: Host) -> Target: ...

    def probe(self, url: str, cfg, expected: str | None, timeout: float = 2.0) -> Probe: ...


class TargetPool:
    """One Target per (environment, host); connections stay open until close(). Health is asked over HTTP."""

    probe = staticmethod(probe)

    def __init__(self) -> None:
        self._targets: dict[tuple[str, str], Target] = {}
        self._lock = threading.Lock()

    def get(self, env: Environment, host: Host) -> Target:
        key = (env.name, host.name)
        with self._lock:
            target = self._targets.get(key)
            if target is None:
                if env.ecs is not None:  # the service is the one pseudo-host; boto3 loads when it is first asked
                    from bot.targets.ecs import ECSTarget

                    target = ECSTarget(host, env.ecs)
                elif host.is_local:
                    from bot.targets.local import LocalTarget

                    target = LocalTarget(host, env.ssh.command_timeout)
                else:  # Fabric and paramiko are imported when a host is first reached over SSH
                    from bot.targets.ssh import SSHTarget

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
