"""Plain frozen records: what the store hands out, so no caller ever holds a session or a SQL object."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, TypeVar

from bot.domain import Kind, State
from bot.store.models import utc


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


class LockHeld(Exception):
    """Someone else holds the environment; the message says who, since when and why, ready to show a user."""

    def __init__(self, lock: LockRecord):
        self.lock = lock
        what = f"deployment #{lock.deployment_id}" if lock.deployment_id is not None else f"a {lock.kind} lock"
        super().__init__(f"{lock.environment} is locked by {lock.holder} ({what}) since "
                         f"{lock.acquired_at:%Y-%m-%d %H:%M:%S} UTC: {lock.reason or 'no reason given'}")

    def __reduce__(self):  # picklable across processes (the default would re-call __init__ with the message)
        return (LockHeld, (self.lock,))


R = TypeVar("R")


def to_record(cls: type[R], row: Any) -> R:
    """Copy a mapped row into its record: aware UTC datetimes, enums for kind/state, a private copy of dicts."""
    values = {}
    for f in fields(cls):  # type: ignore[arg-type]
        value = getattr(row, f.name)
        if isinstance(value, datetime):
            value = utc(value)
        elif isinstance(value, dict):
            value = dict(value)
        values[f.name] = value
    if cls is DeploymentRecord:
        values["kind"], values["state"] = Kind(values["kind"]), State(values["state"])
        values["meta"] = values["meta"] or {}
    if cls is AuditRecord:
        values["detail"] = values["detail"] or {}
    return cls(**values)
