"""The store against real databases: SQLite files, and a throwaway PostgreSQL server for the concurrency core.

Races use real threads and real processes (multiprocessing, spawn) because the guarantees under test are the
database's (one UPDATE's WHERE, a primary key, BEGIN IMMEDIATE / advisory locks), not Python's.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import pickle
import sqlite3
import threading
from collections import Counter
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from bot.domain import Kind, State
from bot.store import (
    ApprovalRecord,
    AuditRecord,
    AuditVerification,
    DeploymentRecord,
    LockHeld,
    LockRecord,
    StageRecord,
    Store,
)
from bot.store.audit import parse_export_row, verify_chain
from bot.store.db import normalize_url
from bot.store.migrations import HEAD
from tests.pg import create_database, pg_url  # noqa: F401  (session fixture)

SPAWN = multiprocessing.get_context("spawn")


# ---- fixtures and helpers ------------------------------------------------------------------------------------------
@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'deploybot.db'}"


@pytest.fixture
def store(sqlite_url: str):
    with Store(sqlite_url) as s:
        yield s


@pytest.fixture(params=["sqlite", "postgres"])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The core tests run on both: a SQLite file, and a fresh database on the throwaway PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'deploybot.db'}"
    return create_database(request.getfixturevalue("pg_url"))


def raw_sql(url: str, *statements: str) -> None:
    """Tamper behind the store's back, as someone with database access would."""
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url[len("sqlite:///") :]) as conn:
            for sql in statements:
                conn.execute(sql)
        return
    import psycopg

    with psycopg.connect(url) as conn:
        for sql in statements:
            conn.execute(sql)


def deployment(
    store: Store,
    environment: str = "prod",
    version: str = "v1.0.0",
    state: State = State.PENDING_APPROVAL,
    kind: Kind = Kind.DEPLOY,
    **extra,
) -> DeploymentRecord:
    return store.create_deployment(
        app="shop", environment=environment, version=version, kind=kind, requested_by="alice", state=state, **extra
    )


def race(n: int, fn) -> list:
    """Run fn(i) in n threads released at the same instant; results in thread order."""
    barrier, results, errors = threading.Barrier(n), [None] * n, []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = fn(i)
        except BaseException as exc:  # surfaced below, not swallowed by the thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    return results


def _worker(job: str, url: str, name: str, barrier, rounds: int, results) -> None:
    """Runs in a spawned process: opens its own Store (migrating at the same moment as its rival), then races."""
    store = Store(url)
    try:
        for i in range(rounds):
            barrier.wait(timeout=60)
            if job == "lock":
                try:
                    store.acquire_lock(f"env{i}", holder=name, reason=f"race {i}")
                    results.put((i, name, "won", ""))
                except LockHeld as exc:
                    results.put((i, name, "held", str(exc)))
            elif job == "cas":
                won = store.transition(i + 1, [State.PENDING_APPROVAL], State.APPROVED)
                results.put((i, name, "won" if won else "lost", ""))
            elif job == "audit":
                store.audit(actor=name, action="tick", detail={"i": i})
                results.put((i, name, "appended", ""))
    finally:
        store.close()


