"""Persistence: deployments, stage results, approvals, locks and the hash-chained audit trail.

`Store` is the only place in the project that speaks SQL; it hands out frozen records detached from any session.
"""

from __future__ import annotations

from bot.domain import (
    ApprovalRecord,
    AuditRecord,
    AuditVerification,
    DeploymentRecord,
    LockRecord,
    StageRecord,
)
from bot.store.audit import AuditMixin
from bot.store.db import Database
from bot.store.deployments import DeploymentsMixin
from bot.store.locks import LocksMixin
from bot.store.records import LockHeld


class Store(DeploymentsMixin, LocksMixin, AuditMixin):
    """SQLite (default, a file in the cwd) or PostgreSQL; the schema is migrated to head on construction."""

    def __init__(self, url: str | None = None):
        self.db = Database(url)
        try:
            self.db.migrate()
        except BaseException:
            self.db.close()
            raise

    @property
    def url(self) -> str:
        return self.db.url

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Store", "LockHeld", "DeploymentRecord", "StageRecord", "ApprovalRecord", "LockRecord", "AuditRecord",
           "AuditVerification"]
