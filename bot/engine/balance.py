"""The shared balancer in the publishing phase (`traffic:`): a batch leaves it before its switch and comes back
once healthy, and a revert walks the hosts in batches so some host always serves.

Kept apart from the pipeline so the pipeline says *when* a host drains or returns and this module *how*: the
balancer is opened once per run, at the first step that needs it, through the pool (a balancer reached over
SSH reuses the warm connection).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from bot.config import Environment, Host
from bot.domain import Stage
from bot.targets.base import Command, Result

if TYPE_CHECKING:
    from bot.traffic.base import Traffic


class Drainable(Protocol):
    """What the balancer needs to know of a host's progress (the pipeline's HostState)."""

    previous: str | None
    drained: bool


class Balancer:
    """The environment's balancer for one run: drain (and wait for the requests in flight) or restore a host."""

    def __init__(self, env: Environment, pool):
        self.env, self.pool = env, pool
        self.traffic: Traffic | None = None

    def open(self) -> Traffic:
        """The balancer, opened at the first call (the canary's gates read its stats through the same one)."""
        if self.traffic is None:
            from bot.traffic.opening import open_traffic

            self.traffic = open_traffic(self.env.traffic, self.env, self.pool)
        return self.traffic

    def step(self, host: Host, state: Drainable, command: Command) -> Result:
        """Take the host out of the balancer (and wait for its requests in flight), or put it back."""
        from bot.traffic.base import Backend, TrafficError

        cfg = self.env.traffic
        backend = [Backend(host.name, host.address, cfg.port)]
        try:
            traffic = self.open()
            if command.op is Stage.RESTORE:
                traffic.restore(backend)
                state.drained = False
                return Result(host.name, command, 0, "back in service")
            if not state.previous:  # a first deploy here: nothing is served by this host yet
                return Result(host.name, command, 0, "nothing served here yet: no drain needed")
            traffic.drain(backend)
            state.drained = True
            if not traffic.wait_drained(backend, cfg.drain_timeout):
                return Result(
                    host.name,
                    command,
                    1,
                    stderr=f"still had requests in flight after {cfg.drain_timeout:g}s (traffic.drain_timeout)",
                )
            return Result(host.name, command, 0, "drained")
        except TrafficError as exc:
            return Result(host.name, command, None, error=str(exc))


def revert_batches(env: Environment, hosts: list[Host]) -> list[list[Host]]:
    """All at once; behind a balancer in the strategy's batches, so some hosts always stay in service."""
    if not env.traffic:
        return [hosts]
    size = env.strategy.batch_size
    return [hosts[i : i + size] for i in range(0, len(hosts), size)]
