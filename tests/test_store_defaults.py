"""Where the store keeps its database when nobody says, how that is shown, and the cheap start at the newest schema.

Real SQLite files under tmp_path; the environment is set with monkeypatch; HOME points into tmp_path so the real
home folder is never touched.
"""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bot.store import Store
from bot.store.db import Database, data_dir, default_url, display_url, normalize_url
from bot.store.migrations import HEAD

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No DATABASE_URL, DEPLOYBOT_DATA_DIR or XDG_DATA_HOME; HOME is tmp_path/home; the cwd is tmp_path/work."""
    for name in ("DATABASE_URL", "DEPLOYBOT_DATA_DIR", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    return home


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_default_is_home_local_share_not_the_cwd(clean_env: Path, tmp_path: Path) -> None:
    folder = clean_env / ".local" / "share" / "deploybot"
    assert data_dir() == folder
    assert normalize_url(None) == f"sqlite:///{folder / 'deploybot.db'}"
    assert not folder.exists()  # naming the URL creates nothing
    with Store() as store:
        assert store.url == f"sqlite:///{folder / 'deploybot.db'}"
    assert (folder / "deploybot.db").is_file()
    assert mode(folder) == 0o700
    assert list((tmp_path / "work").iterdir()) == []  # nothing left in the cwd


def test_same_database_from_any_folder(clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Store() as store:
        store.audit(actor="cli:alice", action="locked", environment="prod")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with Store() as store:
        result = store.verify_audit()
    assert (result.ok, result.checked) == (True, 1)
    assert list(elsewhere.iterdir()) == []


def test_xdg_data_home(clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xdg = tmp_path / "xdg"
    monkeypatch.setenv("XDG_DATA_HOME", str(xdg))
    assert default_url() == f"sqlite:///{xdg / 'deploybot' / 'deploybot.db'}"
    with Store():
        pass
    assert (xdg / "deploybot" / "deploybot.db").is_file()
    assert mode(xdg / "deploybot") == 0o700


@pytest.mark.parametrize("value", ["", "relative/share"])
def test_empty_or_relative_xdg_data_home_is_ignored(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", value)
    assert data_dir() == clean_env / ".local" / "share" / "deploybot"


def test_deploybot_data_dir_wins_over_xdg(clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("DEPLOYBOT_DATA_DIR", str(tmp_path / "data" / "nested"))
    with Store() as store:
        assert store.url == f"sqlite:///{tmp_path / 'data' / 'nested' / 'deploybot.db'}"
    assert (tmp_path / "data" / "nested" / "deploybot.db").is_file()
    assert mode(tmp_path / "data" / "nested") == 0o700
    assert not (tmp_path / "xdg").exists()


def test_relative_data_dir_is_made_absolute(clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYBOT_DATA_DIR", "state")
    assert default_url() == f"sqlite:///{tmp_path / 'work' / 'state' / 'deploybot.db'}"


def test_an_existing_data_dir_keeps_its_mode(clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    monkeypatch.setenv("DEPLOYBOT_DATA_DIR", str(shared))
    with Store():
        pass
    assert mode(shared) == 0o755  # an operator's folder (a container volume, say) is not re-permissioned
    assert (shared / "deploybot.db").is_file()


def test_database_url_still_wins(clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'explicit.db'}")
    with Store() as store:
        assert store.url == f"sqlite:///{tmp_path / 'explicit.db'}"
    assert (tmp_path / "explicit.db").is_file()
    assert not (tmp_path / "data").exists()
    assert Store(f"sqlite:///{tmp_path / 'argument.db'}").url.endswith("argument.db")  # and an argument wins over it


def test_display_url_masks_passwords(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert display_url() == f"sqlite:///{clean_env / '.local' / 'share' / 'deploybot' / 'deploybot.db'}"
    monkeypatch.setenv("DATABASE_URL", "postgres://deploy:s3cr%40t@db.internal:5432/deploybot")
    shown = display_url()
    assert shown == "postgresql+psycopg://deploy:***@db.internal:5432/deploybot"
    assert "s3cr" not in shown
    shown = display_url("postgresql://deploy@db/deploybot?password=hunter2&sslmode=require")
    assert "hunter2" not in shown and "sslmode=require" in shown
    assert display_url("postgresql://db/deploybot") == "postgresql+psycopg://db/deploybot"


def test_head_constant_is_alembics_head() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from bot.store.db import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_heads() == [HEAD]


def test_migrate_runs_once_then_only_reads(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'deploybot.db'}"
    db = Database(url)
    try:
        assert db.revisions() == ()
        assert db.migrate() is True
        assert db.revisions() == (HEAD,)
        assert db.migrate() is False
    finally:
        db.close()
    with sqlite3.connect(tmp_path / "deploybot.db") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]


def test_a_behind_database_is_upgraded(tmp_path: Path) -> None:
    """A database whose version row names no revision (an empty schema, as before the first migration) still goes
    through Alembic rather than being taken for up to date."""
    path = tmp_path / "deploybot.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
    with Store(f"sqlite:///{path}") as store:
        assert store.db.revisions() == (HEAD,)
        assert store.verify_audit().ok


def test_a_store_at_head_does_not_import_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'deploybot.db'}"
    Store(url).close()
    code = (
        "import sys; from bot.store import Store; Store(sys.argv[1]).close(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, url], capture_output=True, text=True, timeout=60, cwd=ROOT, check=True
    ).stdout
    assert out.strip() == "[]"
