"""The commands that change what the hosts run: `deploybot deploy` and `deploybot rollback`.

Both take the environment's lock, follow the run on stdout and exit 1 unless it succeeded; Ctrl-C stops the run
at its next stage boundary, as the Abort button does.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from bot.cli_common import ACTOR, ConfigOpt, EnvArg, answering, exit_unless_succeeded, open_service


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
    confirm_migration: Annotated[
        bool,
        typer.Option(
            "--confirm-migration",
            help="the old release works on the new schema (asked where it keeps serving during the migration, "
            "unless ENV declares migrations: expand-contract)",
        ),
    ] = False,
) -> None:
    """Deploy VERSION to ENV: preflight, backup, upload, migrate, switch, restart, health, verify, cleanup."""
    from bot.console_progress import following
    from bot.process import interruptible

    service = open_service(config, changes=not dry_run)
    with answering():
        if dry_run:
            for line in service.requests.describe_plan(env, version, ACTOR):
                typer.echo(line)
            return
        if not yes:
            typer.confirm(f"Deploy {version} to {env}?", abort=True)
        with following(service.events, sys.stdout), interruptible(service.runs.stopping):
            dep = service.deploy(env, version, ACTOR, override_alarms, confirm_migration)
    exit_unless_succeeded(dep)


def rollback(
    env: EnvArg,
    version: Annotated[
        str | None,
        typer.Argument(help="a release still on the hosts [default: the previous good one]", metavar="VERSION"),
    ] = None,
    config: ConfigOpt = None,
    reason: Annotated[str, typer.Option(help="why (kept in the audit trail)")] = "",
    restore_db: Annotated[bool, typer.Option("--restore-db", help="also restore its DB backup")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask before restoring an RDS snapshot")] = False,
) -> None:
    """Return ENV to the previous good release (or VERSION, if it is still on the hosts)."""
    from bot.console_progress import following
    from bot.process import interruptible

    service = open_service(config, changes=True)
    with answering():
        options = service.requests.rollback_options(env)
        if options.migrations_since and not restore_db:
            typer.echo(
                "warning: migrations ran since that release; the database was not restored "
                "(use --restore-db to restore the backup)",
                err=True,
            )
        snapshot = service.backups.snapshot_for(env, version or options.previous_good or "") if restore_db else None
        if snapshot:  # RDS restores into a new instance: say so, and ask
            typer.echo(
                f"restore step: RDS snapshot {snapshot['snapshot']} of {snapshot['of']} is restored into a NEW DB "
                f"instance {snapshot['instance']} (restore_db_instance_from_db_snapshot); {snapshot['of']} is left "
                f"as it is: point the app at {snapshot['instance']} once it is available"
            )
            if not yes:
                typer.confirm("Restore the snapshot into a new instance and roll back?", abort=True)
        with following(service.events, sys.stdout), interruptible(service.runs.stopping):
            dep = service.rollback(env, ACTOR, version, reason=reason, restore_db=restore_db)
    exit_unless_succeeded(dep)
