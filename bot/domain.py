"""Domain words shared by the engine, the store and the front ends."""

from __future__ import annotations

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


class Stage(StrEnum):
    PREFLIGHT = "preflight"
    BACKUP = "backup"
    UPLOAD = "upload"
    MIGRATE = "migrate"
    RESTORE_DB = "restore_db"
    SWITCH = "switch"
    RESTART = "restart"
    HEALTH = "health"
    VERIFY = "verify"
    CLEANUP = "cleanup"
    REVERT = "revert"  # auto-rollback of the hosts that switched: flip back, restart, health
