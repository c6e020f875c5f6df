"""Persistence: deployments, stage results, approvals, locks and the hash-chained audit trail.

`Store` is the only place in the project that speaks SQL through SQLAlchemy; it hands out the frozen records of
bot/domain.py, detached from any session. It is imported on first use (`from bot.store import Store`), so a
command that only reads a SQLite file (bot/store/reader.py) never loads SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.domain import (
    ApprovalRecord,
    AuditRecord,
    AuditVerification,
    DeploymentRecord,
    LockHeld,
    LockRecord,
    StageRecord,
)

if TYPE_CHECKING:
    from bot.store.store import Store


def __getattr__(name: str) -> object:
    if name == "Store":
        from bot.store.store import Store

        return Store
    raise AttributeError(f"module 'bot.store' has no attribute {name!r}")


__all__ = [
    "Store",
    "LockHeld",
    "DeploymentRecord",
    "StageRecord",
    "ApprovalRecord",
    "LockRecord",
    "AuditRecord",
    "AuditVerification",
]
