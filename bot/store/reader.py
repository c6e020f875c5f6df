"""A read-only view of a SQLite store through Python's own sqlite3, for commands that only read (`status`,
`history`): they start in a fraction of the time, since SQLAlchemy and its ORM cost ~0.2 s to import.

It answers the store's reading methods with the same domain records, and only for a database whose schema is at
this code's HEAD revision (else `Behind`, and the caller opens the full Store, which migrates). Anything else asked
of it (a refusal's audit row, say) goes to a full Store opened on that first need.
tests/test_store_reader.py holds it to the Store's answers on the same file, so the two cannot drift apart.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path

from bot.domain import ApprovalRecord, DeploymentRecord, Kind, LockRecord, State
from bot.store.location import normalize_url
from bot.store.migrations import HEAD

DEPLOYMENT = ", ".join(f.name for f in fields(DeploymentRecord))  # the record's columns, whatever the table grows
LOCK = ", ".join(f.name for f in fields(LockRecord))


class Behind(Exception):
    """No such file, not SQLite, or a schema that is not at HEAD: use the full Store."""


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value).replace(tzinfo=UTC) if value else None


def _deployment(row: sqlite3.Row) -> DeploymentRecord:
    values = dict(row)
    return DeploymentRecord(
        **{
            **values,
            "kind": Kind(values["kind"]),
            "state": State(values["state"]),
            "restore_db": bool(values["restore_db"]),
            "meta": json.loads(values["meta"] or "{}"),
            **{k: _time(values[k]) for k in ("created_at", "started_at", "finished_at")},
        }
    )


class SQLiteReader:
    def __init__(self, url: str | None = None):
        url = normalize_url(url)
        if not url.startswith("sqlite:///") or url == "sqlite:///:memory:":
            raise Behind(f"not a SQLite file: {url.split(':', 1)[0]}")
        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_file():
            raise Behind(f"no database at {path}")
        self.url = url
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        try:
            at = self._db.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.DatabaseError as exc:
            raise Behind(str(exc)) from None
        if not at or at[0] != HEAD:
            raise Behind(f"schema at {at[0] if at else 'nothing'}, this code reads {HEAD}")

    def list_deployments(
        self, environment: str | None = None, states: Iterable[State] | None = None, limit: int = 20
    ) -> list[DeploymentRecord]:
        where, args = [], []
        if environment is not None:
            where.append("environment = ?")
            args.append(environment)
        if states is not None:
            chosen = [State(s).value for s in states]
            where.append(f"state IN ({', '.join('?' * len(chosen))})")
            args += chosen
        query = f"SELECT {DEPLOYMENT} FROM deployments" + (" WHERE " + " AND ".join(where) if where else "")
        return [_deployment(r) for r in self._db.execute(query + " ORDER BY id DESC LIMIT ?", [*args, limit])]

    def get(self, deployment_id: int) -> DeploymentRecord:
        row = self._db.execute(f"SELECT {DEPLOYMENT} FROM deployments WHERE id = ?", (deployment_id,)).fetchone()
        if row is None:
            raise KeyError(f"no deployment #{deployment_id}")
        return _deployment(row)

    def last_succeeded(
        self, environment: str, before_id: int | None = None, kind: Kind | None = None
    ) -> DeploymentRecord | None:
        query = f"SELECT {DEPLOYMENT} FROM deployments WHERE environment = ? AND state = ?"
        args: list = [environment, "succeeded"]
        if before_id is not None:
            query, args = query + " AND id < ?", [*args, before_id]
        if kind is not None:
            query, args = query + " AND kind = ?", [*args, Kind(kind).value]
        row = self._db.execute(query + " ORDER BY id DESC LIMIT 1", args).fetchone()
        return _deployment(row) if row else None

    def get_lock(self, environment: str) -> LockRecord | None:
        row = self._db.execute(f"SELECT {LOCK} FROM locks WHERE environment = ?", (environment,)).fetchone()
        return self._lock(row) if row else None

    def locks(self) -> list[LockRecord]:
        return [self._lock(r) for r in self._db.execute(f"SELECT {LOCK} FROM locks ORDER BY environment")]

    def approvals(self, deployment_id: int) -> list[ApprovalRecord]:
        rows = self._db.execute(
            "SELECT deployment_id, approver, decision, reason, at FROM approvals WHERE deployment_id = ? ORDER BY id",
            (deployment_id,),
        )
        return [ApprovalRecord(**{**dict(r), "at": _time(r["at"])}) for r in rows]

    def __getattr__(self, name: str) -> object:
        """Not a read this view answers: the full Store's, opened once."""
        if name.startswith("_"):
            raise AttributeError(name)
        if self.__dict__.get("_full") is None:
            from bot.store import Store

            self._full = Store(self.url)
        return getattr(self._full, name)

    def close(self) -> None:
        self._db.close()
        if self.__dict__.get("_full") is not None:
            self._full.close()

    @staticmethod
    def _lock(row: sqlite3.Row) -> LockRecord:
        values = dict(row)
        return LockRecord(
            **{**values, "acquired_at": _time(values["acquired_at"]), "expires_at": _time(values["expires_at"])}
        )


def open_store(read_only: bool = False):
    """The full Store; or, for a command that only reads, this view of the SQLite file when it can serve."""
    if read_only:
        try:
            return SQLiteReader()
        except Behind:
            pass
    from bot.store import Store

    return Store()
