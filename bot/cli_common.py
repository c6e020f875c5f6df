"""What every `deploybot` command shares: its arguments, who it acts as, the service it opens, how it answers.

Nothing heavy is imported here: --help loads this module, so each helper imports what it needs when it runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from bot.config import Config
    from bot.service import DeployService

ACTOR = f"cli:{os.environ.get('USER') or os.environ.get('LOGNAME') or 'operator'}"


def _environment_names(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion of ENV: the names in deploy.yml, read as plain YAML; any problem completes nothing."""
    import yaml

    try:
        data = yaml.safe_load(
            Path(ctx.params.get("config") or os.environ.get("DEPLOYBOT_CONFIG", "deploy.yml")).read_text()
        )
        return [str(n) for n in data.get("environments") or {} if str(n).startswith(incomplete)]
    except Exception:  # noqa: BLE001 - completion must never print a traceback into the shell
        return []


ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="deploy.yml to read (default $DEPLOYBOT_CONFIG, else ./deploy.yml)"),
]
EnvArg = Annotated[
    str,
    typer.Argument(
        help="environment name from deploy.yml, e.g. prod",
        metavar="ENV",
        autocompletion=_environment_names,
        show_default=False,
    ),
]
AnyEnvArg = Annotated[
    str | None,
    typer.Argument(
        help="environment name from deploy.yml [default: all]",
        metavar="ENV",
        autocompletion=_environment_names,
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document (a list of objects) instead of text")]


def read_config(path: Path | None) -> Config:
    """deploy.yml, or every problem in it on stderr and exit 2."""
    from bot.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(f"config error: {problem}", err=True)
        raise typer.Exit(2) from None


def open_service(path: Path | None, changes: bool = False) -> DeployService:
    """A command that changes something first takes over deployments whose process stopped; reading never does."""
    from bot.service import DeployService
    from bot.store.reader import open_store

    service = DeployService(read_config(path), open_store(read_only=not changes))
    if changes:
        service.recovery.orphans()
    return service


@contextmanager
def answering() -> Iterator[None]:
    """A refusal is one line on stderr and exit 1, whichever command and wherever it was decided."""
    from bot.service import Refused

    try:
        yield
    except Refused as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(1) from None


def exit_unless_succeeded(dep) -> None:
    """A deploy or rollback that did not succeed says why on stderr and exits 1, for scripts and CI."""
    if dep.state != "succeeded":
        typer.echo(f"error: {dep.error or dep.state}", err=True)
        raise typer.Exit(1)


def print_answer(what, as_json: bool) -> None:
    """One JSON document, or the lines of text."""
    import json

    text = json.dumps(what, indent=2, ensure_ascii=False) if as_json else "\n".join(what)
    if text:
        typer.echo(text)
