"""Migrations under zero downtime: what a request says about them, and when it needs a confirmation.

In a zero-downtime strategy (rolling behind a balancer, canary, blue-green) the migration runs before any host
switches and the old release keeps serving on the new schema until the last host has switched (and again if
the deploy reverts). That is safe only for backward-compatible (expand/contract) migrations, which an
environment declares with `migrations: expand-contract`; without it, the requester must confirm. The service
decides and words it; the front ends show the words and pass the confirmation.
"""

from __future__ import annotations

from bot.config import Environment

HOW_TO_CONFIRM = (
    "CLI: `deploybot deploy ENV VERSION --confirm-migration`; Slack: `/deploy ENV VERSION confirm-migration`"
)


def zero_downtime(env: Environment) -> bool:
    """Old and new releases serve side by side during a deploy (so the old one runs on the new schema)."""
    kind = env.strategy.kind
    return kind in ("canary", "blue-green") or (kind == "rolling" and env.traffic is not None)


def needs_confirmation(env: Environment) -> bool:
    """A migration the old release may not survive, in a strategy where the old release keeps serving."""
    return bool(env.migrate) and zero_downtime(env) and env.migrations != "expand-contract"


def note(env: Environment, confirmed: bool = False) -> str:
    """The line the approval request shows about the migration; empty when the old release is not serving
    beside the new schema (no migration, or a strategy that stops everything at once)."""
    if not (env.migrate and zero_downtime(env)):
        return ""
    line = (
        f"Migration under zero downtime: `{env.migrate}` runs before any host switches, and the old release keeps "
        "serving while the new schema is in place (and again if the deploy reverts)."
    )
    if env.migrations == "expand-contract":
        return line + " Migrations are declared backward-compatible (migrations: expand-contract)."
    return line + (
        " Not declared backward-compatible: the requester confirmed the old release works on the new schema."
        if confirmed
        else " Not declared backward-compatible, and not confirmed."
    )


def refusal(env: Environment) -> str:
    """Why an unconfirmed request is refused, and how to confirm it."""
    return (
        f"{env.name} migrates (`{env.migrate}`) while the old release keeps serving ({env.strategy.kind}"
        + (" behind a balancer" if env.traffic else "")
        + "), and does not declare its migrations backward-compatible (migrations: expand-contract). "
        f"Check that the old release works on the new schema, then confirm the migration ({HOW_TO_CONFIRM})."
    )