def run_processes(job: str, url: str, rounds: int, n: int = 2) -> list[tuple]:
    barrier, results = SPAWN.Barrier(n), SPAWN.Queue()
    procs = [SPAWN.Process(target=_worker, args=(job, url, f"proc{k}", barrier, rounds, results)) for k in range(n)]
    for p in procs:
        p.start()
    out = [results.get(timeout=120) for _ in range(rounds * n)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return out


# ---- the concurrency core, on SQLite and PostgreSQL ---------------------------------------------------------------
def test_transition_race_between_threads_has_exactly_one_winner(any_url: str) -> None:
    with Store(any_url) as store:
        for _ in range(5):
            dep = deployment(store)
            won = race(8, lambda i, d=dep: store.transition(d.id, [State.PENDING_APPROVAL], State.APPROVED))
            assert won.count(True) == 1
            assert store.get(dep.id).state is State.APPROVED
        # a move from a state it is not in does nothing
        assert not store.transition(dep.id, [State.PENDING_APPROVAL], State.REJECTED)
        assert store.get(dep.id).state is State.APPROVED


def test_transition_race_between_processes_has_exactly_one_winner(any_url: str) -> None:
    with Store(any_url) as store:
        ids = [deployment(store).id for _ in range(10)]
    assert ids == list(range(1, 11))
    results = run_processes("cas", any_url, rounds=10)
    winners = Counter(i for i, _, outcome, _ in results if outcome == "won")
    assert winners == {i: 1 for i in range(10)}


def test_lock_race_between_two_processes_has_exactly_one_winner(any_url: str) -> None:
    """Both processes also start (and migrate) on a fresh database at the same moment."""
    results = run_processes("lock", any_url, rounds=10)
    with Store(any_url) as store:
        for i in range(10):
            this_round = [r for r in results if r[0] == i]
            won = [r for r in this_round if r[2] == "won"]
            held = [r for r in this_round if r[2] == "held"]
            assert len(won) == 1 and len(held) == 1, this_round
            winner = won[0][1]
            assert store.get_lock(f"env{i}").holder == winner
            assert f"locked by {winner}" in held[0][3] and f"race {i}" in held[0][3]


def test_audit_appends_from_threads_and_processes_keep_one_chain(any_url: str) -> None:
    with Store(any_url) as store:
        race(6, lambda i: [store.audit(actor=f"t{i}", action="tick", detail={"n": n}) for n in range(10)])
        run_processes("audit", any_url, rounds=10)
        events = store.audit_events()
        assert [e.seq for e in events] == list(range(1, 81))
        assert store.verify_audit() == AuditVerification(True, 80, [])


def test_audit_verification_names_edited_deleted_and_reordered_rows(any_url: str) -> None:
    with Store(any_url) as store:
        for n in range(8):
            store.audit(
                actor="alice",
                action="deploy_requested",
                environment="prod",
                version=f"v{n}",
                detail={"n": n, "hosts": ["a", "b"]},
            )
        assert store.verify_audit().ok

        raw_sql(any_url, "UPDATE audit_events SET actor = 'mallory' WHERE id = 3")
        result = store.verify_audit()
        assert not result.ok and result.checked == 8
        assert result.problems == ["row 3 (seq 3): content does not match its hash (edited)"]

        raw_sql(any_url, "UPDATE audit_events SET actor = 'alice' WHERE id = 3")  # put it back
        assert store.verify_audit().ok

        raw_sql(any_url, "DELETE FROM audit_events WHERE id = 5")
        result = store.verify_audit()
        assert not result.ok and result.checked == 7
        assert any(p.startswith("row 6 (seq 6): seq 5 missing") and "deleted" in p for p in result.problems)
        assert all(p.startswith("row 6 ") for p in result.problems)

    with Store(any_url) as store:  # a fresh trail for the reordering
        raw_sql(any_url, "DELETE FROM audit_events")
        for n in range(4):
            store.audit(actor="bob", action="approved", detail={"n": n})
        ids = [e.id for e in store.audit_events()]
        a, b = ids[1], ids[2]
        raw_sql(
            any_url,
            f"UPDATE audit_events SET seq = -1 WHERE id = {a}",
            f"UPDATE audit_events SET seq = 2 WHERE id = {b}",
            f"UPDATE audit_events SET seq = 3 WHERE id = {a}",
        )
        result = store.verify_audit()
        assert not result.ok
        assert any(f"row {a} " in p and "reordered" in p for p in result.problems)


# ---- deployments ---------------------------------------------------------------------------------------------------
def test_create_and_get_return_detached_frozen_records(store: Store) -> None:
    dep = deployment(store, previous_version="v0.9.0", reason="ship it", restore_db=True, meta={"channel": "C1"})
    assert isinstance(dep, DeploymentRecord)
    got = store.get(dep.id)
    assert got == dep
    assert got.kind is Kind.DEPLOY and got.state is State.PENDING_APPROVAL
    assert got.previous_version == "v0.9.0" and got.restore_db is True and got.meta == {"channel": "C1"}
    assert got.created_at.tzinfo is UTC and abs(datetime.now(UTC) - got.created_at) < timedelta(seconds=30)
    assert got.seconds is None
    with pytest.raises(FrozenInstanceError):
        got.state = State.RUNNING  # type: ignore[misc]
    with pytest.raises(KeyError):
        store.get(999)


def test_transition_sets_fields_and_normalizes_timestamps_to_utc(store: Store) -> None:
    dep = deployment(store, state=State.APPROVED)
    start = datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))  # 12:00 UTC
    assert store.transition(dep.id, [State.APPROVED], State.RUNNING, started_at=start)
    assert store.transition(
        dep.id,
        iter([State.RUNNING]),
        State.FAILED,
        finished_at=start + timedelta(seconds=90),
        error="health check failed",
        failed_stage="health",
        failed_host="web2",
    )
    got = store.get(dep.id)
    assert got.state is State.FAILED
    assert got.started_at == datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC) and got.started_at.tzinfo is UTC
    assert got.seconds == 90
    assert (got.error, got.failed_stage, got.failed_host) == ("health check failed", "health", "web2")
    assert not store.transition(dep.id, [], State.RUNNING)
    with pytest.raises(ValueError, match="version"):
        store.transition(dep.id, [State.FAILED], State.ROLLING_BACK, version="v2")


