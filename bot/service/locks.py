"""Locks: at most one active deployment per environment, plus manual freezes (`lock prod "release freeze"`).

The lock is a row taken by INSERT, so racing processes get exactly one winner; the lifecycle releases a
deployment's lock when it ends.
"""

from __future__ import annotations

from bot.domain import AuditAction, DeploymentRecord, LockHeld, LockRecord
from bot.redact import redact
from bot.service.base import UseCases
from bot.service.lifecycle import Transition


class Locks(UseCases):
    def lock(self, env_name: str, actor: str, reason: str) -> LockRecord:
        self.environment(env_name, actor)
        if not reason.strip():
            self.refuse(
                actor,
                AuditAction.LOCK_REFUSED,
                env_name,
                None,
                "a lock needs a reason, e.g. `lock prod release freeze`",
            )
        try:
            lock = self.store.acquire_lock(env_name, holder=actor, reason=redact(reason[:200]), kind="manual")
        except LockHeld as exc:
            self.refuse(actor, AuditAction.LOCK_REFUSED, env_name, None, exc.lock.describe())
        self.store.audit(
            actor=actor,
            action=AuditAction.LOCKED,
            environment=env_name,
            outcome="locked",
            detail={"reason": lock.reason},
        )
        return lock

    def unlock(self, env_name: str, actor: str) -> bool:
        self.environment(env_name, actor)
        released = self.store.release_lock(env_name, kind="manual")
        if not released and self.store.get_lock(env_name):
            self.refuse(
                actor,
                AuditAction.UNLOCK_REFUSED,
                env_name,
                None,
                f"{env_name} is locked by a running deployment; abort it instead",
            )
        if released:
            self.store.audit(actor=actor, action=AuditAction.UNLOCKED, environment=env_name, outcome="unlocked")
        return released

    def refuse_if_locked(
        self, env_name: str, version: str | None, actor: str, deployment_id: int | None = None
    ) -> None:
        lock = self.store.get_lock(env_name)
        if lock:
            self.refuse(actor, AuditAction.REFUSED, env_name, version, lock.describe(), deployment_id)

    def take_for(self, dep: DeploymentRecord) -> None:
        """An approved deployment takes its environment, under this process's lease; if someone else holds it, the
        deployment is cancelled and the requester told who holds it."""
        try:
            self.store.acquire_lock(
                dep.environment,
                holder=dep.requested_by,
                kind="deploy",
                deployment_id=dep.id,
                reason=f"{dep.kind.value} {dep.version} (#{dep.id})",
                owner=self.leases.owner,
                lease_seconds=self.leases.ttl,
            )
            self.leases.holding(dep.id)
        except LockHeld as exc:
            message = exc.lock.describe()
            self.lifecycle.fire(dep, Transition.CANCEL, dep.requested_by, error=message, detail={"reason": message})
            self.refuse(dep.requested_by, AuditAction.REFUSED, dep.environment, dep.version, message, dep.id)
