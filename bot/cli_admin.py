"""The operator's housekeeping: freezes (`lock`, `unlock`), deploy.yml (`init`, `check-config`), the audit trail.

`init` writes a first deploy.yml and checks it with the same check as `check-config`.
"""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from bot.cli_common import ACTOR, ConfigOpt, EnvArg, answering, open_service, read_config

audit_app = typer.Typer(no_args_is_help=True, help="The hash-chained audit trail.", rich_markup_mode=None)
Format = StrEnum("Format", ["csv", "json"])


def lock(
    env: EnvArg,
    reason: Annotated[str, typer.Option("--reason", "-r", help="why (shown to whoever is refused)")],
    config: ConfigOpt = None,
) -> None:
    """Freeze ENV: no deploy starts until `unlock`."""
    with answering():
        lk = open_service(config, changes=True).locks.lock(env, ACTOR, reason)
    typer.echo(f"{env} locked by {lk.holder}: {lk.reason}")


def unlock(env: EnvArg, config: ConfigOpt = None) -> None:
    """Lift a manual freeze."""
    with answering():
        released = open_service(config, changes=True).locks.unlock(env, ACTOR)
    typer.echo(f"{env} unlocked" if released else f"{env} was not locked")


def _check(path: Path | None) -> int:
    from bot.config_check import report

    return report(read_config(path), typer.echo)


def check_config(config: ConfigOpt = None) -> None:
    """Validate deploy.yml; every problem is printed with its location; exit 2 on any."""
    if _check(config):
        raise typer.Exit(2)


def _opt(flag: str, text: str, metavar: str | None = None, default: bool = False):
    return typer.Option(flag, help=text, metavar=metavar, show_default=default)


def init(
    app_name: Annotated[str | None, _opt("--app", "the app's name (letters, digits, `_.-`)", "NAME")] = None,
    artifact: Annotated[
        str | None,
        _opt(
            "--artifact",
            "where each version's artifact is: a path on this machine or an http(s) URL, with {version} in it",
            "TEMPLATE",
        ),
    ] = None,
    host: Annotated[
        list[str] | None,
        _opt("--host", "a target: user@host[:port], or local (this machine); repeat for several", "HOST"),
    ] = None,
    path: Annotated[str | None, _opt("--path", "base path on each host [default: /srv/NAME]", "PATH")] = None,
    restart: Annotated[str | None, _opt("--restart", "restart command, run in the new release", "CMD")] = None,
    health_url: Annotated[
        str | None,
        _opt(
            "--health-url",
            "URL answering JSON with the version; {host} is each host [default: http://{host}:8000/health]",
            "URL",
        ),
    ] = None,
    env: Annotated[str, _opt("--env", "the environment's name", "ENV", True)] = "prod",
    approver: Annotated[
        list[str] | None,
        _opt(
            "--approver",
            "a Slack user (U...) or user group (S...) ID approving /deploy in Slack; repeat for several",
            "ID",
        ),
    ] = None,
    output: Annotated[Path, _opt("--output", "the file to write", "FILE", True)] = Path("deploy.yml"),
    force: Annotated[bool, _opt("--force", "replace the file if it exists")] = False,
    yes: Annotated[bool, _opt("--yes", "ask nothing: take the defaults, fail on a missing flag")] = False,
) -> None:
    """Write a first deploy.yml from flags, asking for what is missing in a terminal; then check it."""
    from bot import init as setup

    answers = setup.Answers(
        app=app_name,
        artifact=artifact,
        hosts=list(host or []),
        path=path,
        restart=restart,
        health_url=health_url,
        env=env,
        approvers=list(approver or []),
    )
    ask = (lambda text, default: typer.prompt(text, default=default)) if sys.stdin.isatty() and not yes else None
    raise typer.Exit(
        setup.run(
            answers,
            output,
            force=force,
            ask=ask,
            echo=typer.echo,
            check=_check,
            default_config=Path(os.environ.get("DEPLOYBOT_CONFIG", "deploy.yml")),
        )
    )


@audit_app.command("verify")
def audit_verify() -> None:
    """Recompute the hash chain; an edited, deleted or reordered row is named."""
    from bot.store import Store

    result = Store().verify_audit()
    for problem in result.problems:
        typer.echo(f"audit: {problem}", err=True)
    typer.echo(f"audit trail: {result.checked} rows, {'intact' if result.ok else 'TAMPERED'}")
    if not result.ok:
        raise typer.Exit(1)


@audit_app.command("export")
def audit_export(fmt: Annotated[Format, typer.Option("--format", "-f", help="output format")] = Format.json) -> None:
    """Write the audit trail to stdout."""
    from bot.store import Store

    Store().export_audit(fmt.value, sys.stdout)
