"""A throwaway real PostgreSQL server for tests (the Debian server binaries; no Docker).

`pg_url` is a session-scoped fixture: import it into a test module (`from tests.pg import pg_url`). It starts
initdb + pg_ctl in a temp folder, listening only on 127.0.0.1 on a free port with its socket in that folder, and
stops it at the end. As root the server runs as the `postgres` user (initdb refuses root). Without the binaries
the tests using it are skipped with the reason (if they are there but the server fails to start, that is an
error); set DEPLOYBOT_PG_BIN to pick a bin folder.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serving import free_port

SERVER_USER = "postgres"


class PostgresUnavailable(Exception):
    pass


def find_bin() -> Path:
    """The newest /usr/lib/postgresql/<major>/bin holding initdb and pg_ctl (or $DEPLOYBOT_PG_BIN)."""
    candidates = (
        [os.environ["DEPLOYBOT_PG_BIN"]]
        if os.environ.get("DEPLOYBOT_PG_BIN")
        else sorted(
            glob.glob("/usr/lib/postgresql/*/bin"),
            key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
            reverse=True,
        )
    )
    for folder in map(Path, candidates):
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    raise PostgresUnavailable(
        "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb, pg_ctl); "
        "install the Debian `postgresql` package"
    )


class PostgresServer:
    """One cluster in its own temp folder; `url` connects over TCP as the superuser `postgres` (trust auth)."""

    def __init__(self) -> None:
        self.bin = find_bin()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            try:
                self._pw = pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise PostgresUnavailable(f"running as root and there is no `{SERVER_USER}` user") from None
        self.folder = Path(tempfile.mkdtemp(prefix="deploybot-pg-"))
        self.data, self.socket_dir, self.log = self.folder / "data", self.folder / "sock", self.folder / "server.log"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        cmd = ["runuser", "-u", SERVER_USER, "--", *args] if self.as_root else list(args)
        proc = subprocess.run(cmd, cwd=self.folder, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise PostgresUnavailable(f"{' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr.strip()}\n{log}")

    def start(self) -> None:
        self.socket_dir.mkdir()
        if self.as_root:
            for path in (self.folder, self.socket_dir):
                os.chown(path, self._pw.pw_uid, self._pw.pw_gid)
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.socket_dir} -c fsync=off "
            f"-c synchronous_commit=off -c full_page_writes=off -c max_connections=100 -c TimeZone=UTC"
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def create_database(self, name: str | None = None) -> str:
        """A fresh empty database on this server; returns its URL (tests stay independent of each other)."""
        return create_database(self.url, name)


def create_database(server_url: str, name: str | None = None) -> str:
    import psycopg

    name = name or f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a throwaway PostgreSQL server's `postgres` database (superuser, trust auth, 127.0.0.1 only)."""
    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    try:
        server.start()  # binaries present but failing to start is a real error, not a skip
        yield server.url
    finally:
        server.stop()
