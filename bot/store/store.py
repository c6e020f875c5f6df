"""The only place that speaks SQL. Everything returned is a frozen record."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TextIO

from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.domain import Kind, State
from bot.store import audit as chain
from bot.store.db import make_engine, migrate
from bot.store.models import Approval, AuditEvent, Deployment, Lock, StageResult
from bot.store.records import (
    ApprovalRecord,
    AuditRecord,
    AuditVerification,
    DeploymentRecord,
    LockHeld,
    LockRecord,
    StageRecord,
    aware,
    to_record,
)

_AUDIT_LOCK = 7_311_202  # pg advisory lock key: appends to the chain are serialized
_TRANSITION_FIELDS = {"started_at", "finished_at", "error", "failed_stage", "failed_host", "previous_version"}


def _now() -> datetime:
    return datetime.now(UTC)


class Store:
    def __init__(self, url: str | None = None):
        self.engine = make_engine(url)
        migrate(self.engine)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    def _tx(self) -> Session:
        return self._session.begin()

    # ---- deployments ----------------------------------------------------------------------------
    def create_deployment(self, *, app: str, environment: str, version: str, kind: Kind, requested_by: str,
                          state: State, previous_version: str | None = None, reason: str = "",
                          restore_db: bool = False, meta: dict | None = None) -> DeploymentRecord:
        with self._tx() as s:
            row = Deployment(app=app, environment=environment, version=version, kind=Kind(kind).value,
                             state=State(state).value, requested_by=requested_by, previous_version=previous_version,
                             reason=reason, restore_db=restore_db, meta=meta or {}, created_at=_now(), error="")
            s.add(row)
            s.flush()
            return to_record(DeploymentRecord, row)

    def get(self, deployment_id: int) -> DeploymentRecord:
        with self._session() as s:
            row = s.get(Deployment, deployment_id)
            if row is None:
                raise KeyError(f"no deployment #{deployment_id}")
            return to_record(DeploymentRecord, row)

    def transition(self, deployment_id: int, from_states: Iterable[State], to: State, **fields) -> bool:
        """Compare-and-swap in one UPDATE: of racing callers, exactly one moves the state."""
        unknown = set(fields) - _TRANSITION_FIELDS
        if unknown:
            raise ValueError(f"cannot set {sorted(unknown)} in a transition")
        with self._tx() as s:
            result = s.execute(
                update(Deployment)
                .where(Deployment.id == deployment_id, Deployment.state.in_([State(x).value for x in from_states]))
                .values(state=State(to).value, **fields)
            )
            return result.rowcount == 1

    def update_meta(self, deployment_id: int, **meta) -> None:
        with self._tx() as s:
            row = s.get(Deployment, deployment_id)
            if row is None:
                raise KeyError(f"no deployment #{deployment_id}")
            row.meta = {**(row.meta or {}), **meta}

    def list_deployments(self, environment: str | None = None, states: Iterable[State] | None = None,
                         limit: int = 20) -> list[DeploymentRecord]:
        query = select(Deployment).order_by(Deployment.id.desc()).limit(limit)
        if environment:
            query = query.where(Deployment.environment == environment)
        if states is not None:
            query = query.where(Deployment.state.in_([State(x).value for x in states]))
        with self._session() as s:
            return [to_record(DeploymentRecord, r) for r in s.scalars(query)]

    def last_succeeded(self, environment: str, before_id: int | None = None,
                       kind: Kind | None = None) -> DeploymentRecord | None:
        query = (select(Deployment).where(Deployment.environment == environment,
                                          Deployment.state == State.SUCCEEDED.value)
                 .order_by(Deployment.id.desc()).limit(1))
        if before_id is not None:
            query = query.where(Deployment.id < before_id)
        if kind is not None:
            query = query.where(Deployment.kind == Kind(kind).value)
        with self._session() as s:
            row = s.scalars(query).first()
            return to_record(DeploymentRecord, row) if row else None

    def record_stage(self, deployment_id: int, *, stage: str, host: str | None, phase: str, started_at: datetime,
                     ended_at: datetime, ok: bool, exit_code: int | None, excerpt: str, error: str) -> None:
        with self._tx() as s:
            s.add(StageResult(deployment_id=deployment_id, stage=stage, host=host, phase=phase,
                              started_at=started_at, ended_at=ended_at, ok=ok, exit_code=exit_code,
                              excerpt=excerpt, error=error))

    def stages(self, deployment_id: int) -> list[StageRecord]:
        query = select(StageResult).where(StageResult.deployment_id == deployment_id).order_by(StageResult.id)
        with self._session() as s:
            return [to_record(StageRecord, r) for r in s.scalars(query)]

    # ---- approvals ------------------------------------------------------------------------------
    def add_approval(self, deployment_id: int, approver: str, decision: str, reason: str = "") -> bool:
        """False when that approver already decided on that deployment (a double click)."""
        try:
            with self._tx() as s:
                s.add(Approval(deployment_id=deployment_id, approver=approver, decision=decision, reason=reason,
                               at=_now()))
            return True
        except IntegrityError:
            return False

    def approvals(self, deployment_id: int) -> list[ApprovalRecord]:
        query = select(Approval).where(Approval.deployment_id == deployment_id).order_by(Approval.id)
        with self._session() as s:
            return [to_record(ApprovalRecord, r) for r in s.scalars(query)]

    # ---- locks ----------------------------------------------------------------------------------
    def acquire_lock(self, environment: str, *, holder: str, reason: str, kind: str = "deploy",
                     deployment_id: int | None = None) -> LockRecord:
        """INSERT with the environment as primary key: of racing processes exactly one wins."""
        try:
            with self._tx() as s:
                row = Lock(environment=environment, holder=holder, reason=reason, kind=kind,
                           deployment_id=deployment_id, acquired_at=_now())
                s.add(row)
                s.flush()
                return to_record(LockRecord, row)
        except IntegrityError:
            held = self.get_lock(environment)
            if held is None:  # released between our insert and our read: try once more
                return self.acquire_lock(environment, holder=holder, reason=reason, kind=kind,
                                         deployment_id=deployment_id)
            raise LockHeld(held) from None

    def release_lock(self, environment: str, *, deployment_id: int | None = None, kind: str | None = None) -> bool:
        query = delete(Lock).where(Lock.environment == environment)
        if deployment_id is not None:
            query = query.where(Lock.deployment_id == deployment_id)
        if kind is not None:
            query = query.where(Lock.kind == kind)
        with self._tx() as s:
            return s.execute(query).rowcount == 1

    def get_lock(self, environment: str) -> LockRecord | None:
        with self._session() as s:
            row = s.get(Lock, environment)
            return to_record(LockRecord, row) if row else None

    def locks(self) -> list[LockRecord]:
        with self._session() as s:
            return [to_record(LockRecord, r) for r in s.scalars(select(Lock).order_by(Lock.environment))]

    # ---- audit trail ----------------------------------------------------------------------------
    def audit(self, *, actor: str, action: str, environment: str | None = None, version: str | None = None,
              outcome: str | None = None, deployment_id: int | None = None, detail: dict | None = None) -> AuditRecord:
        detail = json.loads(json.dumps(detail or {}, default=str))
        with self._tx() as s:
            if self.engine.dialect.name == "postgresql":
                s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _AUDIT_LOCK})
            last = s.execute(select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)).first()
            seq, prev = (last.seq + 1, last.hash) if last else (1, chain.GENESIS)
            at = _now()
            digest = chain.row_hash(prev, seq=seq, at=at, actor=actor, action=action, environment=environment,
                                    version=version, outcome=outcome, deployment_id=deployment_id, detail=detail)
            row = AuditEvent(seq=seq, at=at, actor=actor, action=action, environment=environment, version=version,
                             outcome=outcome, deployment_id=deployment_id, detail=detail, prev_hash=prev, hash=digest)
            s.add(row)
            s.flush()
            return to_record(AuditRecord, row)

    def audit_events(self, *, environment: str | None = None, deployment_id: int | None = None,
                     limit: int | None = None) -> list[AuditRecord]:
        query = select(AuditEvent).order_by(AuditEvent.seq.desc())
        if environment is not None:
            query = query.where(AuditEvent.environment == environment)
        if deployment_id is not None:
            query = query.where(AuditEvent.deployment_id == deployment_id)
        if limit is not None:
            query = query.limit(limit)
        with self._session() as s:
            return [to_record(AuditRecord, r) for r in reversed(list(s.scalars(query)))]

    def verify_audit(self) -> AuditVerification:
        rows = self.audit_events()
        problems = chain.verify_chain(rows)
        return AuditVerification(not problems, len(rows), problems)

    def export_audit(self, fmt: str, out: TextIO) -> int:
        rows = self.audit_events()
        fields = ["id", "seq", "at", "actor", "action", "environment", "version", "outcome", "deployment_id",
                  "detail", "prev_hash", "hash"]

        def flat(r: AuditRecord) -> dict:
            d = {f: getattr(r, f) for f in fields}
            d["at"] = aware(r.at).isoformat()
            return d

        if fmt == "json":
            json.dump([flat(r) for r in rows], out, indent=1, ensure_ascii=False)
            out.write("\n")
        elif fmt == "csv":
            writer = csv.DictWriter(out, fieldnames=fields)
            writer.writeheader()
            for r in rows:
                row = flat(r)
                row["detail"] = json.dumps(r.detail, sort_keys=True, ensure_ascii=False)
                writer.writerow(row)
        else:
            raise ValueError("format must be csv or json")
        return len(rows)
