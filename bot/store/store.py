"""The store: one object over the database, its schema migrated to head on construction."""

from __future__ import annotations

from bot.store.audit import AuditMixin
from bot.store.db import Database
from bot.store.deployments import DeploymentsMixin
from bot.store.locks import LocksMixin


class Store(DeploymentsMixin, LocksMixin, AuditMixin):
    """SQLite (default, a file in the data folder) or PostgreSQL; the schema is migrated to head on construction."""

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
