"""The console adapter drives the same Bolt app and handlers as Slack, with no Slack at all (local targets)."""

from __future__ import annotations

import io
import re

from bot.app import build_console
from bot.config import load_config
from bot.demo import build_workspace, stop_apps
from bot.service import DeployService
from bot.store import Store
from handlers.console import run_story


def test_console_story_deploys_rolls_back_and_renders_progress(tmp_path):
    service = DeployService(load_config(build_workspace(tmp_path)), Store(f"sqlite:///{tmp_path / 'd.db'}"))
    out = io.StringIO()
    try:
        ok = run_story(
            build_console(service, out), developer="U0DEV", pm="U0PM", good=["v1.0.0", "v1.1.0"], bad="v1.2.0"
        )
    finally:
        stop_apps(tmp_path)
        service.pool.close()
    text = out.getvalue()
    assert ok, text
    assert "@U0DEV> /deploy prod v1.1.0" in text and "@U0PM clicks [ Approve ]" in text
    assert "[Approve on prod?]" in text  # production asks for confirmation
    # mrkdwn is rendered for the terminal: no *bold* or `code` marks left, the words kept
    assert "• web1: v1.0.0 → v1.1.0" in text
    assert "Failed and rolled back in" in text and "Failed stage: health on host web" in text
    assert "web1 current v1.1.0, answers v1.1.0" in text  # /deploy status, live
    assert "Roll back v1.0.0 → prod" in text and "Requested by @U0DEV: demo: back to the previous release" in text
    assert "Requester: @U0DEV  ·  Environment: prod (production)" in text and "[ Approve ]  [ Reject ]" in text
    assert "Target version: [ v1.0.0 ▾ ]" in text  # the /rollback form, field by field
    assert not re.search(r"\*\S[^*\n]*\*|`", text), re.findall(r".*(?:\*\S[^*\n]*\*|`).*", text)
    assert "demo-secret" not in text

    # each host's health error is said once in the thread (and once in the message's outcome), not once per edit
    thread = [line for line in text.splitlines() if line.lstrip().startswith("|")]
    errors = re.findall(r"HTTP 500 from (http://127\.0\.0\.1:\d+/health)", text)
    urls = sorted(set(errors))
    assert len(urls) == 2, errors  # web1 and web2
    for url in urls:
        assert sum(url in line for line in thread) == 1, (url, thread)
        assert errors.count(url) == 2, (url, text)

    # the automatic rollback is deploybot's doing, not the developer's
    assert any("deploybot is rolling back web1, web2 to v1.1.0: health failed (above)" in line for line in thread)
    assert any("deploybot rolled back web1, web2: back on v1.1.0" in line for line in thread)
    actions = [(e.actor, e.action) for e in service.store.audit_events()]
    assert ("U0PM", "approved") in actions and ("U0DEV", "rollback_requested") in actions
    assert ("deploybot", "auto_rollback_started") in actions


def test_the_thread_says_each_hosts_error_once_and_credits_the_rollback_to_deploybot():
    """Pure: the checklist folded from engine events, as the progress board posts its thread."""
    from bot.engine.events import DeploymentFinished, DeploymentStarted, RollbackStarted, StageFinished
    from handlers.checklist import Checklist

    c = Checklist(7)
    c.apply(
        DeploymentStarted(
            7, environment="prod", version="v2", kind="deploy", hosts=("h1", "h2", "h3"), stages=("switch", "health")
        )
    )
    down = "exit 1: not healthy after 5s: HTTP 500 from http://h1/health"
    c.apply(StageFinished(7, stage="health", host="h1", ok=False, seconds=5, excerpt="", error=down))
    c.apply(
        StageFinished(
            7, stage="health", host="h2", ok=False, seconds=5, excerpt="boom\ntraceback", error="exit 1: boom"
        )
    )
    summary = f"h1: {down}; h2: exit 1: boom"
    c.apply(StageFinished(7, stage="health", host=None, ok=False, seconds=5, error=summary))
    c.apply(RollbackStarted(7, reason=summary, hosts=("h1", "h2"), to_version="v1"))
    c.apply(DeploymentFinished(7, state="rolled_back", seconds=6))
    thread = "\n".join(c.take_thread())
    assert thread.count(down) == 1 and thread.count("exit 1: boom") == 1
    assert "```boom\ntraceback```" in thread  # output that says more than the error is kept
    assert "deploybot is rolling back h1, h2 to v1: `health` failed (above)" in thread
    assert "deploybot rolled back h1, h2: back on v1" in thread

    c = Checklist(8)  # a reason no host line carried is still said, once
    c.apply(RollbackStarted(8, reason="aborted by request", hosts=("h1",), to_version=None))
    assert c.take_thread() == [
        ":leftwards_arrow_with_hook: deploybot is rolling back h1 to their previous release: aborted by request"
    ]
