"""Rows into domain records (bot/domain.py), so no caller ever holds a session or a SQL object."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any, TypeVar

from bot.domain import AuditRecord, DeploymentRecord, Kind, LockRecord, State
from bot.store.models import utc


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
