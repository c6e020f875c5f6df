"""deploybot on the command line, for operators: the same use cases as Slack, run at once.

Commands here skip the Slack approval (and the deployers list): they are for people who can already read the
bot's deploy.yml and SSH key. They still take the environment's lock and write the audit trail, where each
run is recorded as asked by cli:$USER, via cli. In Slack, /deploy waits for an approver.
"""

from __future__ import annotations

# Each command imports what it uses when it runs: --help loads only typer (plain help and tracebacks: rich costs
# ~0.15 s a start, and its tracebacks print local variables, secrets among them). The commands live by what they do:
# bot/cli_deploy.py changes what runs, bot/cli_read.py, bot/cli_backups.py and bot/logpage.py read, bot/cli_admin.py
# keeps house; running the bot itself (demo, serve) is here.
from pathlib import Path
from typing import Annotated

import typer

from bot import cli_admin, cli_backups, cli_deploy, cli_read, logpage
from bot.cli_common import ConfigOpt, read_config

app = typer.Typer(no_args_is_help=True, help=__doc__, rich_markup_mode=None, pretty_exceptions_enable=False)
app.add_typer(cli_admin.audit_app, name="audit")


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


app.command()(cli_deploy.deploy)
app.command()(cli_deploy.rollback)
app.command()(cli_read.status)
app.command()(cli_read.history)
app.command()(cli_backups.backups)  # the backup sets on the hosts and in S3
app.command("logs")(logpage.command)  # one deployment whole; defined beside its web page (bot/logpage.py)
app.command()(cli_admin.lock)
app.command()(cli_admin.unlock)
app.command("check-config")(cli_admin.check_config)
app.command()(cli_admin.init)


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

    run_server(read_config(config), port)


def main() -> None:
    from bot.process import run_then_exit

    run_then_exit(lambda: app(prog_name="deploybot"))


if __name__ == "__main__":
    main()
