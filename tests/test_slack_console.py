"""The console adapter drives the same Bolt app and handlers as Slack, with no Slack at all (local targets)."""

from __future__ import annotations

import io

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
        ok = run_story(build_console(service, out), developer="U0DEV", pm="U0PM", good=["v1.0.0", "v1.1.0"],
                       bad="v1.2.0")
    finally:
        stop_apps(tmp_path)
        service.pool.close()
    text = out.getvalue()
    assert ok, text
    assert "@U0DEV> /deploy prod v1.1.0" in text and "@U0PM clicks [ Approve ]" in text
    assert "[Approve on prod?]" in text  # production asks for confirmation
    assert "• `web1`: v1.0.0 → *v1.1.0*" in text
    assert "Failed and rolled back* in" in text and "Failed stage: *health*" in text
    assert "`web1` current v1.1.0, answers v1.1.0" in text  # /deploy status, live
    assert "Roll back *v1.0.0* → *prod*" in text
    assert "demo-secret" not in text
    actions = [(e.actor, e.action) for e in service.store.audit_events()]
    assert ("U0PM", "approved") in actions and ("U0DEV", "rollback_requested") in actions
