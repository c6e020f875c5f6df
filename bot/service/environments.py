"""Reading an environment: what each host runs now (read live), what the store recorded, the lock, the history."""

from __future__ import annotations

from dataclasses import dataclass

from bot.config import Host
from bot.domain import ApprovalRecord, DeploymentRecord, LockRecord, State
from bot.redact import redact
from bot.service.base import UseCases


@dataclass(frozen=True)
class HostStatus:
    name: str
    address: str
    release: str | None  # what `current` points at, read live
    answering: str | None  # the version the health URL reports
    error: str = ""


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
        return len(self.versions) > 1 or (self.recorded_version is not None
                                          and self.versions != {self.recorded_version})


class Environments(UseCases):
    def live_hosts(self, env_name: str) -> list[HostStatus]:
        from bot.engine import commands
        from bot.targets.pool import on_hosts

        env = self.config.environments[env_name]

        def read(host: Host) -> HostStatus:
            res = self.ctx.pool.get(env, host).run(commands.read_current(env.host_path(host),
                                                                         timeout=env.ssh.connect_timeout + 10))
            answer = self.ctx.pool.probe(env.health_url(host), env.health, None, timeout=min(2.0, env.health.timeout))
            return HostStatus(host.name, host.address, commands.parse_current(res.stdout) if res.ok else None,
                              answer.version, "" if res.ok else redact(res.describe()))

        return on_hosts(env.hosts, read, env.ssh.parallel)

    def status(self, env_name: str | None = None) -> list[EnvironmentStatus]:
        names = [env_name] if env_name else list(self.config.environments)
        out = []
        for name in names:
            self.environment(name)
            history = self.store.list_deployments(name, limit=20)
            running = [d for d in history if d.state.is_active]
            finished = [d for d in history if d.state.is_final]
            out.append(EnvironmentStatus(name, self.live_hosts(name), self.recorded_version(name),
                                         finished[0] if finished else None, running[0] if running else None,
                                         self.store.get_lock(name)))
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
