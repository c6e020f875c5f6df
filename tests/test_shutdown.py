"""Stopping the bot mid-deploy: Ctrl-C on the CLI, SIGTERM on `deploybot serve` (what `docker stop` sends). The
running deploy stops at its next stage boundary, what switched is reverted, the lock is free, the trail complete,
and serve exits 0 within its grace period, telling Slack users meanwhile to try again in a minute."""

from __future__ import annotations

import json
import signal
import time

import requests

from bot.store import Store
from tests.serving import deploybot_serve, free_port
from tests.slack_api import FakeSlack
from tests.slack_client import SlackClient
from tests.test_leases import start_deploy, wait_for_line

SECRET = "shutdown-signing-secret"


def test_ctrl_c_stops_the_cli_deploy_at_a_boundary_and_reverts(hosts, make_config, cli, cli_env, db_path):
    two = hosts[:2]
    config = make_config(hosts=two, verify_seconds=30)
    assert cli("deploy", "prod", "v1.0.0", "--yes", config=config).returncode == 0
    proc = start_deploy(cli_env, config, "v1.1.0")
    wait_for_line(proc, "… verify")
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and time.monotonic() - started < 15, out + err
    assert "stopping at the next stage boundary" in err and "ROLLED_BACK" in out
    assert [h.current() for h in two] == ["v1.0.0"] * 2 and [h.answering() for h in two] == ["v1.0.0"] * 2
    with Store(f"sqlite:///{db_path}") as store:
        assert store.get_lock("prod") is None and store.verify_audit().ok
        assert store.list_deployments("prod", limit=1)[0].state.value == "rolled_back"


def test_sigterm_drains_serve_reverts_the_running_deploy_and_exits_zero(
    hosts, make_config, cli, cli_env, db_path, tmp_path
):
    two = hosts[:2]
    config = make_config(hosts=two, verify_seconds=60)  # no approvers: a /deploy starts at once
    assert cli("deploy", "prod", "v1.0.0", "--yes", config=config).returncode == 0
    with FakeSlack() as fake:
        port = free_port()
        env = {
            **cli_env(config),
            "SLACK_BOT_TOKEN": "xoxb-test",
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": fake.api_url,
            "DEPLOYBOT_SHUTDOWN_GRACE": "8",
            "LOG_LEVEL": "INFO",
            "DEPLOYBOT_METRICS_ADDRESS": f"127.0.0.1:{free_port()}",
        }
        slack = SlackClient(f"http://127.0.0.1:{port}", SECRET, fake.url + "/response")
        with deploybot_serve(env, tmp_path, port, capture=True) as proc:
            fake.wait_for(lambda: _answers(slack), timeout=30)
            assert slack.command("/deploy", "prod v1.1.0", "U0DEV").status_code == 200
            posted = fake.wait_for(lambda: [c for c in fake.of("chat.postMessage") if not c.params.get("thread_ts")])
            ts = posted[0].params["_ts"]
            fake.wait_for(lambda: "running: verify" in fake.message(ts).text, timeout=60)
            scraped = requests.get(f"http://{env['DEPLOYBOT_METRICS_ADDRESS']}/", timeout=5).text
            assert 'deploybot_environment_locked{environment="prod",kind="deploy"} 1.0' in scraped
            assert requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 404
            stopped_at = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            refused = fake.wait_for(lambda: _restarting(slack), timeout=10)
            assert "restarting" in refused
            assert proc.wait(timeout=30) == 0 and time.monotonic() - stopped_at < 8 + 5
        final = fake.message(ts).text
        assert "rolled back" in final and "abort" not in fake.message(ts).buttons()
    # the operator's view: one JSON object a line, the run's transitions and each host's stages, no secret
    lines = [json.loads(line) for line in proc.output.splitlines() if line.startswith("{")]
    moves = [(e["transition"], e["state"]) for e in lines if e.get("transition") and e.get("version") == "v1.1.0"]
    assert moves == [("start", "running"), ("revert", "rolling_back"), ("reverted", "rolled_back")], moves
    assert {(e["stage"], e["host"]) for e in lines if e.get("stage") == "switch"} == {("switch", h.name) for h in two}
    assert any("draining" in e["message"] for e in lines) and "s3cr3t" not in proc.output
    assert [h.current() for h in two] == ["v1.0.0"] * 2 and [h.answering() for h in two] == ["v1.0.0"] * 2
    with Store(f"sqlite:///{db_path}") as store:
        dep = store.list_deployments("prod", limit=1)[0]
        assert (dep.version, dep.state.value) == ("v1.1.0", "rolled_back")
        assert store.get_lock("prod") is None and store.verify_audit().ok


def _answers(slack: SlackClient) -> bool:
    try:
        return slack.command("/deploy", "help", "U0DEV").status_code == 200
    except OSError:
        return False


def _restarting(slack: SlackClient) -> str | None:
    try:
        text = slack.command("/deploy", "prod v1.2.0", "U0DEV").json().get("text", "")
    except (OSError, ValueError):
        return None
    return text if "restarting" in text else None
