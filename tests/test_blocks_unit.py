"""The deployment message's buttons follow its state (pure rendering, no Slack): a Roll back button only where
hosts may be left on mixed versions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.domain import DeploymentRecord, Kind, State
from handlers.blocks import deployment_message


def record(state: State) -> DeploymentRecord:
    at = datetime(2026, 11, 24, tzinfo=UTC)
    return DeploymentRecord(
        id=3,
        app="shop",
        environment="prod",
        version="v2.0.0",
        kind=Kind.DEPLOY,
        state=state,
        requested_by="U0DEV",
        previous_version="v1.0.0",
        reason="",
        restore_db=False,
        meta={},
        created_at=at,
        started_at=at,
        finished_at=at,
        error="",
        failed_stage=None,
        failed_host=None,
    )


def buttons(state: State) -> list[str]:
    _, blocks = deployment_message(record(state), None)
    return [e["action_id"] for b in blocks if b.get("type") == "actions" for e in b["elements"]]


@pytest.mark.parametrize(
    "state, expected",
    [
        (State.ROLLBACK_FAILED, ["rollback_open"]),
        (State.INTERRUPTED, ["rollback_open"]),
        (State.ROLLED_BACK, []),
        (State.FAILED, []),
        (State.SUCCEEDED, []),
        (State.RUNNING, ["abort"]),
        (State.PENDING_APPROVAL, ["approve", "reject"]),
    ],
)
def test_buttons_follow_the_state(state, expected):
    assert buttons(state) == expected
