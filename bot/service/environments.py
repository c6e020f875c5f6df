"""Reading an environment: what each host runs now (read live), what the store recorded, the lock, the history."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from bot.config import Host
from bot.domain import ApprovalRecord, AuditRecord, DeploymentRecord, LockRecord, StageRecord, State
from bot.redact import redact
from bot.service.base import UseCases


@dataclass(frozen=True)
class HostStatus:
    name: str
    address: str
    release: str | None  # what `current` points at, read live
    answering: str | None  # the version the health URL reports
    error: str = ""
    live_slot: str | None = None  # blue-green: the slot the host's nginx sends requests to
    slots: dict[str, str | None] = field(default_factory=dict)  # blue-green: each slot's release
    warm: tuple[str, ...] = ()  # blue-green: other slots answering healthy on their release (a rollback flips)

    @property
    def slots_text(self) -> str:
        """'slots: green v1.1.0 (live), blue v1.0.0 (warm)' for a blue-green host; '' otherwise."""
        if not self.slots:
            return ""
        said = []
        for slot in sorted(self.slots, key=lambda s: s != self.live_slot):
            how = "live" if slot == self.live_slot else "warm" if slot in self.warm else "stopped"
            said.append(f"{slot} {self.slots[slot]} ({how})" if self.slots[slot] else f"{slot} empty")
        return "slots: " + ", ".join(said)


@dataclass(frozen=True)
class EnvironmentStatus:
    environment: str
    hosts: list[HostStatus]
    recorded_version: str | None  # what the store says the last good deployment put there
    last: DeploymentRecord | None
    in_progress: DeploymentRecord | None
    lock: LockRecord | None

    @property
    def versions(self) -> set[str | None]:
        return {h.release for h in self.hosts}

    @property
    def drift(self) -> bool:
        return len(self.versions) > 1 or (
            self.recorded_version is not None and self.versions != {self.recorded_version}
        )


@dataclass(frozen=True)
class DeploymentLog:
    """One deployment whole, as its log page and `deploybot logs` show it."""

    deployment: DeploymentRecord
    approvals: list[ApprovalRecord]
    stages: list[str]  # the planned stages in flow order, then any other that ran (revert)
    hosts: list[str]
    # every host's step by stage (flow order), then host, then time: the result, its whole redacted output, and
    # which run of that stage on that host it was (1, or more where it ran again)
    results: list[tuple[StageRecord, str, int]]
    audit: list[AuditRecord]


class Environments(UseCases):
    def live_hosts(self, env_name: str) -> list[HostStatus]:
        from bot.engine import commands, slots
        from bot.targets.pool import on_hosts

        env = self.config.environments[env_name]
        blue_green = slots.is_blue_green(env)

        def read(host: Host) -> HostStatus:
            path = env.host_path(host)
            timeout = env.ssh.connect_timeout + 10
            command = commands.read_current(path, timeout)
            if blue_green:  # the same answer, with which slot is live and what each holds
                command = replace(slots.read(env, path), op=command.op, timeout=timeout)
            res = self.ctx.pool.get(env, host).run(command)
            ask = min(2.0, env.health.timeout)
            answer = self.ctx.pool.probe(env.health_url(host), env.health, None, timeout=ask)
            seen = slots.HostSlots()
            if res.ok:
                seen.read(res.stdout)
            warm = tuple(
                slot
                for slot, release in seen.links.items()
                if release and slot != seen.live and self._answers(env, host, env.strategy.slots[slot], release)
            )
            return HostStatus(
                host.name,
                host.address,
                commands.parse_current(res.stdout) if res.ok else None,
                answer.version,
                "" if res.ok else redact(res.describe()),
                seen.live,
                seen.links,
                warm,
            )

        return on_hosts(self.hosts(env), read, env.ssh.parallel)

    def _answers(self, env, host: Host, port: int, release: str) -> bool:
        """Whether a slot's own health URL answers healthy on `release` now."""
        timeout = min(1.0, env.health.timeout)
        return self.ctx.pool.probe(env.health_url(host, port), env.health, release, timeout=timeout).ok

    def status(self, env_name: str | None = None) -> list[EnvironmentStatus]:
        names = [env_name] if env_name else list(self.config.environments)
        out = []
        for name in names:
            self.environment(name)
            history = self.store.list_deployments(name, limit=20)
            running = [d for d in history if d.state.is_active]
            finished = [d for d in history if d.state.is_final]
            out.append(
                EnvironmentStatus(
                    name,
                    self.live_hosts(name),
                    self.recorded_version(name),
                    finished[0] if finished else None,
                    running[0] if running else None,
                    self.store.get_lock(name),
                )
            )
        return out

    def history(self, env_name: str | None = None, limit: int = 20) -> list[DeploymentRecord]:
        if env_name:
            self.environment(env_name)
        return self.store.list_deployments(env_name, limit=limit)

    def running(self, limit: int = 20) -> list[DeploymentRecord]:
        return [d for d in self.store.list_deployments(limit=limit) if d.state.is_active]

    def pending(self) -> list[DeploymentRecord]:
        return self.store.list_deployments(states=[State.PENDING_APPROVAL], limit=1000)

    def locks(self) -> list[LockRecord]:
        return self.store.locks()

    def approvals(self, deployment_id: int) -> list[ApprovalRecord]:
        return self.store.approvals(deployment_id)

    def remember_message(self, deployment_id: int, **meta: object) -> None:
        """Where a front end shows this deployment (e.g. Slack channel and ts), so a restart can find it."""
        self.store.update_meta(deployment_id, **meta)

    def recorded_version(self, env_name: str) -> str | None:
        last = self.store.last_succeeded(env_name)
        return last.version if last else None

    def log(self, deployment_id: int) -> DeploymentLog:
        """Everything recorded about one deployment; Refused when there is no such deployment."""
        dep = self.deployment(deployment_id)
        recorded = self.store.stage_outputs(deployment_id)
        stages = list(dict.fromkeys([*self._planned_stages(dep), *(r.stage for r, _ in recorded)]))
        hosts = list(dict.fromkeys([*dep.meta.get("hosts", []), *(r.host for r, _ in recorded if r.host)]))
        runs: dict[tuple, int] = {}
        results = []
        for r, out in recorded:
            runs[r.stage, r.host] = runs.get((r.stage, r.host), 0) + 1
            results.append((r, out, runs[r.stage, r.host]))
        results.sort(key=lambda x: (stages.index(x[0].stage), hosts.index(x[0].host) if x[0].host in hosts else -1))
        return DeploymentLog(
            dep,
            self.store.approvals(deployment_id),
            stages,
            hosts,
            results,
            self.store.audit_events(deployment_id=deployment_id),
        )

    def _planned_stages(self, dep: DeploymentRecord) -> list[str]:
        """What the flow table plans for it under today's config (nothing, if its environment is gone)."""
        from bot.engine.plan import Plan

        env = self.config.environments.get(dep.environment)
        if env is None:
            return []
        plan = Plan(
            dep.id, dep.app, env, dep.version, dep.kind, restore_db_from=dep.version if dep.restore_db else None
        )
        return [stage.value for stage in plan.stages]
