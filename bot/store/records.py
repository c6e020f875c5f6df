"""Plain frozen records: what the store hands out, so no caller ever holds a session or a SQL object."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.domain import Kind, State


def aware(value: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back; everything we store is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


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
    def __init__(self, lock: LockRecord):
        self.lock = lock
        super().__init__(f"{lock.environment} is locked by {lock.holder} since "
                         f"{lock.acquired_at:%Y-%m-%d %H:%M UTC} ({lock.reason})")


def to_record(cls, row):
    """Copy a mapped row into its record, fixing naive datetimes and enum columns."""
    values = {}
    for name in cls.__dataclass_fields__:
        value = getattr(row, name)
        if isinstance(value, datetime):
            value = aware(value)
        values[name] = value
    if cls is DeploymentRecord:
        values["kind"], values["state"] = Kind(values["kind"]), State(values["state"])
        values["meta"] = dict(values["meta"] or {})
    return cls(**values)
