"""Where the database is: DATABASE_URL, else one SQLite file in a per-user data folder. No SQLAlchemy here, so
a command that only reads can find the file without loading it.

Without DATABASE_URL the database is one SQLite file in a fixed per-user data folder (not the current folder, where
every command run from elsewhere would start a new, empty audit trail): $DEPLOYBOT_DATA_DIR, else
$XDG_DATA_HOME/deploybot, else ~/.local/share/deploybot.
"""

from __future__ import annotations

import os
from pathlib import Path

DB_FILE = "deploybot.db"


def data_dir() -> Path:
    """Where the default database lives: $DEPLOYBOT_DATA_DIR, else $XDG_DATA_HOME/deploybot, else
    ~/.local/share/deploybot. An XDG_DATA_HOME that is empty or relative is ignored, as the XDG spec says."""
    explicit = os.environ.get("DEPLOYBOT_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser().absolute()
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "deploybot"


def default_url() -> str:
    """The SQLite file in data_dir(), as an absolute sqlite:/// URL (the folder is not created here)."""
    return f"sqlite:///{data_dir() / DB_FILE}"


def normalize_url(url: str | None) -> str:
    """Explicit URL, else $DATABASE_URL, else default_url(); plain postgres URLs use psycopg 3."""
    url = url or os.environ.get("DATABASE_URL") or default_url()
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url
