"""Requests: `/deploy` and `/rollback` checked and recorded, the dry run, and what follows a recorded request."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.domain import AuditAction, DeploymentRecord, Kind, Stage, State
from bot.engine.plan import Plan
from bot.redact import redact
from bot.service import migrations
from bot.service.backups import snapshot_since
from bot.service.base import UseCases

UNCONFIRMED = {"migration": "not confirmed under a zero-downtime strategy"}


@dataclass(frozen=True)
class RollbackOptions:
    environment: str
    current: str | None
    previous_good: str | None
    available: list[str] = field(default_factory=list)
    migrations_since: bool = False
    snapshot: dict | None = None  # the RDS snapshot a rollback to previous_good restores, into a new instance


class Requests(UseCases):
    def __init__(self, ctx, locks, environments, runs):
        super().__init__(ctx)
        self.locks, self.environments, self.runs = locks, environments, runs

    def plan(self, env_name: str, version: str, actor: str = "system", deployment_id: int = 0) -> Plan:
        """A deploy's plan, with its artifact resolved (hashed or its published checksum read)."""
        from bot.engine.artifact import ArtifactMissing, resolve_artifact

        env = self.environment(env_name, actor)
        version = self.check_version(env_name, version, actor)
        hosts, shared_env = self.hosts(env, actor, version), self.shared_env(env)
        try:
            artifact = None if env.ecs else resolve_artifact(self.config, version)  # ECS: the image is the release
        except ArtifactMissing as exc:
            self.refuse(actor, AuditAction.REFUSED, env_name, version, str(exc))
        expect_current = self.store.last_succeeded(env_name, before_id=deployment_id or None) is not None
        return Plan(
            deployment_id,
            self.config.app.name,
            env,
            version,
            Kind.DEPLOY,
            artifact,
            expect_current=expect_current,
            hosts=tuple(hosts),
            shared_env=shared_env,
        )

    def describe_plan(self, env_name: str, version: str, actor: str = "system") -> list[str]:
        """The dry run: hosts, phases and the exact commands, redacted (a configured command may hold a secret)."""
        from bot.engine.artifact import release_artifact

        plan = self.plan(env_name, version, actor)
        release_artifact(plan.artifact)
        if plan.shared_env:
            plan.shared_env.close()
        return [redact(line) for line in plan.describe()]

    def deploy(
        self,
        env_name: str,
        version: str,
        actor: str,
        *,
        meta: dict | None = None,
        skip_approval: bool = False,
        override_alarms: str = "",
        confirm_migration: bool = False,
    ) -> DeploymentRecord:
        """Check everything a deploy needs, then record it: pending approval, or approved (lock taken). An alarm in
        ALARM refuses it, unless `override_alarms` gives a reason (audited with the alarms it overrode); so does a
        migration the old release may not survive under a zero-downtime strategy, unless `confirm_migration`."""
        env = self.environment(env_name, actor)
        version = self.check_version(env_name, version, actor)
        if not env.may_deploy(actor) and not skip_approval:
            self.refuse(actor, AuditAction.REFUSED, env_name, version, f"you are not allowed to deploy to {env_name}")
        self.check_artifact(env_name, version, actor)
        self.locks.refuse_if_locked(env_name, version, actor)
        gate = self.alarm_gate(env, override_alarms)
        if gate and gate.refused:
            self.refuse(actor, AuditAction.REFUSED, env_name, version, gate.refusal, detail=gate.detail)
        if migrations.needs_confirmation(env) and not confirm_migration:
            self.refuse(actor, AuditAction.REFUSED, env_name, version, migrations.refusal(env), detail=UNCONFIRMED)
        hosts = self._host_names(env, version, actor)
        needs_approval = env.approval.enabled and not skip_approval
        override = {"override_alarms": redact(override_alarms.strip())} if override_alarms.strip() else {}
        confirmed = {"migration_confirmed": True} if migrations.needs_confirmation(env) else {}
        override |= {"migration_note": migrations.note(env, confirmed=True)} if migrations.note(env) else {}
        return self._record(
            Kind.DEPLOY,
            env_name,
            version,
            actor,
            needs_approval,
            {**(meta or {}), **override},
            hosts,
            previous_version=self.environments.recorded_version(env_name),
            detail={"hosts": hosts, "approval_needed": needs_approval, **(gate.detail if gate else {}), **confirmed},
        )

    def _host_names(self, env, version: str, actor: str) -> list[str]:
        return [h.name for h in self.hosts(env, actor, version)]  # unreadable or none running: refused, audited

    def rollback(
        self,
        env_name: str,
        actor: str,
        version: str | None = None,
        *,
        reason: str = "",
        restore_db: bool = False,
        meta: dict | None = None,
        skip_approval: bool = False,
    ) -> DeploymentRecord:
        """A rollback is a deployment of its own: to the previous good release, or a named one still on the hosts."""
        env = self.environment(env_name, actor)
        options = self.rollback_options(env_name)
        target = version if version is not None else options.previous_good
        if target is None:
            self.refuse(
                actor, AuditAction.REFUSED, env_name, None, f"no previous good release of {env_name} to roll back to"
            )
        target = self.check_version(env_name, target, actor)
        if not env.may_deploy(actor) and not skip_approval:
            self.refuse(actor, AuditAction.REFUSED, env_name, target, f"you are not allowed to roll back {env_name}")
        snapshot = snapshot_since(self.store, env, target) if restore_db else None
        if restore_db and not env.backup.restore_commands and not snapshot:
            self.refuse(
                actor,
                AuditAction.REFUSED,
                env_name,
                target,
                f"{env_name} has no backup.restore_commands"
                + (f" and no RDS snapshot taken since {target}" if env.backup.rds_snapshot else "")
                + ": cannot restore the database",
            )
        self.locks.refuse_if_locked(env_name, target, actor)
        needs_approval = env.approval.enabled and env.approval.required_for_rollback and not skip_approval
        return self._record(
            Kind.ROLLBACK,
            env_name,
            target,
            actor,
            needs_approval,
            {**(meta or {}), **({"restore_snapshot": snapshot} if snapshot else {})},
            self._host_names(env, target, actor),
            previous_version=options.current,
            reason=redact(reason),
            restore_db=restore_db,
            detail={
                "reason": redact(reason),
                "restore_db": restore_db,
                "from": options.current,
                "migrations_since": options.migrations_since,
                **({"restore_snapshot": snapshot} if snapshot else {}),
            },
        )

    def proceed(self, deployment_id: int) -> DeploymentRecord:
        """What follows a recorded request, for every front end: one waiting for approval gets each host's current
        release for the approval message; an approved one starts running."""
        dep = self.deployment(deployment_id)
        if dep.state is State.PENDING_APPROVAL:
            try:
                live = {h.name: h.release for h in self.environments.live_hosts(dep.environment)}
            except Exception:  # noqa: BLE001 - the request still shows, with unknown versions
                live = {}
            self.store.update_meta(dep.id, hosts_now=live)
        elif dep.state is State.APPROVED:
            self.runs.start(dep.id)
        return self.deployment(deployment_id)

    def rollback_options(self, env_name: str) -> RollbackOptions:
        self.environment(env_name)
        good = self.store.list_deployments(env_name, states=[State.SUCCEEDED], limit=50)
        current = good[0].version if good else None
        previous = next((d for d in good if d.version != current), None)
        migrations = False
        if previous and self.config.environments[env_name].migrate:
            migrations = any(
                s.stage == Stage.MIGRATE.value and s.ok
                for d in good
                if d.id > previous.id and d.kind is Kind.DEPLOY
                for s in self.store.stages(d.id)
            )
        available = sorted({d.version for d in good if d.version != current})
        env = self.config.environments[env_name]
        snapshot = snapshot_since(self.store, env, previous.version) if previous else None
        return RollbackOptions(
            env_name, current, previous.version if previous else None, available, migrations, snapshot
        )

    def check_artifact(self, env_name: str, version: str, actor: str, deployment_id: int | None = None) -> None:
        """Cheap existence check (stat or HEAD) for requests and approvals; hashing waits for the run."""
        from bot.engine.artifact import ArtifactMissing, check_artifact

        if env_name in self.config.environments and self.config.environments[env_name].ecs:
            return  # an ECS service runs an image: the registry is asked by ECS, not by the bot
        try:
            check_artifact(self.config, version)
        except ArtifactMissing as exc:
            self.refuse(actor, AuditAction.REFUSED, env_name, version, str(exc), deployment_id)

    def _record(
        self,
        kind: Kind,
        env_name: str,
        version: str,
        actor: str,
        needs_approval: bool,
        meta: dict | None,
        hosts: list[str],
        detail: dict,
        **fields,
    ) -> DeploymentRecord:
        dep = self.store.create_deployment(
            app=self.config.app.name,
            environment=env_name,
            version=version,
            kind=kind,
            requested_by=actor,
            state=State.PENDING_APPROVAL if needs_approval else State.APPROVED,
            meta={**(meta or {}), "hosts": hosts},
            **fields,
        )
        action = AuditAction.ROLLBACK_REQUESTED if kind is Kind.ROLLBACK else AuditAction.DEPLOY_REQUESTED
        self.store.audit(
            actor=actor,
            action=action,
            environment=env_name,
            version=version,
            outcome=dep.state.value,
            deployment_id=dep.id,
            detail=detail,
        )
        if not needs_approval:
            self.locks.take_for(dep)
        return self.deployment(dep.id)
