"""Domain words and records shared by the engine, the store, the service and the front ends.

The records are plain frozen values: the store hands them out, the service returns them, the front ends render
them, and none of them holds a database session or knows where it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class State(StrEnum):
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    FAILED = "failed"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"
    INTERRUPTED = "interrupted"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES

    @property
    def is_active(self) -> bool:
        """Holds the environment's lock."""
        return self in (State.APPROVED, State.RUNNING, State.ROLLING_BACK)

    @property
    def words(self) -> str:
        return self.value.replace("_", " ")


FINAL_STATES = frozenset(
    {
        State.SUCCEEDED,
        State.REJECTED,
        State.EXPIRED,
        State.CANCELLED,
        State.FAILED,
        State.ROLLED_BACK,
        State.ROLLBACK_FAILED,
        State.INTERRUPTED,
    }
)


class Kind(StrEnum):
    DEPLOY = "deploy"
    ROLLBACK = "rollback"


class Phase(StrEnum):
    """The named parts of a deployment, in the order of the flow table (bot/engine/flow.py)."""

    STARTING = "starting"
    UPDATING = "updating"
    REVERTING = "reverting"  # a rollback's middle: what updating is to a deploy
    PUBLISHING = "publishing"
    VERIFYING = "verifying"
    FINISHING = "finishing"


class Stage(StrEnum):
    PREFLIGHT = "preflight"
    BACKUP = "backup"
    UPLOAD = "upload"
    SNAPSHOT = "snapshot"  # an RDS snapshot of the database, taken from the bot before the migration
    MIGRATE = "migrate"
    RESTORE_DB = "restore_db"
    DRAIN = "drain"  # the balancer stops sending new requests to the host; those in flight finish
    SWITCH = "switch"
    RESTART = "restart"
    HEALTH = "health"
    RESTORE = "restore"  # the balancer sends requests to the host again
    FLIP = "flip"  # blue-green: the host's proxy sends requests to the slot just checked; `current` follows it
    RETIRE = "retire"  # blue-green: the old slot stops after the verification window (unless kept warm)
    CANARY = "canary"  # the first batch serves alone for a while under the gates before the rest are published
    VERIFY = "verify"
    CLEANUP = "cleanup"
    REVERT = "revert"  # auto-rollback of the hosts that switched: publishing with each host's previous release


class AuditAction(StrEnum):
    """Everything the audit trail can say. Requests and refusals come from the service; the lifecycle writes
    one row per transition; stage failures and the auto-rollback come from engine events."""

    DEPLOY_REQUESTED = "deploy_requested"
    ROLLBACK_REQUESTED = "rollback_requested"
    REFUSED = "refused"
    APPROVED = "approved"
    APPROVAL_REFUSED = "approval_refused"
    REJECTED = "rejected"
    REJECTION_REFUSED = "rejection_refused"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    CANCEL_REFUSED = "cancel_refused"
    ABORT_REQUESTED = "abort_requested"
    ABORT_REFUSED = "abort_refused"
    DEPLOY_STARTED = "deploy_started"
    ROLLBACK_STARTED = "rollback_started"
    STAGE_FAILED = "stage_failed"
    AUTO_ROLLBACK_STARTED = "auto_rollback_started"
    DEPLOY_FINISHED = "deploy_finished"
    ROLLBACK_FINISHED = "rollback_finished"
    INTERRUPTED = "interrupted"
    LOCKED = "locked"
    LOCK_REFUSED = "lock_refused"
    UNLOCKED = "unlocked"
    UNLOCK_REFUSED = "unlock_refused"

    @classmethod
    def started(cls, kind: Kind) -> AuditAction:
        return cls.ROLLBACK_STARTED if kind is Kind.ROLLBACK else cls.DEPLOY_STARTED

    @classmethod
    def finished(cls, kind: Kind) -> AuditAction:
        return cls.ROLLBACK_FINISHED if kind is Kind.ROLLBACK else cls.DEPLOY_FINISHED


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return (end - start).total_seconds() if start and end else None


@dataclass(frozen=True)
class DeploymentRecord:
    id: int
    app: str
    environment: str
    version: str
    kind: Kind
    state: State
    requested_by: str
    previous_version: str | None
    reason: str
    restore_db: bool
    meta: dict
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str
    failed_stage: str | None
    failed_host: str | None

    @property
    def seconds(self) -> float | None:
        return _seconds(self.started_at, self.finished_at)


@dataclass(frozen=True)
class StageRecord:
    deployment_id: int
    stage: str
    host: str | None
    phase: str
    started_at: datetime
    ended_at: datetime
    ok: bool
    exit_code: int | None
    excerpt: str
    error: str

    @property
    def seconds(self) -> float:
        return _seconds(self.started_at, self.ended_at) or 0.0


@dataclass(frozen=True)
class ApprovalRecord:
    deployment_id: int
    approver: str
    decision: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class LockRecord:
    environment: str
    holder: str
    reason: str
    kind: str
    deployment_id: int | None
    acquired_at: datetime
    owner: str | None = None  # the process whose lease holds a deploy lock
    expires_at: datetime | None = None

    def describe(self) -> str:
        """Who holds it, since when and why: the sentence a refused requester reads."""
        what = "frozen" if self.kind == "manual" else "locked by a running deployment"
        return (
            f"{self.environment} is {what}: held by {self.holder} since {self.acquired_at:%Y-%m-%d %H:%M UTC} "
            f"({self.reason})"
        )


class LockHeld(Exception):
    """Someone else holds the environment; the message says who, since when and why, ready to show a user."""

    def __init__(self, lock: LockRecord):
        self.lock = lock
        what = f"deployment #{lock.deployment_id}" if lock.deployment_id is not None else f"a {lock.kind} lock"
        super().__init__(
            f"{lock.environment} is locked by {lock.holder} ({what}) since "
            f"{lock.acquired_at:%Y-%m-%d %H:%M:%S} UTC: {lock.reason or 'no reason given'}"
        )

    def __reduce__(self):  # picklable across processes (the default would re-call __init__ with the message)
        return (LockHeld, (self.lock,))


@dataclass(frozen=True)
class AuditRecord:
    id: int
    seq: int
    at: datetime
    actor: str
    action: str
    environment: str | None
    version: str | None
    outcome: str | None
    deployment_id: int | None
    detail: dict
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class AuditVerification:
    ok: bool
    checked: int
    problems: list[str] = field(default_factory=list)
