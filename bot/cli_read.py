"""The read-only commands: `deploybot status` and `deploybot history` (`logs` is in bot/logpage.py).

Reading never takes over a stopped process's deployment, and it opens the store read-only.
"""

from __future__ import annotations

from typing import Annotated

import typer

from bot.cli_common import AnyEnvArg, ConfigOpt, JsonOpt, answering, open_service, print_answer


def status(env: AnyEnvArg = None, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """What each host runs now (read live) beside what the store recorded; drift is flagged."""
    from bot import console_progress as show

    with answering():
        statuses = open_service(config).environments.status(env)
    print_answer(show.status_document(statuses) if as_json else show.status_lines(statuses), as_json)


def history(
    env: AnyEnvArg = None,
    config: ConfigOpt = None,
    limit: Annotated[int, typer.Option(min=1, help="how many deployments to show")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Recent deployments, newest first."""
    from bot import console_progress as show

    with answering():
        rows = open_service(config).environments.history(env, limit)
    print_answer(show.history_document(rows) if as_json else show.history_lines(rows), as_json)
