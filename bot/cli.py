"""deploybot on the command line, for operators: the same use cases as Slack, run at once.

Commands here skip the Slack approval (and the deployers list): they are for people who can already read the
bot's deploy.yml and SSH key. They still take the environment's lock and write the audit trail, where each
run is recorded as asked by cli:$USER, via cli. In Slack, /deploy waits for an approver.
"""

from __future__ import annotations

# Each command imports what it uses when it runs: --help loads only typer (plain help and tracebacks: rich costs
# ~0.15 s a start, and its tracebacks print local variables, secrets among them).
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bot import logpage

if TYPE_CHECKING:
    from bot.config import Config
    from bot.service import DeployService

app = typer.Typer(no_args_is_help=True, help=__doc__, rich_markup_mode=None, pretty_exceptions_enable=False)
audit_app = typer.Typer(no_args_is_help=True, help="The hash-chained audit trail.", rich_markup_mode=None)
app.add_typer(audit_app, name="audit")
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


Format = StrEnum("Format", ["csv", "json"])
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


def _show_version(value: bool) -> None:
    if value:
        from importlib import metadata

        try:
            typer.echo(f"deploybot {metadata.version('deploybot')}")
        except metadata.PackageNotFoundError:
            typer.echo("deploybot (version unknown: not installed; pip install -e .)")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    pass


def _config(path: Path | None) -> Config:
    from bot.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(f"config error: {problem}", err=True)
        raise typer.Exit(2) from None


def _service(path: Path | None, changes: bool = False) -> DeployService:
    """A command that changes something first takes over deployments whose process stopped; reading never does."""
    from bot.service import DeployService
    from bot.store.reader import open_store

    service = DeployService(_config(path), open_store(read_only=not changes))
    if changes:
        service.recovery.orphans()
    return service


@contextmanager
def _answering() -> Iterator[None]:
    """A refusal is one line on stderr and exit 1, whichever command and wherever it was decided."""
    from bot.service import Refused

    try:
        yield
    except Refused as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(1) from None


def _outcome(dep) -> None:
    if dep.state != "succeeded":
        typer.echo(f"error: {dep.error or dep.state}", err=True)
        raise typer.Exit(1)


def _print(what, as_json: bool) -> None:  # one JSON document, or the lines of text
    import json

    text = json.dumps(what, indent=2, ensure_ascii=False) if as_json else "\n".join(what)
    if text:
        typer.echo(text)


@app.command()
def deploy(
    env: EnvArg,
    version: Annotated[str, typer.Argument(help="the version to ship, e.g. v1.2.0", metavar="VERSION")],
    config: ConfigOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan; nothing runs")] = False,
    override_alarms: Annotated[
        str,
        typer.Option(
            help="start although a CloudWatch alarm of ENV is in ALARM; the REASON is audited", metavar="REASON"
        ),
    ] = "",
) -> None:
    """Deploy VERSION to ENV: preflight, backup, upload, migrate, switch, restart, health, verify, cleanup."""
    from bot.console_progress import following
    from bot.process import interruptible

    service = _service(config, changes=not dry_run)
    with _answering():
        if dry_run:
            for line in service.requests.describe_plan(env, version, ACTOR):
                typer.echo(line)
            return
        if not yes:
            typer.confirm(f"Deploy {version} to {env}?", abort=True)
        with following(service.events, sys.stdout), interruptible(service.runs.stopping):
            dep = service.deploy(env, version, ACTOR, override_alarms)
    _outcome(dep)


@app.command()
def rollback(
    env: EnvArg,
    version: Annotated[
        str | None,
        typer.Argument(help="a release still on the hosts [default: the previous good one]", metavar="VERSION"),
    ] = None,
    config: ConfigOpt = None,
    reason: Annotated[str, typer.Option(help="why (kept in the audit trail)")] = "",
    restore_db: Annotated[bool, typer.Option("--restore-db", help="also restore its DB backup")] = False,
) -> None:
    """Return ENV to the previous good release (or VERSION, if it is still on the hosts)."""
    from bot.console_progress import following
    from bot.process import interruptible

    service = _service(config, changes=True)
    with _answering():
        if service.requests.rollback_options(env).migrations_since and not restore_db:
            typer.echo(
                "warning: migrations ran since that release; the database was not restored "
                "(use --restore-db to restore the backup)",
                err=True,
            )
        with following(service.events, sys.stdout), interruptible(service.runs.stopping):
            dep = service.rollback(env, ACTOR, version, reason=reason, restore_db=restore_db)
    _outcome(dep)


@app.command()
def status(env: AnyEnvArg = None, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """What each host runs now (read live) beside what the store recorded; drift is flagged."""
    from bot import console_progress as show

    with _answering():
        statuses = _service(config).environments.status(env)
    _print(show.status_document(statuses) if as_json else show.status_lines(statuses), as_json)


@app.command()
def history(
    env: AnyEnvArg = None,
    config: ConfigOpt = None,
    limit: Annotated[int, typer.Option(min=1, help="how many deployments to show")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Recent deployments, newest first."""
    from bot import console_progress as show

    with _answering():
        rows = _service(config).environments.history(env, limit)
    _print(show.history_document(rows) if as_json else show.history_lines(rows), as_json)


app.command("logs")(logpage.command)  # one deployment whole; defined beside its web page (bot/logpage.py)


@app.command()
def lock(
    env: EnvArg,
    reason: Annotated[str, typer.Option("--reason", "-r", help="why (shown to whoever is refused)")],
    config: ConfigOpt = None,
) -> None:
    """Freeze ENV: no deploy starts until `unlock`."""
    with _answering():
        lk = _service(config, changes=True).locks.lock(env, ACTOR, reason)
    typer.echo(f"{env} locked by {lk.holder}: {lk.reason}")


@app.command()
def unlock(env: EnvArg, config: ConfigOpt = None) -> None:
    """Lift a manual freeze."""
    with _answering():
        released = _service(config, changes=True).locks.unlock(env, ACTOR)
    typer.echo(f"{env} unlocked" if released else f"{env} was not locked")


def _check(path: Path | None) -> int:
    from bot.config_check import report

    return report(_config(path), typer.echo)


@app.command("check-config")
def check_config(config: ConfigOpt = None) -> None:
    """Validate deploy.yml; every problem is printed with its location; exit 2 on any."""
    if _check(config):
        raise typer.Exit(2)


def _opt(flag: str, text: str, metavar: str | None = None, default: bool = False):
    return typer.Option(flag, help=text, metavar=metavar, show_default=default)


@app.command()
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


@app.command()
def demo(
    workdir: Annotated[Path | None, typer.Option(help="keep the workspace here [default: a new temp folder]")] = None,
) -> None:
    """A real deploy, approval, progress, auto-rollback, rollback and audit trail on this machine. No Slack needed."""
    import signal

    from bot.demo import run_demo

    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `deploybot demo | head` ends the demo, as with any Unix tool
    raise typer.Exit(run_demo(workdir))


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="HTTP port when not in Socket Mode")] = 3000, config: ConfigOpt = None
) -> None:
    """Run the Slack bot (Socket Mode if SLACK_APP_TOKEN is set, else HTTP)."""
    from bot.app import serve as run_server

    run_server(_config(config), port)


def main() -> None:
    from bot.process import run_then_exit

    run_then_exit(lambda: app(prog_name="deploybot"))


if __name__ == "__main__":
    main()
