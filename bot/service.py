"""Use cases: what the CLI, the Slack handlers and the demo may ask of deploybot.

Every refusal raises Refused with a sentence fit for the person who asked, is audited, and changes nothing.
Identity is a plain string (a Slack user ID, `cli:alice`); membership of approver groups is resolved by the caller.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NoReturn

from bot.config import Config, Environment, InvalidVersion
from bot.domain import Kind, Stage, State
from bot.engine import commands
from bot.engine.events import DeploymentFinished, EventBus
from bot.engine.health import probe
from bot.engine.pipeline import Outcome, Pipeline
from bot.engine.plan import ArtifactMissing, Plan, check_artifact, release_artifact, resolve_artifact
from bot.recorder import StoreRecorder
from bot.redact import redact
from bot.store import ApprovalRecord, DeploymentRecord, LockHeld, LockRecord, Store
from bot.targets.pool import TargetPool, on_hosts

OWNER = f"{socket.gethostname()}:{os.getpid()}"


class Refused(Exception):
    """A request that was checked and turned down; the message is for the requester."""


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


@dataclass(frozen=True)
class ApprovalResult:
    deployment: DeploymentRecord
    approvals: int
    needed: int
    started: bool  # quorum reached and the lock taken: the caller should now run() it


@dataclass(frozen=True)
class RollbackOptions:
    environment: str
    current: str | None
    previous_good: str | None
    available: list[str] = field(default_factory=list)
    migrations_since: bool = False


class DeployService:
    def __init__(self, config: Config, store: Store, pool: TargetPool | None = None,
                 events: EventBus | None = None):
        self.config = config
        self.store = store
        self.pool = pool or TargetPool()
        self.events = events or EventBus()
        self.events.subscribe(StoreRecorder(store))

    # ---- requests ---------------------------------------------------------------------------------
    def environment(self, name: str, actor: str = "system") -> Environment:
        try:
            return self.config.environment(name)
        except KeyError as exc:
            self._refuse(actor, "refused", name, None, exc.args[0])

    def check_version(self, env: str, version: str, actor: str) -> str:
        try:
            return self.config.check_version(version)
        except InvalidVersion as exc:
            self._refuse(actor, "refused", env, None, f"invalid version: {exc}", detail={"version": version[:80]})

    def plan(self, env_name: str, version: str, actor: str = "system", deployment_id: int = 0) -> Plan:
        env = self.environment(env_name, actor)
        version = self.check_version(env_name, version, actor)
        try:
            artifact = resolve_artifact(self.config, version)
        except ArtifactMissing as exc:
            self._refuse(actor, "refused", env_name, version, str(exc))
        expect_current = self.store.last_succeeded(env_name) is not None
        return Plan(deployment_id, self.config.app.name, env, version, Kind.DEPLOY, artifact,
                    expect_current=expect_current)

    def describe_plan(self, env_name: str, version: str, actor: str = "system") -> list[str]:
        """The dry run: hosts, stages and commands, redacted (a configured command may hold a secret)."""
        plan = self.plan(env_name, version, actor)
        release_artifact(plan.artifact)
        return [redact(line) for line in plan.describe()]

    def request_deploy(self, env_name: str, version: str, actor: str, *, meta: dict | None = None,
                       skip_approval: bool = False) -> DeploymentRecord:
        """Check everything a deploy needs, then record it: pending approval, or approved (lock taken)."""
        env = self.environment(env_name, actor)
        version = self.check_version(env_name, version, actor)
        if not env.may_deploy(actor) and not skip_approval:
            self._refuse(actor, "refused", env_name, version, f"you are not allowed to deploy to {env_name}")
        self._check_artifact(env_name, version, actor)
        self._refuse_if_locked(env_name, version, actor)
        needs_approval = env.approval.enabled and not skip_approval
        dep = self.store.create_deployment(
            app=self.config.app.name, environment=env_name, version=version, kind=Kind.DEPLOY, requested_by=actor,
            state=State.PENDING_APPROVAL if needs_approval else State.APPROVED,
            previous_version=self._recorded_version(env_name),
            meta={**(meta or {}), "hosts": [h.name for h in env.hosts]})
        self.store.audit(actor=actor, action="deploy_requested", environment=env_name, version=version,
                         outcome=dep.state.value, deployment_id=dep.id,
                         detail={"hosts": [h.name for h in env.hosts], "approval_needed": needs_approval})
        if not needs_approval:
            self._take_lock(dep)
        return self.store.get(dep.id)

    def request_rollback(self, env_name: str, actor: str, version: str | None = None, *, reason: str = "",
                         restore_db: bool = False, meta: dict | None = None,
                         skip_approval: bool = False) -> DeploymentRecord:
        """A rollback is a deployment of its own: to the previous good release, or a named one still on the hosts."""
        env = self.environment(env_name, actor)
        options = self.rollback_options(env_name)
        target = version if version is not None else options.previous_good
        if target is None:
            self._refuse(actor, "refused", env_name, None, f"no previous good release of {env_name} to roll back to")
        target = self.check_version(env_name, target, actor)
        if not env.may_deploy(actor) and not skip_approval:
            self._refuse(actor, "refused", env_name, target, f"you are not allowed to roll back {env_name}")
        if restore_db and not env.backup.restore_commands:
            self._refuse(actor, "refused", env_name, target,
                         f"{env_name} has no backup.restore_commands: cannot restore the database")
        self._refuse_if_locked(env_name, target, actor)
        needs_approval = env.approval.enabled and env.approval.required_for_rollback and not skip_approval
        dep = self.store.create_deployment(
            app=self.config.app.name, environment=env_name, version=target, kind=Kind.ROLLBACK, requested_by=actor,
            state=State.PENDING_APPROVAL if needs_approval else State.APPROVED, previous_version=options.current,
            reason=redact(reason), restore_db=restore_db, meta={**(meta or {}), "hosts": [h.name for h in env.hosts]})
        self.store.audit(actor=actor, action="rollback_requested", environment=env_name, version=target,
                         outcome=dep.state.value, deployment_id=dep.id,
                         detail={"reason": redact(reason), "restore_db": restore_db, "from": options.current,
                                 "migrations_since": options.migrations_since})
        if not needs_approval:
            self._take_lock(dep)
        return self.store.get(dep.id)

    # ---- approvals ----------------------------------------------------------------------------------
    def can_approve(self, env_name: str, actor: str, groups: Iterable[str] = ()) -> bool:
        approvers = set(self.config.environment(env_name).approval.approvers)
        return actor in approvers or bool(approvers & set(groups))

    def approve(self, deployment_id: int, actor: str, groups: Iterable[str] = ()) -> ApprovalResult:
        dep = self._pending(deployment_id, actor)
        env = self.config.environment(dep.environment)
        if not self.can_approve(dep.environment, actor, groups):
            self._refuse(actor, "approval_refused", dep.environment, dep.version,
                         f"only the approvers of {dep.environment} may approve", dep.id)
        if actor == dep.requested_by and not env.approval.allow_self_approval:
            self._refuse(actor, "approval_refused", dep.environment, dep.version,
                         "you cannot approve your own deploy", dep.id)
        if self.store.add_approval(dep.id, actor, "approve"):  # a repeat click counts once, but may retry the start
            self.store.audit(actor=actor, action="approved", environment=dep.environment, version=dep.version,
                             outcome="approve", deployment_id=dep.id)
        count = self._approval_count(dep.id)
        needed = env.approval.approvals_required
        if count < needed:
            return ApprovalResult(self.store.get(dep.id), count, needed, False)
        self._recheck(dep, actor)
        if not self.store.transition(dep.id, [State.PENDING_APPROVAL], State.APPROVED):
            return ApprovalResult(self.store.get(dep.id), count, needed, False)  # another click won
        self._take_lock(self.store.get(dep.id))
        return ApprovalResult(self.store.get(dep.id), count, needed, True)

    def reject(self, deployment_id: int, actor: str, reason: str = "", groups: Iterable[str] = ()) -> DeploymentRecord:
        dep = self._pending(deployment_id, actor)
        if not self.can_approve(dep.environment, actor, groups):
            self._refuse(actor, "rejection_refused", dep.environment, dep.version,
                         f"only the approvers of {dep.environment} may reject", dep.id)
        if self.store.transition(dep.id, [State.PENDING_APPROVAL], State.REJECTED, finished_at=_now(),
                                 error=redact(reason)):
            self.store.add_approval(dep.id, actor, "reject", redact(reason))
            self.store.audit(actor=actor, action="rejected", environment=dep.environment, version=dep.version,
                             outcome="rejected", deployment_id=dep.id, detail={"reason": redact(reason)})
        return self.store.get(dep.id)

    def cancel(self, deployment_id: int, actor: str, groups: Iterable[str] = ()) -> DeploymentRecord:
        """Withdraw a request that has not started (the requester or an approver)."""
        dep = self.deployment(deployment_id)
        if actor != dep.requested_by and not self.can_approve(dep.environment, actor, groups):
            self._refuse(actor, "cancel_refused", dep.environment, dep.version,
                         "only the requester or an approver may cancel", dep.id)
        if self.store.transition(dep.id, [State.PENDING_APPROVAL, State.APPROVED], State.CANCELLED,
                                 finished_at=_now()):
            self.store.release_lock(dep.environment, deployment_id=dep.id)
            self.store.audit(actor=actor, action="cancelled", environment=dep.environment, version=dep.version,
                             outcome="cancelled", deployment_id=dep.id)
        return self.store.get(dep.id)

    def abort(self, deployment_id: int, actor: str, groups: Iterable[str] = ()) -> DeploymentRecord:
        """Ask a running deployment to stop at the next stage boundary and roll back what switched."""
        dep = self.deployment(deployment_id)
        if actor != dep.requested_by and not self.can_approve(dep.environment, actor, groups):
            self._refuse(actor, "abort_refused", dep.environment, dep.version,
                         "only the requester or an approver may abort", dep.id)
        if dep.state is not State.RUNNING:
            raise Refused(f"deployment #{dep.id} is {dep.state.value}, not running")
        self.store.update_meta(dep.id, abort_requested_by=actor)
        self.store.audit(actor=actor, action="abort_requested", environment=dep.environment, version=dep.version,
                         outcome="aborting", deployment_id=dep.id)
        return self.store.get(dep.id)

    def expire_stale(self, now: datetime | None = None) -> list[DeploymentRecord]:
        now = now or _now()
        expired = []
        for dep in self.store.list_deployments(states=[State.PENDING_APPROVAL], limit=500):
            minutes = self.config.environments[dep.environment].approval.expires_after_minutes \
                if dep.environment in self.config.environments else 0
            if dep.created_at + timedelta(minutes=minutes) <= now and self.store.transition(
                    dep.id, [State.PENDING_APPROVAL], State.EXPIRED, finished_at=now, error="approval expired"):
                self.store.audit(actor="deploybot", action="expired", environment=dep.environment,
                                 version=dep.version, outcome="expired", deployment_id=dep.id)
                expired.append(self.store.get(dep.id))
        return expired

    # ---- running ---------------------------------------------------------------------------------------
    def run(self, deployment_id: int) -> DeploymentRecord:
        """Execute an approved deployment to its end; the lock is released on every path."""
        dep = self.store.get(deployment_id)
        if not self.store.transition(dep.id, [State.APPROVED], State.RUNNING, started_at=_now()):
            raise Refused(f"deployment #{dep.id} is {self.store.get(dep.id).state.value}, not approved")
        self.store.update_meta(dep.id, owner=OWNER)
        self.store.audit(actor=dep.requested_by, action=f"{dep.kind.value}_started", environment=dep.environment,
                         version=dep.version, outcome="running", deployment_id=dep.id)
        outcome, plan = Outcome(State.FAILED, error="internal error"), None
        try:
            plan = self._plan_for(dep)
            pipeline = Pipeline(plan, self.pool, self.events,
                                cancel_requested=self._abort_flag(dep.id),
                                on_rollback=lambda: self._rolling_back(dep.id))
            outcome = pipeline.run()
        except Exception as exc:  # noqa: BLE001 - record, never lose the deployment
            outcome = Outcome(State.FAILED, error=redact(f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            self._finish(dep, outcome)
            release_artifact(plan.artifact if plan else None)
        return self.store.get(dep.id)

    def deploy(self, env_name: str, version: str, actor: str) -> DeploymentRecord:
        """Operator path (CLI, demo): request with the approval step skipped, then run."""
        dep = self.request_deploy(env_name, version, actor, skip_approval=True)
        return self.run(dep.id)

    def rollback(self, env_name: str, actor: str, version: str | None = None, *, reason: str = "",
                 restore_db: bool = False) -> DeploymentRecord:
        dep = self.request_rollback(env_name, actor, version, reason=reason, restore_db=restore_db,
                                    skip_approval=True)
        return self.run(dep.id)

    def recover_interrupted(self) -> list[DeploymentRecord]:
        """At start: deployments whose process died become `interrupted`, their locks are released,
        and what each host runs now is read live and written to the audit trail."""
        found = []
        host_name = OWNER.split(":")[0]
        for dep in self.store.list_deployments(states=[State.RUNNING, State.ROLLING_BACK], limit=500):
            owner = str(dep.meta.get("owner", ""))
            name, _, pid = owner.partition(":")
            if name == host_name and pid.isdigit() and _alive(int(pid)):
                continue
            if self.store.transition(dep.id, [State.RUNNING, State.ROLLING_BACK], State.INTERRUPTED,
                                     finished_at=_now(), error="the bot stopped while this deployment ran"):
                live = {}
                if dep.environment in self.config.environments:
                    live = {h.name: h.release or h.error for h in self.live_hosts(dep.environment)}
                self.store.release_lock(dep.environment, deployment_id=dep.id)
                self.store.audit(actor="deploybot", action="interrupted", environment=dep.environment,
                                 version=dep.version, outcome="interrupted", deployment_id=dep.id,
                                 detail={"hosts_now": live, "stage": dep.meta.get("stage")})
                found.append(self.store.get(dep.id))
        return found

    # ---- reading ----------------------------------------------------------------------------------
    def deployment(self, deployment_id: int) -> DeploymentRecord:
        try:
            return self.store.get(deployment_id)
        except KeyError:
            raise Refused(f"no deployment #{deployment_id}") from None

    def approvals(self, deployment_id: int) -> list[ApprovalRecord]:
        return self.store.approvals(deployment_id)

    def remember_message(self, deployment_id: int, **meta: object) -> None:
        """Where a front end shows this deployment (e.g. Slack channel and ts), so a restart can find it."""
        self.store.update_meta(deployment_id, **meta)

    def live_hosts(self, env_name: str) -> list[HostStatus]:
        env = self.config.environment(env_name)

        def read(host) -> HostStatus:
            res = self.pool.get(env, host).run(commands.read_current(env.host_path(host)),
                                               timeout=env.ssh.connect_timeout + 10)
            answer = probe(env.health_url(host), env.health, None, timeout=min(2.0, env.health.timeout))
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
            out.append(EnvironmentStatus(name, self.live_hosts(name), self._recorded_version(name),
                                         finished[0] if finished else None, running[0] if running else None,
                                         self.store.get_lock(name)))
        return out

    def history(self, env_name: str | None = None, limit: int = 20) -> list[DeploymentRecord]:
        if env_name:
            self.environment(env_name)
        return self.store.list_deployments(env_name, limit=limit)

    def rollback_options(self, env_name: str) -> RollbackOptions:
        self.config.environment(env_name)
        good = [d for d in self.store.list_deployments(env_name, states=[State.SUCCEEDED], limit=50)]
        current = good[0].version if good else None
        previous = next((d for d in good if d.version != current), None)
        migrations = False
        if previous and self.config.environments[env_name].migrate:
            migrations = any(
                s.stage == Stage.MIGRATE.value and s.ok
                for d in good if d.id > previous.id and d.kind is Kind.DEPLOY
                for s in self.store.stages(d.id))
        available = sorted({d.version for d in good if d.version != current})
        return RollbackOptions(env_name, current, previous.version if previous else None, available, migrations)

    # ---- locks ------------------------------------------------------------------------------------
    def lock(self, env_name: str, actor: str, reason: str) -> LockRecord:
        self.environment(env_name, actor)
        if not reason.strip():
            raise Refused("a lock needs a reason, e.g. `lock prod release freeze`")
        try:
            lock = self.store.acquire_lock(env_name, holder=actor, reason=redact(reason[:200]), kind="manual")
        except LockHeld as exc:
            self._refuse(actor, "lock_refused", env_name, None, describe_lock(exc.lock))
        self.store.audit(actor=actor, action="locked", environment=env_name, outcome="locked",
                         detail={"reason": lock.reason})
        return lock

    def unlock(self, env_name: str, actor: str) -> bool:
        self.environment(env_name, actor)
        released = self.store.release_lock(env_name, kind="manual")
        if not released and self.store.get_lock(env_name):
            self._refuse(actor, "unlock_refused", env_name, None,
                         f"{env_name} is locked by a running deployment; abort it instead")
        if released:
            self.store.audit(actor=actor, action="unlocked", environment=env_name, outcome="unlocked")
        return released

    # ---- internals ----------------------------------------------------------------------------------
    def _plan_for(self, dep: DeploymentRecord) -> Plan:
        env = self.config.environment(dep.environment)
        if dep.kind is Kind.ROLLBACK:
            return Plan(dep.id, self.config.app.name, env, dep.version, Kind.ROLLBACK,
                        restore_db_from=dep.version if dep.restore_db else None)
        plan = self.plan(dep.environment, dep.version, dep.requested_by, deployment_id=dep.id)
        return Plan(dep.id, plan.app, env, plan.version, Kind.DEPLOY, plan.artifact,
                    expect_current=self.store.last_succeeded(dep.environment, before_id=dep.id) is not None)

    def _abort_flag(self, deployment_id: int, every: float = 0.5) -> Callable[[], bool]:
        """Whether someone asked to abort. Read from the store, since any replica may have taken the click, but at
        most every `every` seconds: the verification window asks once per probe per host."""
        guard, seen = threading.Lock(), {"at": float("-inf"), "abort": False}

        def requested() -> bool:
            with guard:
                if not seen["abort"] and time.monotonic() - seen["at"] >= every:
                    seen["at"] = time.monotonic()
                    seen["abort"] = bool(self.store.get(deployment_id).meta.get("abort_requested_by"))
                return seen["abort"]
        return requested

    def _rolling_back(self, deployment_id: int) -> None:
        self.store.transition(deployment_id, [State.RUNNING], State.FAILED)
        self.store.transition(deployment_id, [State.FAILED], State.ROLLING_BACK)

    def _finish(self, dep: DeploymentRecord, outcome: Outcome) -> None:
        fields = {"finished_at": _now(), "error": redact(outcome.error)[:2000], "failed_stage": outcome.failed_stage,
                  "failed_host": outcome.failed_host}
        if outcome.previous_version and dep.kind is Kind.DEPLOY:
            fields["previous_version"] = outcome.previous_version
        self.store.transition(dep.id, [State.RUNNING, State.ROLLING_BACK, State.FAILED], outcome.state, **fields)
        self.store.release_lock(dep.environment, deployment_id=dep.id)
        final = self.store.get(dep.id)
        self.store.audit(actor=dep.requested_by, action=f"{dep.kind.value}_finished", environment=dep.environment,
                         version=dep.version, outcome=final.state.value, deployment_id=dep.id,
                         detail={"seconds": round(outcome.seconds, 3), "failed_stage": outcome.failed_stage,
                                 "failed_host": outcome.failed_host, "error": fields["error"],
                                 "reverted_hosts": outcome.reverted_hosts})
        self.events.emit(DeploymentFinished(dep.id, state=final.state.value, seconds=outcome.seconds,
                                            failed_stage=outcome.failed_stage, failed_host=outcome.failed_host,
                                            error=fields["error"]))

    def _take_lock(self, dep: DeploymentRecord) -> None:
        try:
            self.store.acquire_lock(dep.environment, holder=dep.requested_by, kind="deploy", deployment_id=dep.id,
                                    reason=f"{dep.kind.value} {dep.version} (#{dep.id})")
        except LockHeld as exc:
            message = describe_lock(exc.lock)
            self.store.transition(dep.id, [State.APPROVED], State.CANCELLED, finished_at=_now(), error=message)
            self._refuse(dep.requested_by, "refused", dep.environment, dep.version, message, dep.id)

    def _check_artifact(self, env_name: str, version: str, actor: str) -> None:
        """Cheap existence check (stat or HEAD) for requests and approvals; hashing waits for the run."""
        try:
            check_artifact(self.config, version)
        except ArtifactMissing as exc:
            self._refuse(actor, "refused", env_name, version, str(exc))

    def _refuse_if_locked(self, env_name: str, version: str | None, actor: str) -> None:
        lock = self.store.get_lock(env_name)
        if lock:
            self._refuse(actor, "refused", env_name, version, describe_lock(lock))

    def _pending(self, deployment_id: int, actor: str) -> DeploymentRecord:
        self.deployment(deployment_id)
        self.expire_stale()
        dep = self.store.get(deployment_id)
        if dep.state is not State.PENDING_APPROVAL:
            self._refuse(actor, "approval_refused", dep.environment, dep.version,
                         f"deployment #{dep.id} is {dep.state.value.replace('_', ' ')}, not waiting for approval",
                         dep.id)
        return dep

    def _recheck(self, dep: DeploymentRecord, actor: str) -> None:
        """At approval, what was shown must still hold: same hosts, artifact present, no lock."""
        env = self.config.environment(dep.environment)
        if dep.meta.get("hosts") != [h.name for h in env.hosts]:
            self._refuse(actor, "approval_refused", dep.environment, dep.version,
                         "the hosts changed since this request was shown; ask for a new deploy", dep.id)
        self._check_artifact(dep.environment, dep.version, actor)
        self._refuse_if_locked(dep.environment, dep.version, actor)

    def _approval_count(self, deployment_id: int) -> int:
        return len({a.approver for a in self.store.approvals(deployment_id) if a.decision == "approve"})

    def _recorded_version(self, env_name: str) -> str | None:
        last = self.store.last_succeeded(env_name)
        return last.version if last else None

    def _refuse(self, actor: str, action: str, env: str | None, version: str | None, message: str,
                deployment_id: int | None = None, detail: dict | None = None) -> NoReturn:
        self.store.audit(actor=actor, action=action, environment=env, version=version, outcome="refused",
                         deployment_id=deployment_id, detail={"reason": redact(message), **(detail or {})})
        raise Refused(redact(message))  # it reaches Slack and the terminal


def describe_lock(lock: LockRecord) -> str:
    what = "frozen" if lock.kind == "manual" else "locked by a running deployment"
    since = lock.acquired_at.strftime("%Y-%m-%d %H:%M UTC")
    return f"{lock.environment} is {what}: held by {lock.holder} since {since} ({lock.reason})"


def _now() -> datetime:
    return datetime.now(UTC)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False