def test_update_meta_merges(store: Store) -> None:
    dep = deployment(store, meta={"channel": "C1"})
    store.update_meta(dep.id, ts="123.456")
    store.update_meta(dep.id, channel="C2", stage="upload")
    assert store.get(dep.id).meta == {"channel": "C2", "ts": "123.456", "stage": "upload"}
    race(6, lambda i: store.update_meta(dep.id, **{f"k{i}": i}))
    assert {f"k{i}" for i in range(6)} <= set(store.get(dep.id).meta)
    with pytest.raises(KeyError):
        store.update_meta(999, x=1)


def test_list_deployments_and_last_succeeded(store: Store) -> None:
    d1 = deployment(store, version="v1", state=State.SUCCEEDED)
    d2 = deployment(store, version="v2", state=State.FAILED)
    d3 = deployment(store, environment="staging", version="v3", state=State.SUCCEEDED)
    d4 = deployment(store, version="v1", state=State.SUCCEEDED, kind=Kind.ROLLBACK)
    d5 = deployment(store, version="v4", state=State.RUNNING)
    assert [d.id for d in store.list_deployments()] == [d5.id, d4.id, d3.id, d2.id, d1.id]
    assert [d.id for d in store.list_deployments("prod", limit=2)] == [d5.id, d4.id]
    assert [d.id for d in store.list_deployments(states=[State.FAILED, State.RUNNING])] == [d5.id, d2.id]
    assert store.list_deployments(states=[]) == []
    assert store.last_succeeded("prod").id == d4.id
    assert store.last_succeeded("prod", kind=Kind.DEPLOY).id == d1.id
    assert store.last_succeeded("prod", before_id=d4.id).id == d1.id
    assert store.last_succeeded("prod", before_id=d1.id) is None
    assert store.last_succeeded("staging").id == d3.id
    assert store.last_succeeded("qa") is None


def test_stages_in_insertion_order(store: Store) -> None:
    dep = deployment(store)
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    for n, (stage, host) in enumerate([("preflight", None), ("upload", "web2"), ("upload", "web1")]):
        store.record_stage(
            dep.id,
            stage=stage,
            host=host,
            phase="forward",
            started_at=t0 + timedelta(seconds=n),
            ended_at=t0 + timedelta(seconds=n, milliseconds=250),
            ok=host != "web1",
            exit_code=None if host is None else 0,
            excerpt="done",
            error="",
        )
    stages = store.stages(dep.id)
    assert all(isinstance(s, StageRecord) for s in stages)
    assert [(s.stage, s.host) for s in stages] == [("preflight", None), ("upload", "web2"), ("upload", "web1")]
    assert stages[1].seconds == 0.25 and stages[1].started_at.tzinfo is UTC
    assert [s.ok for s in stages] == [True, True, False]
    assert store.stages(999) == []
    with pytest.raises(KeyError):
        store.record_stage(
            999,
            stage="x",
            host=None,
            phase="forward",
            started_at=t0,
            ended_at=t0,
            ok=True,
            exit_code=None,
            excerpt="",
            error="",
        )


# ---- approvals -----------------------------------------------------------------------------------------------------
def test_add_approval_once_per_approver(store: Store) -> None:
    dep = deployment(store)
    assert store.add_approval(dep.id, "bob", "approve")
    assert not store.add_approval(dep.id, "bob", "approve")
    assert not store.add_approval(dep.id, "bob", "reject", "changed my mind")
    assert store.add_approval(dep.id, "carol", "reject", "not today")
    approvals = store.approvals(dep.id)
    assert [(a.approver, a.decision, a.reason) for a in approvals] == [
        ("bob", "approve", ""),
        ("carol", "reject", "not today"),
    ]
    assert isinstance(approvals[0], ApprovalRecord) and approvals[0].at.tzinfo is UTC
    assert race(6, lambda i: store.add_approval(dep.id, "dave", "approve")).count(True) == 1
    with pytest.raises(KeyError):
        store.add_approval(999, "bob", "approve")
    with pytest.raises(ValueError):
        store.add_approval(dep.id, "erin", "maybe")


# ---- locks ---------------------------------------------------------------------------------------------------------
def test_lock_held_says_who_since_when_and_why(store: Store) -> None:
    lock = store.acquire_lock("prod", holder="alice", reason="release freeze", kind="manual")
    assert isinstance(lock, LockRecord) and lock.acquired_at.tzinfo is UTC
    with pytest.raises(LockHeld) as info:
        store.acquire_lock("prod", holder="bob", reason="deploy v2", deployment_id=7)
    assert info.value.lock == lock == store.get_lock("prod")
    message = str(info.value)
    assert "alice" in message and "release freeze" in message and f"{lock.acquired_at:%Y-%m-%d %H:%M}" in message
    copy = pickle.loads(pickle.dumps(info.value))  # crosses process boundaries intact
    assert copy.lock == lock and str(copy) == message


