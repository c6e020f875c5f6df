"""Approvals: approvers decide on a pending deployment; the quorum starts it. Also cancel, abort and expiry.

Every click goes through a compare-and-swap, so double clicks, simultaneous approvers and replicas are harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.domain import AuditAction, DeploymentRecord, State
from bot.redact import redact
from bot.service.base import UseCases
from bot.service.lifecycle import BOT, Transition, now

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApprovalResult:
    deployment: DeploymentRecord
    approvals: int
    needed: int
    started: bool  # the quorum was reached by this click: the lock is taken and the run launched


class Approvals(UseCases):
    def __init__(self, ctx, locks, requests, runs):
        super().__init__(ctx)
        self.locks, self.requests, self.runs = locks, requests, runs

    def can_approve(self, env_name: str, actor: str, groups: Iterable[str] = ()) -> bool:
        approvers = set(self.config.environments[env_name].approval.approvers)
        return actor in approvers or bool(approvers & set(groups))

    def may_act_on(self, dep: DeploymentRecord, actor: str, groups: Iterable[str] = ()) -> bool:
        """The requester or an approver may cancel or abort."""
        return actor == dep.requested_by or self.can_approve(dep.environment, actor, groups)

    def approve(self, deployment_id: int, actor: str, groups: Iterable[str] = ()) -> ApprovalResult:
        dep = self._pending(deployment_id, actor, AuditAction.APPROVAL_REFUSED)
        env = self.config.environments[dep.environment]
        if not self.can_approve(dep.environment, actor, groups):
            self.refuse(
                actor,
                AuditAction.APPROVAL_REFUSED,
                dep.environment,
                dep.version,
                f"only the approvers of {dep.environment} may approve",
                dep.id,
            )
        if actor == dep.requested_by and not env.approval.allow_self_approval:
            self.refuse(
                actor,
                AuditAction.APPROVAL_REFUSED,
                dep.environment,
                dep.version,
                "you cannot approve your own deploy",
                dep.id,
            )
        if self.store.add_approval(dep.id, actor, "approve"):  # a repeat click counts once, but may retry the start
            log.info(
                "#%s approved by %s",
                dep.id,
                actor,
                extra={"deployment": dep.id, "actor": actor, "environment": dep.environment},
            )
            self.store.audit(
                actor=actor,
                action=AuditAction.APPROVED,
                environment=dep.environment,
                version=dep.version,
                outcome="approve",
                deployment_id=dep.id,
            )
        count = len({a.approver for a in self.store.approvals(dep.id) if a.decision == "approve"})
        needed = env.approval.approvals_required
        if count < needed:
            return ApprovalResult(self.deployment(dep.id), count, needed, False)
        self._recheck(dep, actor)
        approved = self.lifecycle.fire(dep, Transition.APPROVE, actor)
        if approved is None:
            return ApprovalResult(self.deployment(dep.id), count, needed, False)  # another click won
        self.locks.take_for(approved)
        self.runs.start(dep.id)
        return ApprovalResult(self.deployment(dep.id), count, needed, True)

    def reject(self, deployment_id: int, actor: str, reason: str = "", groups: Iterable[str] = ()) -> DeploymentRecord:
        dep = self._pending(deployment_id, actor, AuditAction.REJECTION_REFUSED)
        if not self.can_approve(dep.environment, actor, groups):
            self.refuse(
                actor,
                AuditAction.REJECTION_REFUSED,
                dep.environment,
                dep.version,
                f"only the approvers of {dep.environment} may reject",
                dep.id,
            )
        if self.store.add_approval(dep.id, actor, "reject", redact(reason)):
            self.lifecycle.fire(dep, Transition.REJECT, actor, error=reason, detail={"reason": reason})
        return self.deployment(dep.id)

    def cancel(self, deployment_id: int, actor: str, groups: Iterable[str] = ()) -> DeploymentRecord:
        """Withdraw a request that has not started (the requester or an approver)."""
        dep = self.deployment(deployment_id)
        if not self.may_act_on(dep, actor, groups):
            self.refuse(
                actor,
                AuditAction.CANCEL_REFUSED,
                dep.environment,
                dep.version,
                "only the requester or an approver may cancel",
                dep.id,
            )
        self.lifecycle.fire(dep, Transition.CANCEL, actor)
        return self.deployment(dep.id)

    def abort(self, deployment_id: int, actor: str, groups: Iterable[str] = ()) -> DeploymentRecord:
        """Ask a running deployment to stop at the next stage boundary and roll back what switched."""
        dep = self.deployment(deployment_id)
        if not self.may_act_on(dep, actor, groups):
            self.refuse(
                actor,
                AuditAction.ABORT_REFUSED,
                dep.environment,
                dep.version,
                "only the requester or an approver may abort",
                dep.id,
            )
        if dep.state is not State.RUNNING:
            self.refuse(
                actor,
                AuditAction.ABORT_REFUSED,
                dep.environment,
                dep.version,
                f"deployment #{dep.id} is {dep.state.words}, not running",
                dep.id,
            )
        self.store.update_meta(dep.id, abort_requested_by=actor)
        self.store.audit(
            actor=actor,
            action=AuditAction.ABORT_REQUESTED,
            environment=dep.environment,
            version=dep.version,
            outcome="aborting",
            deployment_id=dep.id,
        )
        return self.deployment(dep.id)

    def expire_stale(self, at: datetime | None = None) -> list[DeploymentRecord]:
        at = at or now()
        expired = []
        for dep in self.store.list_deployments(states=[State.PENDING_APPROVAL], limit=500):
            env = self.config.environments.get(dep.environment)
            minutes = env.approval.expires_after_minutes if env else 0
            if dep.created_at + timedelta(minutes=minutes) <= at:
                after = self.lifecycle.fire(dep, Transition.EXPIRE, BOT, finished_at=at, error="approval expired")
                if after:
                    expired.append(after)
        return expired

    def _pending(self, deployment_id: int, actor: str, action: AuditAction) -> DeploymentRecord:
        self.deployment(deployment_id)
        self.expire_stale()
        dep = self.deployment(deployment_id)
        if dep.state is not State.PENDING_APPROVAL:
            self.refuse(
                actor,
                action,
                dep.environment,
                dep.version,
                f"deployment #{dep.id} is {dep.state.words}, not waiting for approval",
                dep.id,
            )
        return dep

    def _recheck(self, dep: DeploymentRecord, actor: str) -> None:
        """At approval, what was shown must still hold: same hosts, artifact present, no lock."""
        env = self.config.environments[dep.environment]
        if dep.meta.get("hosts") != [h.name for h in self.hosts(env, actor, dep.version)]:
            self.refuse(
                actor,
                AuditAction.APPROVAL_REFUSED,
                dep.environment,
                dep.version,
                "the hosts changed since this request was shown; ask for a new deploy",
                dep.id,
            )
        self.requests.check_artifact(dep.environment, dep.version, actor, dep.id)
        self.locks.refuse_if_locked(dep.environment, dep.version, actor, deployment_id=dep.id)
