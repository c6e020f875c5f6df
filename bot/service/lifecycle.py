"""The deployment lifecycle: states move only through TRANSITIONS, and what hangs off a transition happens here
and nowhere else: the audit row, the lock release when the deployment is over, and DeploymentFinished.

    pending_approval --approve--> approved --start--> running --succeed--> succeeded
    pending_approval --reject|expire|cancel--> rejected | expired | cancelled
    approved --cancel--> cancelled                      (withdrawn, or refused at start: lock held, bot busy)
    running --fail--> failed        (nothing had switched)
    running --stop--> cancelled     (aborted at a stage boundary before any switch)
    running --revert--> rolling_back --reverted--> rolled_back | --revert_failed--> rollback_failed
    running | rolling_back --interrupt--> interrupted   (the bot running it stopped)

A state change is one compare-and-swap in the store, so of two racing processes exactly one fires it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from bot.domain import AuditAction, DeploymentRecord, State
from bot.engine.events import DeploymentFinished, EventBus
from bot.redact import redact

if TYPE_CHECKING:
    from bot.store import Store

log = logging.getLogger(__name__)
BOT = "deploybot"  # the actor of what nobody clicked: expiry, automatic rollback, recovery


class Transition(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    EXPIRE = "expire"
    CANCEL = "cancel"
    START = "start"
    SUCCEED = "succeed"
    FAIL = "fail"
    STOP = "stop"
    REVERT = "revert"
    REVERTED = "reverted"
    REVERT_FAILED = "revert_failed"
    INTERRUPT = "interrupt"


@dataclass(frozen=True)
class Rule:
    sources: frozenset[State]
    target: State
    audit: AuditAction | None  # None: the finished action of the deployment's kind, or nothing (APPROVE)


def _rule(sources: tuple[State, ...], target: State, audit: AuditAction | None = None) -> Rule:
    return Rule(frozenset(sources), target, audit)


P, A, R, RB = State.PENDING_APPROVAL, State.APPROVED, State.RUNNING, State.ROLLING_BACK
TRANSITIONS: dict[Transition, Rule] = {
    Transition.APPROVE: _rule((P,), A),  # each approver's click is audited by the approvals use case
    Transition.REJECT: _rule((P,), State.REJECTED, AuditAction.REJECTED),
    Transition.EXPIRE: _rule((P,), State.EXPIRED, AuditAction.EXPIRED),
    Transition.CANCEL: _rule((P, A), State.CANCELLED, AuditAction.CANCELLED),
    Transition.START: _rule((A,), R),  # audited as deploy_started / rollback_started
    Transition.SUCCEED: _rule((R,), State.SUCCEEDED),
    Transition.FAIL: _rule((R,), State.FAILED),
    Transition.STOP: _rule((R,), State.CANCELLED),
    Transition.REVERT: _rule((R,), RB, AuditAction.AUTO_ROLLBACK_STARTED),
    Transition.REVERTED: _rule((RB,), State.ROLLED_BACK),
    Transition.REVERT_FAILED: _rule((RB,), State.ROLLBACK_FAILED),
    Transition.INTERRUPT: _rule((R, RB), State.INTERRUPTED, AuditAction.INTERRUPTED),
}


def now() -> datetime:
    return datetime.now(UTC)


class Lifecycle:
    def __init__(self, store: Store, events: EventBus):
        self.store = store
        self.events = events

    def fire(
        self,
        dep: DeploymentRecord,
        transition: Transition,
        actor: str,
        *,
        detail: dict | None = None,
        seconds: float = 0.0,
        **fields: object,
    ) -> DeploymentRecord | None:
        """Move `dep` along `transition`; the new record, or None when it was not in a source state (another
        process or click won, or it had already moved on)."""
        rule = TRANSITIONS[transition]
        started = rule.target is R
        if started:
            fields.setdefault("started_at", now())
        if rule.target.is_final:
            fields.setdefault("finished_at", now())
        if "error" in fields:
            fields["error"] = redact(str(fields["error"]))[:2000]
        if not self.store.transition(dep.id, rule.sources, rule.target, **fields):
            return None
        after = self.store.get(dep.id)
        log.info(
            "deployment #%s %s: %s -> %s",
            dep.id,
            transition.value,
            dep.state.value,
            after.state.value,
            extra={
                "deployment": dep.id,
                "environment": dep.environment,
                "version": dep.version,
                "transition": transition.value,
                "state": after.state.value,
                "actor": actor,
            },
        )
        if rule.target.is_final:
            self.store.release_lock(dep.environment, deployment_id=dep.id)
        ends_run = rule.target.is_final and rule.sources <= {R, RB}
        action = rule.audit or (
            AuditAction.started(dep.kind) if started else AuditAction.finished(dep.kind) if ends_run else None
        )
        if action is not None:
            self.store.audit(
                actor=actor,
                action=action,
                environment=dep.environment,
                version=dep.version,
                outcome=after.state.value,
                deployment_id=dep.id,
                detail=_clean(detail),
            )
        if ends_run:
            self.events.emit(
                DeploymentFinished(
                    dep.id,
                    state=after.state.value,
                    seconds=seconds,
                    failed_stage=after.failed_stage,
                    failed_host=after.failed_host,
                    error=after.error,
                )
            )
        return after


def _clean(detail: dict | None) -> dict:
    return {k: redact(v) if isinstance(v, str) else v for k, v in (detail or {}).items()}
