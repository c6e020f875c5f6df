"""Rows into domain records (bot/domain.py), so no caller ever holds a session or a SQL object."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any, TypeVar

from bot.domain import AuditRecord, DeploymentRecord, Kind, State
from bot.store.models import utc

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
