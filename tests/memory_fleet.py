"""An in-memory fleet for fast unit tests of the pipeline's logic: no SSH, no processes, no HTTP.

Each MemoryHost keeps what a real host would (its releases, its `current`, the version its app serves) and
applies the operations the flow table sends it, by their op and version, not by parsing shell. A test makes a
step fail on a host with `fail(op, version)`. The feature tests run the same pipeline over real SSH.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from bot.config import Environment, Host
from bot.engine import commands
from bot.targets.base import Command, Result, put_command
from bot.targets.http import Probe


@dataclass
class MemoryHost:
    name: str
    releases: set[str] = field(default_factory=set)
    current: str | None = None
    serving: str | None = None  # the version the app answers with, set by a restart
    ran: list[Command] = field(default_factory=list)
    failures: dict[tuple[str, str | None], int] = field(default_factory=dict)
    unhealthy: set[str] = field(default_factory=set)  # versions whose health URL answers 500 here

    def fail(self, op: str, version: str | None = None, exit_code: int = 1) -> None:
        """Make `op` (for `version`, or any version) exit non-zero on this host."""
        self.failures[(op, version)] = exit_code

    def ops(self) -> list[str]:
        return [str(c.op) for c in self.ran]

    def apply(self, command: Command) -> Result:
        self.ran.append(command)
        op, version = str(command.op), command.version
        code = self.failures.get((op, version), self.failures.get((op, None)))
        if code is not None:
            return Result(self.name, command, code, stderr=f"{op} failed on {self.name}")
        if op in ("preflight", "read_current"):
            if version and version not in self.releases:
                return Result(self.name, command, 7, stderr=f"release {version} is not on this host")
            return Result(self.name, command, 0, f"{commands.CURRENT_MARK}{self.current or ''}")
        if op == "upload" and version:
            self.releases.add(version)
        elif op == "switch":
            if version not in self.releases:
                return Result(self.name, command, 1, stderr=f"no release {version}")
            self.current = version
        elif op == "restart":
            self.serving = self.current
        return Result(self.name, command, 0, f"{op} ok")


class MemoryTarget:
    def __init__(self, host: MemoryHost):
        self.host, self.name = host, host.name

    def run(self, command: Command) -> Result:
        return self.host.apply(command)

    def put(self, local: Path, remote: str) -> Result:
        return self.host.apply(put_command(local, remote))

    def close(self) -> None:
        pass


class MemoryFleet:
    """get() and probe() as bot.targets.pool.TargetPool has them; hosts are found by the health URL's host."""

    def __init__(self, hosts: list[Host], current: str | None = None):
        self.hosts = {h.address: MemoryHost(h.name) for h in hosts}
        for h in self.hosts.values():
            if current:
                h.releases.add(current)
                h.current = h.serving = current
        self._lock = threading.Lock()

    def __getitem__(self, name: str) -> MemoryHost:
        return next(h for h in self.hosts.values() if h.name == name)

    def get(self, env: Environment, host: Host) -> MemoryTarget:
        return MemoryTarget(self.hosts[host.address])

    def probe(self, url: str, cfg, expected: str | None, timeout: float = 2.0) -> Probe:
        host = self.hosts[urlsplit(url).hostname or ""]
        if host.serving is None:
            return Probe(False, f"no answer from {url}")
        if host.serving in host.unhealthy:
            return Probe(False, f"HTTP 500 from {url}")
        if expected and host.serving != expected:
            return Probe(False, f"{url} answers version {host.serving!r}, expected {expected!r}", host.serving)
        return Probe(True, f"{url} answers {host.serving}", host.serving)

    def close(self) -> None:
        pass


class MemoryBalancer:
    """A balancer for the unit tests: which hosts are in service, and every call in order. `refuse` names a host
    whose drain the balancer refuses (as one that cannot be reached would)."""

    def __init__(self, refuse: str | None = None, hosts: int = 4):
        self.out: set[str] = set()
        self.calls: list[tuple[str, str]] = []
        self.refuse, self.total = refuse, hosts
        self.most_out = 0

    def drain(self, hosts) -> None:
        from bot.traffic.base import TrafficError

        for h in hosts:
            if h.name == self.refuse:
                raise TrafficError(f"the balancer refused to drain {h.name}")
            if len(self.out | {h.name}) >= self.total:  # as HAProxy and nginx do: never the last one
                raise TrafficError(f"draining {h.name} would leave no server taking requests")
            self.out.add(h.name)
            self.most_out = max(self.most_out, len(self.out))
            self.calls.append(("drain", h.name))

    def wait_drained(self, hosts, timeout: float) -> bool:
        return True

    def restore(self, hosts) -> None:
        for h in hosts:
            self.out.discard(h.name)
            self.calls.append(("restore", h.name))