def test_release_only_matching_lock(store: Store) -> None:
    store.acquire_lock("prod", holder="alice", reason="deploy", kind="deploy", deployment_id=1)
    store.acquire_lock("staging", holder="bob", reason="freeze", kind="manual")
    assert [lk.environment for lk in store.locks()] == ["prod", "staging"]
    assert not store.release_lock("prod", deployment_id=2)
    assert not store.release_lock("prod", kind="manual")
    assert not store.release_lock("staging", deployment_id=1)
    assert store.release_lock("prod", deployment_id=1, kind="deploy")
    assert not store.release_lock("prod", deployment_id=1)
    assert store.get_lock("prod") is None
    assert store.release_lock("staging")
    assert store.locks() == []
    again = store.acquire_lock("prod", holder="carol", reason="again")
    assert again.holder == "carol" and again.kind == "deploy" and again.deployment_id is None
    with pytest.raises(ValueError):
        store.acquire_lock("qa", holder="x", reason="", kind="forever")


# ---- audit ---------------------------------------------------------------------------------------------------------
def test_audit_events_filter_and_limit_oldest_first(store: Store) -> None:
    for n in range(6):
        store.audit(
            actor="alice",
            action=f"a{n}",
            environment="prod" if n % 2 else "staging",
            deployment_id=n % 3,
            detail={"n": n, "when": datetime(2024, 1, 1, tzinfo=UTC), 1: "int key"},
        )
    events = store.audit_events()
    assert [e.action for e in events] == [f"a{n}" for n in range(6)]
    assert all(isinstance(e, AuditRecord) and e.at.tzinfo is UTC for e in events)
    assert events[0].detail == {"n": 0, "when": "2024-01-01 00:00:00+00:00", "1": "int key"}
    assert [e.action for e in store.audit_events(environment="prod")] == ["a1", "a3", "a5"]
    assert [e.action for e in store.audit_events(deployment_id=0)] == ["a0", "a3"]
    assert [e.action for e in store.audit_events(limit=2)] == ["a4", "a5"]
    assert [e.action for e in store.audit_events(environment="prod", limit=2)] == ["a3", "a5"]
    assert events[0].prev_hash == "0" * 64
    assert all(b.prev_hash == a.hash for a, b in zip(events, events[1:], strict=False))
    assert store.verify_audit() == AuditVerification(True, 6, [])


def test_export_round_trips_and_verifies_offline(store: Store) -> None:
    assert store.verify_audit() == AuditVerification(True, 0, [])
    store.audit(
        actor="alice",
        action="deploy_requested",
        environment="prod",
        version="v1",
        deployment_id=1,
        detail={"reason": 'quotes " and, commas\nnewline', "hosts": ["web1"], "ünï": "çødé"},
    )
    store.audit(actor="deploybot", action="expired")
    store.audit(actor="bob", action="approved", environment="prod", outcome="approved", deployment_id=1)
    events = store.audit_events()

    out = io.StringIO()
    assert store.export_audit("json", out) == 3
    rows = json.loads(out.getvalue())
    assert [r["id"] for r in rows] == [e.id for e in events]
    assert {
        "id",
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
    } <= set(rows[0])
    assert [parse_export_row(r) for r in rows] == events
    assert verify_chain(parse_export_row(r) for r in rows) == (3, [])

    out = io.StringIO()
    assert store.export_audit("csv", out) == 3
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert rows[0]["at"] == events[0].at.isoformat(timespec="microseconds")
    assert json.loads(rows[0]["detail"]) == events[0].detail
    assert [parse_export_row(r) for r in rows] == events
    assert verify_chain(parse_export_row(r) for r in rows) == (3, [])

    rows[1]["actor"] = "mallory"
    edited = ["row 2 (seq 2): content does not match its hash (edited)"]
    assert verify_chain(parse_export_row(r) for r in rows)[1] == edited
    with pytest.raises(ValueError):
        store.export_audit("xml", io.StringIO())


# ---- migrations and configuration ----------------------------------------------------------------------------------
def test_migrations_run_twice_and_data_survives(sqlite_url: str) -> None:
    with Store(sqlite_url) as first:
        dep = deployment(first)
    with Store(sqlite_url) as second:
        assert second.get(dep.id) == dep
    with sqlite3.connect(sqlite_url[len("sqlite:///") :]) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_default_url_is_database_url_then_a_file_in_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DEPLOYBOT_DATA_DIR", str(tmp_path / "data"))
    with Store() as store:
        assert store.url == f"sqlite:///{tmp_path / 'data' / 'deploybot.db'}"
    assert (tmp_path / "data" / "deploybot.db").exists() and not (tmp_path / "deploybot.db").exists()
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'other.db'}")
    with Store() as store:
        deployment(store)
    assert (tmp_path / "other.db").exists()
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
