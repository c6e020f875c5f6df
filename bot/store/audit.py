"""The hash chain: each audit row commits to the one before it, so an edit or a deletion shows."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

GENESIS = "0" * 64


def row_hash(prev_hash: str, *, seq: int, at: datetime, actor: str, action: str, environment: str | None,
             version: str | None, outcome: str | None, deployment_id: int | None, detail: dict) -> str:
    if at.tzinfo is not None:
        at = at.astimezone(UTC)
    body = json.dumps(
        [seq, at.strftime("%Y-%m-%dT%H:%M:%S.%f"), actor, action, environment, version, outcome, deployment_id,
         detail],
        sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str,
    )
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


def verify_chain(rows) -> list[str]:
    """Problems found walking the rows in seq order; each names the row."""
    problems = []
    prev, expected_seq = GENESIS, 1
    for row in rows:
        if row.seq != expected_seq:
            problems.append(f"row {row.id}: sequence {row.seq} where {expected_seq} was expected "
                            f"(rows deleted or reordered)")
        if row.prev_hash != prev:
            problems.append(f"row {row.id}: does not follow the row before it (a row was deleted or edited)")
        recomputed = row_hash(row.prev_hash, seq=row.seq, at=row.at, actor=row.actor, action=row.action,
                              environment=row.environment, version=row.version, outcome=row.outcome,
                              deployment_id=row.deployment_id, detail=row.detail or {})
        if recomputed != row.hash:
            problems.append(f"row {row.id}: content does not match its hash (edited)")
        prev, expected_seq = row.hash, row.seq + 1
    return problems
