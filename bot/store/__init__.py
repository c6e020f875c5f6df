"""Persistence: deployments, stage results, approvals, locks and the hash-chained audit trail (SQLAlchemy)."""

from bot.store.records import (
    ApprovalRecord,
    AuditRecord,
    AuditVerification,
    DeploymentRecord,
    LockHeld,
    LockRecord,
    StageRecord,
)
from bot.store.store import Store

__all__ = ["Store", "LockHeld", "DeploymentRecord", "StageRecord", "ApprovalRecord", "LockRecord", "AuditRecord",
           "AuditVerification"]
