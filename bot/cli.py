"""`deploybot` on the command line: the same use cases as Slack, for operators and scripts.

Each command imports what it uses when it runs, so `deploybot --help` starts without loading pydantic,
SQLAlchemy, Fabric or Slack's SDK.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from bot.config import Config
    from bot.service import DeployService

# plain help (rich costs ~0.15 s at every start) and plain tracebacks (rich ones print locals: secrets)
app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__, rich_markup_mode=None,
                  pretty_exceptions_enable=False)
audit_app = typer.Typer(no_args_is_help=True, help="The hash-chained audit trail.", rich_markup_mode=None)
app.add_typer(audit_app, name="audit")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="deploy.yml (default $DEPLOYBOT_CONFIG)")]
ACTOR = f"cli:{os.environ.get('USER') or os.environ.get('LOGNAME') or 'operator'}"


def _config(path: Path | None) -> Config:
    from bot.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(f"config error: {problem}", err=True)
        raise typer.Exit(2) from None


def _service(path: Path | None, progress: bool = False) -> DeployService:
    from bot.service import DeployService
    from bot.store import Store

    service = DeployService(_config(path), Store())
    service.runs.recover_interrupted()
    if progress:
        from bot.console_progress import ConsoleProgress

        service.events.subscribe(ConsoleProgress())
    return service


@contextmanager
def _answering() -> Iterator[None]:
    """A refusal is one line on stderr and exit 1, whichever command and wherever it was decided."""
    from bot.service import Refused

    try:
        yield
    except Refused as exc:
        raise _fail(str(exc)) from None


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"refused: {message}", err=True)
    return typer.Exit(code)


def _outcome(dep) -> None:
    if dep.state != "succeeded":
        if dep.error:
            typer.echo(f"error: {dep.error}", err=True)
        raise typer.Exit(1)


@app.command()
def deploy(env: str, version: str, config: ConfigOpt = None,
           yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
           dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan; nothing runs")] = False) -> None:
    """Deploy VERSION to ENV: preflight, backup, upload, migrate, switch, restart, health, verify, cleanup."""
    service = _service(config, progress=not dry_run)
    with _answering():
        if dry_run:
            for line in service.requests.describe_plan(env, version, ACTOR):
                typer.echo(line)
            return
        if not yes:
            typer.confirm(f"Deploy {version} to {env}?", abort=True)
        dep = service.deploy(env, version, ACTOR)
    _outcome(dep)


@app.command()
def rollback(env: str, version: Annotated[str | None, typer.Argument()] = None, config: ConfigOpt = None,
             reason: Annotated[str, typer.Option(help="why (kept in the audit trail)")] = "",
             restore_db: Annotated[bool, typer.Option("--restore-db", help="also restore the DB backup")] = False,
             ) -> None:
    """Return ENV to the previous good release (or VERSION, if it is still on the hosts)."""
    service = _service(config, progress=True)
    with _answering():
        if service.requests.rollback_options(env).migrations_since and not restore_db:
            typer.echo("warning: migrations ran since that release; the database was not restored "
                       "(use --restore-db to restore the backup)", err=True)
        dep = service.rollback(env, ACTOR, version, reason=reason, restore_db=restore_db)
    _outcome(dep)


@app.command()
def status(env: Annotated[str | None, typer.Argument()] = None, config: ConfigOpt = None) -> None:
    """What each host runs now (read live) beside what the store recorded; drift is flagged."""
    with _answering():
        statuses = _service(config).environments.status(env)
    for st in statuses:
        flag = "  DRIFT" if st.drift else ""
        typer.echo(f"{st.environment}: recorded {st.recorded_version or '-'}{flag}")
        for h in st.hosts:
            state = h.release or "-"
            answer = f"answers {h.answering}" if h.answering else "no health answer"
            typer.echo(f"  {h.name:<12} {h.address:<16} current {state:<12} {answer}" + (f"  ({h.error})" if h.error
                                                                                            else ""))
        if st.lock:
            typer.echo(f"  lock: {st.lock.holder}: {st.lock.reason}")
        if st.in_progress:
            d = st.in_progress
            typer.echo(f"  in progress: #{d.id} {d.kind.value} {d.version} by {d.requested_by} "
                       f"({d.state.value}, stage {d.meta.get('stage', '-')})")
        if st.last:
            d = st.last
            typer.echo(f"  last: #{d.id} {d.kind.value} {d.version} by {d.requested_by} "
                       f"{d.created_at:%Y-%m-%d %H:%M} {d.state.value}")


@app.command()
def history(env: Annotated[str | None, typer.Argument()] = None, config: ConfigOpt = None,
            limit: int = 20) -> None:
    """Recent deployments, newest first."""
    with _answering():
        rows = _service(config).environments.history(env, limit)
    for d in rows:
        took = f"{d.seconds:.1f}s" if d.seconds is not None else "-"
        typer.echo(f"#{d.id:<4} {d.created_at:%Y-%m-%d %H:%M:%S} {d.environment:<8} {d.kind.value:<8} "
                   f"{d.version:<10} {d.state.value:<16} {took:>7} {d.requested_by}"
                   + (f"  {d.failed_stage}: {d.error[:80]}" if d.failed_stage else ""))


@app.command()
def lock(env: str, reason: Annotated[str, typer.Option("--reason", "-r")], config: ConfigOpt = None) -> None:
    """Freeze ENV: no deploy starts until `unlock`."""
    with _answering():
        lk = _service(config).locks.lock(env, ACTOR, reason)
    typer.echo(f"{env} locked by {lk.holder}: {lk.reason}")


@app.command()
def unlock(env: str, config: ConfigOpt = None) -> None:
    """Lift a manual freeze."""
    with _answering():
        released = _service(config).locks.unlock(env, ACTOR)
    typer.echo(f"{env} unlocked" if released else f"{env} was not locked")


@app.command("check-config")
def check_config(config: ConfigOpt = None) -> None:
    """Validate deploy.yml; every problem is printed with its location; exit 2 on any."""
    cfg = _config(config)
    from bot.config_check import problems

    found = problems(cfg)
    for problem in found:
        typer.echo(f"config error: {problem}", err=True)
    if found:
        raise typer.Exit(2)
    envs = ", ".join(f"{n} ({len(e.hosts)} hosts)" for n, e in cfg.environments.items())
    typer.echo(f"ok: {cfg.app.name}: {envs}")


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
def audit_export(fmt: Annotated[str, typer.Option("--format", "-f", help="csv or json")] = "json") -> None:
    """Write the audit trail to stdout."""
    from bot.store import Store

    if fmt not in ("csv", "json"):
        raise _fail("--format must be csv or json", 2)
    Store().export_audit(fmt, sys.stdout)


@app.command()
def demo(workdir: Annotated[Path | None, typer.Option(help="keep the demo workspace here")] = None) -> None:
    """A real deploy, approval, progress, auto-rollback, rollback and audit trail on this machine. No Slack needed."""
    import signal

    from bot.demo import run_demo

    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `deploybot demo | head` ends the demo, as with any Unix tool
    raise typer.Exit(run_demo(workdir))


@app.command()
def serve(port: Annotated[int, typer.Option(help="HTTP port when not in Socket Mode")] = 3000,
          config: ConfigOpt = None) -> None:
    """Run the Slack bot (Socket Mode if SLACK_APP_TOKEN is set, else HTTP)."""
    from bot.app import serve as run_server

    run_server(_config(config), port)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
