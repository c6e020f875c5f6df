"""The read-only SQLite view answers exactly as the Store does on the same file, refuses a schema it does not
know, hands anything else to a full Store, and lets `status` and `history` start without SQLAlchemy."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bot.domain import Kind, State
from bot.store import Store
from bot.store.reader import Behind, SQLiteReader, open_store

ROOT = Path(__file__).resolve().parents[1]


def filled(url: str) -> Store:
    store = Store(url)
    for n, state in enumerate([State.SUCCEEDED, State.ROLLED_BACK, State.RUNNING]):
        dep = store.create_deployment(
            app="shop",
            environment="prod",
            version=f"v1.{n}.0",
            kind=Kind.DEPLOY,
            requested_by="U0DEV",
            state=state,
            meta={"hosts": ["h1"], "n": n},
            reason="why ✓",
            restore_db=bool(n % 2),
        )
        store.transition(dep.id, [state], state, started_at=dep.created_at, failed_stage="health" if n else None)
        store.add_approval(dep.id, "U0PM", "approve")
    store.acquire_lock("prod", holder="U0DEV", reason="deploy v1.2.0", deployment_id=3, owner="p1", lease_seconds=20)
    store.acquire_lock("stage", holder="U0OPS", reason="freeze", kind="manual")
    return store


def test_the_reader_answers_as_the_store_does(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    with filled(url) as store:
        reader = SQLiteReader(url)
        assert reader.list_deployments("prod") == store.list_deployments("prod")
        assert reader.list_deployments(states=[State.RUNNING]) == store.list_deployments(states=[State.RUNNING])
        assert reader.list_deployments(limit=1) == store.list_deployments(limit=1)
        assert reader.last_succeeded("prod") == store.last_succeeded("prod") is not None
        assert reader.last_succeeded("prod", before_id=1) is None is store.last_succeeded("prod", before_id=1)
        assert reader.get(2) == store.get(2) and reader.locks() == store.locks()
        assert reader.get_lock("prod") == store.get_lock("prod") and reader.approvals(1) == store.approvals(1)
        with pytest.raises(KeyError):
            reader.get(99)
        assert reader.verify_audit().ok  # not a read it answers: the full Store's
        reader.close()


def test_a_schema_it_does_not_know_is_left_to_the_store(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    Store(url).close()
    with sqlite3.connect(tmp_path / "old.db") as raw:
        raw.execute("UPDATE alembic_version SET version_num = '9999'")  # written by a newer deploybot
    with pytest.raises(Behind):
        SQLiteReader(url)
    with pytest.raises(Behind):
        SQLiteReader(f"sqlite:///{tmp_path / 'none.db'}")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'new.db'}")
    opened = open_store(read_only=True)  # no file yet: the full Store, which creates it at HEAD
    assert isinstance(opened, Store) and isinstance(open_store(read_only=True), SQLiteReader)


def test_status_and_history_start_without_sqlalchemy(tmp_path):
    from bot.demo import build_workspace

    config = build_workspace(tmp_path / "w")
    env = {
        **os.environ,
        "DEPLOYBOT_CONFIG": str(config),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'd.db'}",
        "PYTHONPATH": str(ROOT),
    }
    filled(env["DATABASE_URL"]).close()
    for args in (["status", "prod"], ["history", "prod"]):
        run = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "bot.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr[-2000:]
        assert "sqlalchemy" not in run.stderr and "v1.2.0" in run.stdout
    refused = subprocess.run(
        [sys.executable, "-m", "bot.cli", "status", "nosuch"], env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 1 and "unknown environment" in refused.stderr
    with Store(env["DATABASE_URL"]) as store:  # the refusal was audited, through a full Store opened for it
        assert store.audit_events()[-1].outcome == "refused" and store.verify_audit().ok
