"""Environment locks: one row per environment, taken by INSERT on the primary key, so the database picks exactly
one winner among racing processes and a crashed holder leaves a visible row rather than a stale file."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from bot.domain import LockHeld, LockRecord
from bot.store.db import Database
from bot.store.deployments import now
from bot.store.models import Lock
from bot.store.records import to_record

LOCK_KINDS = ("deploy", "manual")


class LocksMixin:
    db: Database

    def acquire_lock(
        self,
        environment: str,
        *,
        holder: str,
        reason: str,
        kind: str = "deploy",
        deployment_id: int | None = None,
        owner: str | None = None,
        lease_seconds: float | None = None,
    ) -> LockRecord:
        """The lock, or LockHeld naming who holds it, since when and why. A deploy lock is taken with a lease:
        `owner` (a process) holds it for `lease_seconds` unless it renews."""
        if kind not in LOCK_KINDS:
            raise ValueError(f"lock kind must be one of {LOCK_KINDS}, not {kind!r}")
        for _ in range(3):  # the holder may release between our failed INSERT and our read
            try:
                with self.db.write() as s:
                    at = now()
                    row = Lock(
                        environment=environment,
                        holder=holder,
                        reason=reason,
                        kind=kind,
                        deployment_id=deployment_id,
                        acquired_at=at,
                        owner=owner,
                        expires_at=at + timedelta(seconds=lease_seconds) if lease_seconds else None,
                    )
                    s.add(row)
                    s.flush()
                    return to_record(LockRecord, row)
            except IntegrityError:
                held = self.get_lock(environment)
                if held is not None:
                    raise LockHeld(held) from None
        raise RuntimeError(f"could not take or read the lock on {environment}: it keeps changing hands")

    def release_lock(self, environment: str, *, deployment_id: int | None = None, kind: str | None = None) -> bool:
        """Delete the lock, but only if it matches deployment_id/kind when given (never someone else's)."""
        query = delete(Lock).where(Lock.environment == environment)
        if deployment_id is not None:
            query = query.where(Lock.deployment_id == deployment_id)
        if kind is not None:
            query = query.where(Lock.kind == kind)
        with self.db.write() as s:
            return s.execute(query.execution_options(synchronize_session=False)).rowcount == 1

    def get_lock(self, environment: str) -> LockRecord | None:
        with self.db.read() as s:
            row = s.get(Lock, environment)
            return to_record(LockRecord, row) if row else None

    def locks(self) -> list[LockRecord]:
        with self.db.read() as s:
            return [to_record(LockRecord, r) for r in s.scalars(select(Lock).order_by(Lock.environment))]

    def renew_leases(self, owner: str, lease_seconds: float) -> set[int]:
        """Push back the expiry of every lease `owner` holds; the deployments whose locks it still holds."""
        with self.db.write() as s:
            s.execute(
                update(Lock)
                .where(Lock.owner == owner)
                .values(expires_at=now() + timedelta(seconds=lease_seconds))
                .execution_options(synchronize_session=False)
            )
            return {d for d in s.scalars(select(Lock.deployment_id).where(Lock.owner == owner)) if d is not None}

    def expired_leases(self) -> list[LockRecord]:
        """Deploy locks whose owner stopped renewing (or that carry no lease at all, from before leases)."""
        query = select(Lock).where(Lock.kind == "deploy", or_(Lock.expires_at.is_(None), Lock.expires_at < now()))
        with self.db.read() as s:
            return [to_record(LockRecord, r) for r in s.scalars(query)]

    def take_over_lease(self, environment: str, deployment_id: int, owner: str, lease_seconds: float) -> bool:
        """Become the owner of an expired lease: one UPDATE guarded by the expiry, so of two processes recovering
        the same deployment exactly one wins, and a lease renewed meanwhile is not taken."""
        at = now()
        with self.db.write() as s:
            result = s.execute(
                update(Lock)
                .where(
                    Lock.environment == environment,
                    Lock.deployment_id == deployment_id,
                    Lock.kind == "deploy",
                    or_(Lock.expires_at.is_(None), Lock.expires_at < at),
                )
                .values(owner=owner, expires_at=at + timedelta(seconds=lease_seconds))
                .execution_options(synchronize_session=False)
            )
            return result.rowcount == 1
