"""Deployments, their stage results and approvals: state moves only by compare-and-swap, so racing clicks,
threads or replicas can never both win."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.domain import ApprovalRecord, DeploymentRecord, Kind, StageRecord, State
from bot.store.db import Database
from bot.store.models import Approval, Deployment, StageResult
from bot.store.records import to_record

TRANSITION_FIELDS = frozenset({"started_at", "finished_at", "error", "failed_stage", "failed_host", "previous_version"})
DECISIONS = ("approve", "reject")


OUTPUT_LIMIT = 256 * 1024  # bytes of output kept per stage result: the end, where failures show


def now() -> datetime:
    return datetime.now(UTC)


def keep_tail(text: str, limit: int = OUTPUT_LIMIT) -> str:
    """The last `limit` bytes of `text` (UTF-8, never half a character), saying at the front how much was cut."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    tail = data[-limit:].decode("utf-8", "ignore")
    return f"… {len(data) - len(tail.encode())} bytes cut\n{tail}"


def _require(session: Session, deployment_id: int, *, lock: bool = False) -> Deployment:
    query = select(Deployment).where(Deployment.id == deployment_id)
    row = session.scalars(query.with_for_update() if lock else query).first()
    if row is None:
        raise KeyError(f"no deployment #{deployment_id}")
    return row


class DeploymentsMixin:
    db: Database

    def create_deployment(
        self,
        *,
        app: str,
        environment: str,
        version: str,
        kind: Kind,
        requested_by: str,
        state: State,
        previous_version: str | None = None,
        reason: str = "",
        restore_db: bool = False,
        meta: dict | None = None,
    ) -> DeploymentRecord:
        with self.db.write() as s:
            row = Deployment(
                app=app,
                environment=environment,
                version=version,
                kind=Kind(kind).value,
                state=State(state).value,
                requested_by=requested_by,
                previous_version=previous_version,
                reason=reason,
                restore_db=restore_db,
                meta=dict(meta or {}),
                created_at=now(),
                error="",
            )
            s.add(row)
            s.flush()
            return to_record(DeploymentRecord, row)

    def get(self, deployment_id: int) -> DeploymentRecord:
        """KeyError when there is no such deployment."""
        with self.db.read() as s:
            return to_record(DeploymentRecord, _require(s, deployment_id))

    def transition(self, deployment_id: int, from_states: Iterable[State], to: State, **fields: object) -> bool:
        """One UPDATE ... WHERE id=? AND state IN (...): True iff this call moved it; of racing callers one wins."""
        unknown = set(fields) - TRANSITION_FIELDS
        if unknown:
            raise ValueError(f"cannot set {sorted(unknown)} in a transition")
        allowed = [State(x).value for x in from_states]
        if not allowed:
            return False
        with self.db.write() as s:
            result = s.execute(
                update(Deployment)
                .where(Deployment.id == deployment_id, Deployment.state.in_(allowed))
                .values(state=State(to).value, **fields)
                .execution_options(synchronize_session=False)
            )
            return result.rowcount == 1

    def update_meta(self, deployment_id: int, **meta: object) -> None:
        """Merge keys into the JSON meta; the row is locked (FOR UPDATE / BEGIN IMMEDIATE) so no merge is lost."""
        with self.db.write() as s:
            row = _require(s, deployment_id, lock=True)
            row.meta = {**(row.meta or {}), **meta}

    def list_deployments(
        self, environment: str | None = None, states: Iterable[State] | None = None, limit: int = 20
    ) -> list[DeploymentRecord]:
        """Newest first."""
        query = select(Deployment).order_by(Deployment.id.desc()).limit(limit)
        if environment is not None:
            query = query.where(Deployment.environment == environment)
        if states is not None:
            query = query.where(Deployment.state.in_([State(x).value for x in states]))
        with self.db.read() as s:
            return [to_record(DeploymentRecord, r) for r in s.scalars(query)]

    def last_succeeded(
        self, environment: str, before_id: int | None = None, kind: Kind | None = None
    ) -> DeploymentRecord | None:
        """The newest succeeded deployment or rollback (optionally of one kind, optionally older than before_id)."""
        query = (
            select(Deployment)
            .where(Deployment.environment == environment, Deployment.state == State.SUCCEEDED.value)
            .order_by(Deployment.id.desc())
            .limit(1)
        )
        if before_id is not None:
            query = query.where(Deployment.id < before_id)
        if kind is not None:
            query = query.where(Deployment.kind == Kind(kind).value)
        with self.db.read() as s:
            row = s.scalars(query).first()
            return to_record(DeploymentRecord, row) if row else None

    def record_stage(
        self,
        deployment_id: int,
        *,
        stage: str,
        host: str | None,
        phase: str,
        started_at: datetime,
        ended_at: datetime,
        ok: bool,
        exit_code: int | None,
        excerpt: str,
        error: str,
        output: str = "",
    ) -> None:
        """`output` is the step's whole (already redacted) output; only its last OUTPUT_LIMIT bytes are kept."""
        with self.db.write() as s:
            _require(s, deployment_id)
            s.add(
                StageResult(
                    deployment_id=deployment_id,
                    stage=stage,
                    host=host,
                    phase=phase,
                    started_at=started_at,
                    ended_at=ended_at,
                    ok=ok,
                    exit_code=exit_code,
                    excerpt=excerpt,
                    error=error,
                    output=keep_tail(output),
                )
            )

    def stages(self, deployment_id: int) -> list[StageRecord]:
        """In the order they were recorded."""
        query = select(StageResult).where(StageResult.deployment_id == deployment_id).order_by(StageResult.id)
        with self.db.read() as s:
            return [to_record(StageRecord, r) for r in s.scalars(query)]

    def stage_outputs(self, deployment_id: int) -> list[tuple[StageRecord, str]]:
        """Each stage result with the output kept for it, in the order they were recorded."""
        query = select(StageResult).where(StageResult.deployment_id == deployment_id).order_by(StageResult.id)
        with self.db.read() as s:
            return [(to_record(StageRecord, r), r.output or "") for r in s.scalars(query)]

    def add_approval(self, deployment_id: int, approver: str, decision: str, reason: str = "") -> bool:
        """False when that approver already decided on that deployment (a double click); the unique key decides."""
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, not {decision!r}")
        try:
            with self.db.write() as s:
                _require(s, deployment_id)
                s.add(
                    Approval(deployment_id=deployment_id, approver=approver, decision=decision, reason=reason, at=now())
                )
            return True
        except IntegrityError:
            return False

    def approvals(self, deployment_id: int) -> list[ApprovalRecord]:
        query = select(Approval).where(Approval.deployment_id == deployment_id).order_by(Approval.id)
        with self.db.read() as s:
            return [to_record(ApprovalRecord, r) for r in s.scalars(query)]
