"""`deploybot demo`, the README's first command: the whole story on local targets, exit 0."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def test_demo_tells_the_whole_story_and_exits_zero(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_URL", "DEPLOYBOT_"))}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    res = subprocess.run(
        [sys.executable, "-m", "bot.cli", "demo", "--workdir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    out = res.stdout
    assert res.returncode == 0, out + res.stderr
    assert "SUCCEEDED" in out.upper() and "ROLLED_BACK" in out.upper()
    assert "audit verify:" in out and "intact" in out
    for action in ("deploy_requested", "approved", "auto_rollback_started", "rollback_requested"):
        assert action in out
    assert "demo-secret" not in out  # the database password in shared/.env never shows
    # it reads as a chat, not as markup: mrkdwn rendered, the automatic rollback credited to the bot
    assert "`" not in out and "*Succeeded*" not in out and ">> Succeeded in" in out
    assert "deploybot is rolling back web1, web2 to v1.1.0" in out and "deploybot rolled back web1, web2" in out
    # blue-green on one server where nginx is installed: a deploy on the idle slot, a rollback that only flips
    if shutil.which("nginx") or Path("/usr/sbin/nginx").exists():
        assert "== blue-green on one server (single)" in out and "[x] flip" in out
        assert "serves again with the same process" in out and "nothing restarted" in out
        assert "rollback_finished      single v1.0.0  succeeded" in out
    else:
        assert "blue-green: skipped, nginx is not installed here" in out
    # nothing left running: the demo stops its sample apps (both slots) and nginx
    pids = [*(tmp_path / "demo" / "hosts").glob("*/app/shared/app*.pid"), *(tmp_path / "demo").glob("nginx/nginx.pid")]
    assert pids
    for pid_file in pids:
        pid = int(pid_file.read_text())
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().split(") ")[1][0] == "Z"


def test_demo_removes_its_temporary_workspace(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_URL", "DEPLOYBOT_"))}
    env.update(PYTHONPATH=str(Path(__file__).resolve().parents[1]), TMPDIR=str(scratch))
    res = subprocess.run(
        [sys.executable, "-m", "bot.cli", "demo"], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "workspace removed" in res.stdout and list(scratch.iterdir()) == []
