"""What a deploy asks of a load balancer in front of its hosts: stop sending them new requests, tell when their
in-flight requests are done, send traffic again, and count what they served.

Strategies that publish differently (rolling with drain, blue-green, canary) use this and nothing more, so the
balancer behind it (HAProxy's runtime API, nginx's upstream file, later a cloud target group) can change
without touching the engine. A host is known to the balancer by its address and the port its app serves on;
the deploy.yml name is what every answer is keyed by.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol


class TrafficError(RuntimeError):
    """The balancer could not be reached, or refused or did not apply a change: one sentence saying which and why."""


@dataclass(frozen=True)
class Backend:
    """One host as the balancer sees it: the deploy.yml host name, its address, and the port the app listens on."""

    name: str
    address: str
    port: int

    @property
    def endpoint(self) -> str:
        """`address:port`, as balancers write a server (an IPv6 address in brackets)."""
        host = f"[{self.address}]" if ":" in self.address and not self.address.startswith("[") else self.address
        return f"{host}:{self.port}"

    @classmethod
    def of(cls, host: object, port: int) -> Backend:
        """From a deploy.yml host (anything with `name` and `address`) and the app's port."""
        return cls(str(host.name), str(host.address), int(port))  # type: ignore[attr-defined]


READY, DRAIN, MAINT, DOWN = "ready", "drain", "maint", "down"


@dataclass(frozen=True)
class BackendStats:
    """One backend as the balancer reports it. None: this balancer cannot tell (see docs/traffic.md)."""

    name: str
    state: str  # ready (takes new requests), drain, maint (taken out by hand), down (failing its checks)
    current: int | None  # requests (sessions) in flight now
    requests: int | None  # served since the balancer's counters (or log) began
    errors_5xx: int | None  # of those, answered with a 5xx by the backend
    detail: str = ""  # the balancer's own words: "UP 2/3", "DRAIN", "down in shop-upstream.conf"


class Traffic(Protocol):
    """A balancer in front of some hosts. Every method raises TrafficError when the balancer cannot be reached."""

    def drain(self, hosts: Sequence[Backend]) -> None:
        """New requests stop reaching these hosts once this returns; requests already in flight go on."""

    def wait_drained(self, hosts: Sequence[Backend], timeout: float) -> bool:
        """True once the requests these hosts had in flight have finished; False if `timeout` passed first."""

    def restore(self, hosts: Sequence[Backend]) -> None:
        """These hosts take new requests again (HAProxy: as soon as their health checks pass)."""

    def stats(self) -> dict[str, BackendStats]:
        """Per backend, keyed by host name (or by the balancer's own name for a server no host matches)."""


def names(hosts: Iterable[Backend]) -> str:
    return ", ".join(h.name for h in hosts) or "no host"


def poll(check: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Call `check` until it is true (True) or `timeout` seconds have passed (False); at least once."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(interval, left))
