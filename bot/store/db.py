"""Engine, sessions, migrations and where the database lives.

SQLite gets WAL and BEGIN IMMEDIATE on writing transactions, so concurrent writers (threads or processes) queue on
the busy timeout instead of deadlocking when a reader tries to upgrade its lock. Reads use a plain BEGIN so they
never wait for a writer. Writers in one process also queue on a lock first: SQLite's busy handler retries after
sleeps of 1, 2, 5, 10 ... 100 ms, and twenty host threads recording their stage results at once lost tens of
milliseconds each that way, on the path of every host's next step.

Without DATABASE_URL the database is one SQLite file in a fixed per-user data folder (not the current folder, where
every command run from elsewhere would start a new, empty audit trail): $DEPLOYBOT_DATA_DIR, else
$XDG_DATA_HOME/deploybot, else ~/.local/share/deploybot.

Migrating costs two small queries when the schema is already at the newest revision: Alembic (about 90 ms to
import) is loaded only when the database is behind.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, inspect, make_url, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from bot.store.location import data_dir, default_url, normalize_url
from bot.store.migrations import HEAD

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version"
BUSY_TIMEOUT_S = 30
_WRITE = "deploybot_write"  # execution option: this connection's transaction will write
_MIGRATION_LOCK = 7_311_201  # pg advisory lock keys
AUDIT_LOCK = 7_311_202


def display_url(url: str | None = None) -> str:
    """The URL a Store(url) would use, fit to print: the password (also a `password=` query parameter) masked."""
    parsed = make_url(normalize_url(url))
    if "password" in parsed.query:
        parsed = parsed.update_query_dict({"password": "***"})
    return parsed.render_as_string(hide_password=True)


def _ensure_folder(url: str) -> None:
    """Create the default database's folder, readable by this user only (it holds the audit trail)."""
    if url != default_url():
        return
    folder = data_dir()
    if not folder.is_dir():
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.chmod(0o700)  # whatever the umask


def _use_wal(cur) -> None:
    """Switch to WAL (it persists in the file). The switch needs an exclusive lock and SQLite may answer
    "database is locked" at once, without its busy handler, while a second process opens a fresh file:
    so retry for as long as the busy timeout would have waited."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _sqlite_engine(url: str) -> Engine:
    memory = url in ("sqlite://", "sqlite:///:memory:")
    engine = create_engine(
        url,
        connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False},
        poolclass=StaticPool if memory else None,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None  # pysqlite must not BEGIN on its own; _on_begin does
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
        _use_wal(cur)
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")

    return engine


class Database:
    """One engine plus read/write transaction scopes; the store modules go through these and nothing else."""

    def __init__(self, url: str | None = None):
        self.url = normalize_url(url)
        _ensure_folder(self.url)
        if self.url.startswith("sqlite"):
            self.engine = _sqlite_engine(self.url)
        else:
            self.engine = create_engine(self.url, pool_pre_ping=True)
        self._writer = self.engine.execution_options(**{_WRITE: True})
        self._write_turn = threading.RLock() if self.engine.dialect.name == "sqlite" else nullcontext()

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def read(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits on success; on SQLite it holds the write lock from its first statement."""
        with self._write_turn, Session(self._writer, expire_on_commit=False) as session, session.begin():
            yield session

    def revisions(self) -> tuple[str, ...]:
        """The schema revision(s) recorded in the database; () for an empty database."""
        with self.engine.connect() as conn:
            if not inspect(conn).has_table(VERSION_TABLE):
                return ()
            return tuple(conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())

    def migrate(self) -> bool:
        """Bring the schema to HEAD. False: it was there already (two queries; Alembic not imported). True: Alembic
        ran, `alembic upgrade head` in one locked transaction (a PostgreSQL advisory lock; SQLite's
        write lock): a second process starting at once waits, then finds the work done and no-ops."""
        if self.revisions() == (HEAD,):
            return False
        from alembic import command
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self._writer.begin() as conn:
            if self.is_postgres:
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        return True

    def close(self) -> None:
        self.engine.dispose()
