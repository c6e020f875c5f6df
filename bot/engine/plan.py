"""A plan: everything a deployment will do, decided before anything runs, and printed whole by --dry-run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.config import Environment, Host
from bot.domain import Kind, Stage
from bot.engine import flow
from bot.engine.artifact import Artifact

if TYPE_CHECKING:
    from bot.aws.secrets import SharedEnv
    from bot.engine.slots import Target


@dataclass(frozen=True)
class Plan:
    deployment_id: int
    app: str
    env: Environment
    version: str
    kind: Kind
    artifact: Artifact | None = None
    restore_db_from: str | None = None  # rollback: restore the DB backup taken while this version ran
    expect_current: bool = False  # a good deploy happened before: a host without `current` means a wrong path
    hosts: tuple[Host, ...] = field(default=())  # empty: the environment's listed hosts
    shared_env: SharedEnv | None = None  # values for shared/.env (from a secret), written during preflight
    # blue-green rollback: every host already runs the release on a healthy slot (host name -> that slot), so
    # publishing is only the flip: no preflight, no switch, restart or health on the host
    warm_slots: dict[str, Target] | None = None

    def __post_init__(self) -> None:
        if not self.hosts:
            object.__setattr__(self, "hosts", tuple(self.env.hosts))

    @property
    def stages(self) -> list[Stage]:
        return flow.stages(self)

    def batches(self) -> list[list[Host]]:
        """How publishing walks the hosts: rolling deploys batch by batch, everything else all at once; behind a
        balancer rollbacks go batch by batch too, since taking every host out at once would serve nobody."""
        hosts, strategy = list(self.hosts), self.env.strategy
        first = []
        if strategy.kind == "canary" and self.kind is Kind.DEPLOY:  # the canary batch, then the rest in batches
            first, hosts = [hosts[: strategy.canary_hosts]], hosts[strategy.canary_hosts :]
        if strategy.kind in ("rolling", "canary") and (self.kind is Kind.DEPLOY or self.env.traffic):
            size = strategy.batch_size
            return first + [hosts[i : i + size] for i in range(0, len(hosts), size)]
        return [hosts]

    def describe(self) -> list[str]:
        """The dry run: hosts, batches, then every phase of the flow table with the exact commands on the first
        host (the others differ only by their path and health URL). Callers redact before showing it."""
        env = self.env
        how = f"{env.strategy.kind}" + (
            f", batches of {env.strategy.batch_size}" if env.strategy.kind in ("rolling", "canary") else ""
        )
        if env.ecs is not None:  # ECS replaces the service's tasks itself, by its deployment configuration
            how = f"ECS service {env.ecs.service} in cluster {env.ecs.cluster}, its rolling update"
        lines = [f"{self.kind.value} {self.app} {self.version} to {env.name} ({how})"]
        if env.strategy.slots:  # blue-green: the commands below publish on the idle slot, whichever it is then
            slots = ", ".join(f"{name} on {port}" for name, port in env.strategy.slots.items())
            lines.append(f"slots: {slots}; shown as if {next(iter(env.strategy.slots))} were live")
        if self.artifact:
            size = f"{self.artifact.size} bytes, " if self.artifact.size is not None else ""
            lines.append(f"artifact: {self.artifact.source} ({size}sha256 {self.artifact.sha256})")
        canary = self.env.strategy.kind == "canary" and self.kind is Kind.DEPLOY
        for i, batch in enumerate(self.batches(), 1):
            role = f" (canary: serves alone for {env.strategy.canary_seconds:g}s under the gates)" if canary else ""
            lines.append(f"batch {i}{role if i == 1 else ''}: " + ", ".join(f"{h.name} ({h.address})" for h in batch))
        host = self.hosts[0]
        lines.append(f"phases: {' -> '.join(row.phase.value for row in flow.rows(self))}")
        lines.append(f"stages: {' -> '.join(stage.value for stage in self.stages)}")
        lines.append(f"commands on {host.name}" + (f" (path {env.host_path(host)}):" if env.path else ":"))
        for row in flow.rows(self):
            lines.append(f"{row.phase.value}:" + ("  (per batch, one chain per host)" if row.per_batch else ""))
            for step in row.steps:
                on = step.hosts(self)
                where = "" if len(on) == len(self.hosts) else f"  (on {', '.join(h.name for h in on)})"
                where += "  (every host of the batch, before any goes on)" if step.barrier else ""
                where += "  (the first batch only)" if step.first_batch_only else ""
                lines.append(f"  [{step.stage.value}]{where}")
                for command in flow.commands_for(step.stage, self, host, current=flow.UNKNOWN, stamp="<stamp>"):
                    lines += ["    " + line for line in command.shell.splitlines()]
        return lines
