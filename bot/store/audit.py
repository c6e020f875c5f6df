"""The audit trail: append-only and hash-chained, so an edited, deleted or reordered row shows on verification.

Each row stores seq (1, 2, 3...), prev_hash (the previous row's hash, GENESIS for the first) and
hash = sha256(prev_hash + canonical JSON of its content). Appends are serialized across processes
(BEGIN IMMEDIATE on SQLite, an advisory transaction lock on PostgreSQL) so the chain never forks.
The chain proves internal consistency only: truncating the newest rows, or rewriting every hash, needs an
external anchor (e.g. the exported head hash kept elsewhere) to be caught.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

from sqlalchemy import select, text

from bot.domain import AuditRecord, AuditVerification
from bot.store.db import AUDIT_LOCK, Database
from bot.store.deployments import now
from bot.store.models import AuditEvent, utc
from bot.store.records import to_record

GENESIS = "0" * 64
EXPORT_FIELDS = (
    "id",
    "seq",
    "at",
    "actor",
    "action",
    "environment",
    "version",
    "outcome",
    "deployment_id",
    "detail",
    "prev_hash",
    "hash",
)


def iso(at: datetime) -> str:
    """One spelling per instant (UTC, microseconds), so the hash survives a round trip through any database."""
    return utc(at).isoformat(timespec="microseconds")  # type: ignore[union-attr]


def canonical_detail(detail: dict | None) -> dict:
    """What the JSON column will give back (string keys, JSON types), so we hash exactly what is stored."""
    return json.loads(json.dumps(detail or {}, default=str, ensure_ascii=False))


def row_hash(
    prev_hash: str,
    *,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    environment: str | None,
    version: str | None,
    outcome: str | None,
    deployment_id: int | None,
    detail: dict,
) -> str:
    body = json.dumps(
        {
            "seq": seq,
            "at": iso(at),
            "actor": actor,
            "action": action,
            "environment": environment,
            "version": version,
            "outcome": outcome,
            "deployment_id": deployment_id,
            "detail": detail,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


def verify_chain(rows: Iterable[Any]) -> tuple[int, list[str]]:
    """Walk rows (anything with the AuditRecord attributes) in seq order; each problem names the row id."""
    problems: list[str] = []
    prev_hash, expected_seq, last_id, checked = GENESIS, 1, None, 0
    for row in rows:
        checked += 1
        where = f"row {row.id} (seq {row.seq})"
        if row.seq > expected_seq:
            missing = f"seq {expected_seq}" if row.seq == expected_seq + 1 else f"seq {expected_seq}-{row.seq - 1}"
            problems.append(f"{where}: {missing} missing before it (row deleted)")
        elif row.seq < expected_seq:
            problems.append(f"{where}: sequence goes back, {expected_seq} was expected (reordered)")
        if last_id is not None and row.id < last_id:
            problems.append(f"{where}: comes after row {last_id} in the chain but was inserted before it (reordered)")
        if row.prev_hash != prev_hash:
            problems.append(
                f"{where}: prev_hash does not match the hash of the row before it "
                f"(a row before it was deleted, edited or reordered)"
            )
        recomputed = row_hash(
            row.prev_hash,
            seq=row.seq,
            at=row.at,
            actor=row.actor,
            action=row.action,
            environment=row.environment,
            version=row.version,
            outcome=row.outcome,
            deployment_id=row.deployment_id,
            detail=row.detail or {},
        )
        if recomputed != row.hash:
            problems.append(f"{where}: content does not match its hash (edited)")
        prev_hash, expected_seq, last_id = row.hash, row.seq + 1, row.id
    return checked, problems


def _export_row(r: AuditRecord) -> dict[str, Any]:
    out = {f: getattr(r, f) for f in EXPORT_FIELDS}
    out["at"] = iso(r.at)
    return out


class AuditMixin:
    db: Database

    def audit(
        self,
        *,
        actor: str,
        action: str,
        environment: str | None = None,
        version: str | None = None,
        outcome: str | None = None,
        deployment_id: int | None = None,
        detail: dict | None = None,
    ) -> AuditRecord:
        """Append one event to the chain."""
        detail = canonical_detail(detail)
        with self.db.write() as s:
            if self.db.is_postgres:
                s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": AUDIT_LOCK})
            last = s.execute(select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)).first()
            seq, prev_hash = (last.seq + 1, last.hash) if last else (1, GENESIS)
            at = now()
            fields = dict(
                seq=seq,
                at=at,
                actor=actor,
                action=action,
                environment=environment,
                version=version,
                outcome=outcome,
                deployment_id=deployment_id,
                detail=detail,
            )
            row = AuditEvent(**fields, prev_hash=prev_hash, hash=row_hash(prev_hash, **fields))
            s.add(row)
            s.flush()
            return to_record(AuditRecord, row)

    def audit_events(
        self, *, environment: str | None = None, deployment_id: int | None = None, limit: int | None = None
    ) -> list[AuditRecord]:
        """Oldest first; with a limit, the newest `limit` events (still oldest first)."""
        query = select(AuditEvent).order_by(AuditEvent.seq.desc())
        if environment is not None:
            query = query.where(AuditEvent.environment == environment)
        if deployment_id is not None:
            query = query.where(AuditEvent.deployment_id == deployment_id)
        if limit is not None:
            query = query.limit(limit)
        with self.db.read() as s:
            rows = [to_record(AuditRecord, r) for r in s.scalars(query)]
        rows.reverse()
        return rows

    def verify_audit(self) -> AuditVerification:
        """Recompute the whole chain from the stored rows."""
        with self.db.read() as s:
            checked, problems = verify_chain(
                to_record(AuditRecord, r) for r in s.scalars(select(AuditEvent).order_by(AuditEvent.seq))
            )
        return AuditVerification(not problems, checked, problems)

    def export_audit(self, fmt: str, out: TextIO) -> int:
        """The whole trail as a JSON array or CSV with a header (detail as JSON text); returns the row count.
        Every field that goes into the hash is exported, so the export can be verified on its own."""
        if fmt not in ("csv", "json"):
            raise ValueError("format must be csv or json")
        rows = [_export_row(r) for r in self.audit_events()]
        if fmt == "json":
            json.dump(rows, out, indent=1, ensure_ascii=False)
            out.write("\n")
        else:
            writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS, lineterminator="\n")
            writer.writeheader()
            for row in rows:
                writer.writerow({**row, "detail": json.dumps(row["detail"], sort_keys=True, ensure_ascii=False)})
        return len(rows)


def parse_export_row(row: dict[str, Any]) -> AuditRecord:
    """Read back one exported row (JSON or CSV) as a record, so `verify_chain` can check an export offline.
    CSV cannot tell an empty string from null; JSON round-trips exactly."""

    def opt_int(v: Any) -> int | None:
        return None if v in (None, "") else int(v)

    def opt_str(v: Any) -> str | None:
        return None if v in (None, "") else str(v)

    detail = row["detail"]
    return AuditRecord(
        id=int(row["id"]),
        seq=int(row["seq"]),
        at=datetime.fromisoformat(row["at"]).astimezone(UTC),
        actor=row["actor"],
        action=row["action"],
        environment=opt_str(row["environment"]),
        version=opt_str(row["version"]),
        outcome=opt_str(row["outcome"]),
        deployment_id=opt_int(row["deployment_id"]),
        detail=json.loads(detail) if isinstance(detail, str) else detail,
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )
