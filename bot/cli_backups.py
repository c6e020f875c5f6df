"""`deploybot backups ENV`: the backup sets of an environment, on each host (read live) and in S3 (backup.s3).

Reading only: it never takes a deployment over, and opens the store read-only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from bot.cli_common import ConfigOpt, EnvArg, JsonOpt, answering, open_service, print_answer

if TYPE_CHECKING:
    from bot.service.backups import BackupListing


def backups(env: EnvArg, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """The backup sets of ENV, newest first: when, the release that ran, the deploy that took it, size, where."""
    with answering():
        listing = open_service(config).backups.list(env)
    print_answer(document(listing) if as_json else lines(listing), as_json)
    for problem in listing.problems:
        typer.echo(f"warning: not read: {problem}", err=True)


def document(listing: BackupListing) -> list[dict]:
    return [
        {
            "name": s.name,
            "at": s.at.isoformat() if s.at else None,
            "release": s.release,
            "deployment": s.deployment_id,
            "bytes": s.size,
            "where": s.where,
        }
        for s in listing.sets
    ]


def lines(listing: BackupListing) -> list[str]:
    if not listing.sets:
        return [f"No backup sets of {listing.environment}."]
    rows = [("TAKEN (UTC)", "RELEASE", "DEPLOYMENT", "SIZE", "WHERE")]
    rows += [
        (
            s.at.strftime("%Y-%m-%d %H:%M:%S") if s.at else "?",
            s.release or "?",
            f"#{s.deployment_id}" if s.deployment_id is not None else "?",
            _size(s.size),
            s.where,
        )
        for s in listing.sets
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return ["  ".join([*(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)), r[4]]) for r in rows]


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
