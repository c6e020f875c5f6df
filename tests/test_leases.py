"""Processes own deployments through leases: reading never breaks a running deploy, and a deploy whose process
died is taken over after its lease expires and left on a known version. Real hosts, real processes, one SQLite
file shared by them, as replicas or an operator's laptop share a database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.store import Store


def start_deploy(cli_env, config: Path, version: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "deploy", "prod", version, "--yes"],
        env={**cli_env(config), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for_line(proc: subprocess.Popen, text: str, timeout: float = 60) -> None:
    deadline, line = time.monotonic() + timeout, ""
    while text not in line:
        assert time.monotonic() < deadline, f"no {text!r} from the deploy"
        line = proc.stdout.readline()
        assert line or proc.poll() is None, proc.stderr.read()


def test_reading_from_another_process_never_breaks_a_running_deploy(hosts, make_config, cli, cli_env):
    two = hosts[:2]
    config = make_config(hosts=two, verify_seconds=4)
    assert cli("deploy", "prod", "v1.0.0", "--yes", config=config).returncode == 0
    running = start_deploy(cli_env, config, "v1.1.0")
    wait_for_line(running, "… verify")
    for args in (("history", "prod"), ("status", "prod"), ("audit", "verify")):
        assert cli(*args, config=config).returncode == 0
    second = cli("deploy", "prod", "v1.2.0", "--yes", config=config)
    assert second.returncode == 1 and "locked by a running deployment" in second.stderr
    assert running.wait(timeout=60) == 0
    assert [h.current() for h in two] == ["v1.1.0"] * 2 and [h.answering() for h in two] == ["v1.1.0"] * 2
    assert "running" not in cli("history", "prod", config=config).stdout


def test_a_killed_deploy_is_taken_over_after_its_lease_and_reverted(hosts, make_config, cli, cli_env, db_path):
    two = hosts[:2]
    config = make_config(hosts=two, verify_seconds=30)
    assert cli("deploy", "prod", "v1.0.0", "--yes", config=config).returncode == 0
    doomed = start_deploy(cli_env, config, "v1.1.0", DEPLOYBOT_LEASE_TTL="3")
    wait_for_line(doomed, "… verify")
    os.killpg(doomed.pid, signal.SIGKILL)  # as a container restart or a lost machine would
    doomed.wait()
    assert [h.current() for h in two] == ["v1.1.0"] * 2  # left switched, the lock still held
    early = cli("deploy", "prod", "v1.2.0", "--yes", config=config)
    assert early.returncode == 1 and "locked by a running deployment" in early.stderr  # the lease still runs
    time.sleep(3.5)
    assert "running" in cli("history", "prod", config=config).stdout  # reading recovers nothing
    after = cli("deploy", "prod", "v1.2.0", "--yes", config=config)  # changing something takes over first
    assert after.returncode == 0, after.stderr
    with Store(f"sqlite:///{db_path}") as store:
        killed = store.list_deployments("prod", limit=3)[1]
        assert (killed.version, killed.state.value) == ("v1.1.0", "rolled_back")
        assert "stopped" in killed.error and "reverted to v1.0.0" in killed.error
        trail = [(e.actor, e.action, e.outcome) for e in store.audit_events(deployment_id=killed.id)]
        assert ("deploybot", "auto_rollback_started", "rolling_back") in trail
        assert trail[-1] == ("deploybot", "deploy_finished", "rolled_back")
        reverts = {s.host for s in store.stages(killed.id) if s.stage == "revert" and s.ok}
        assert reverts == {h.name for h in two} and store.verify_audit().ok
    assert [h.answering() for h in two] == ["v1.2.0"] * 2


def test_a_first_deploy_killed_after_its_switch_ends_known_and_frees_the_lock(
    hosts, make_config, cli, cli_env, db_path
):
    two = hosts[:2]
    config = make_config(hosts=two, verify_seconds=30)
    doomed = start_deploy(cli_env, config, "v1.0.0", DEPLOYBOT_LEASE_TTL="2")
    wait_for_line(doomed, "… verify")
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait()
    time.sleep(2.5)
    assert cli("lock", "prod", "--reason", "look first", config=config).returncode == 0  # takes over, then locks
    with Store(f"sqlite:///{db_path}") as store:
        killed = store.list_deployments("prod", limit=1)[0]
        assert killed.state.value == "rollback_failed" and "no previous release" in killed.error  # said, not hidden
        assert store.get_lock("prod").kind == "manual" and store.verify_audit().ok
    assert cli("unlock", "prod", config=config).returncode == 0
    assert cli("deploy", "prod", "v1.1.0", "--yes", config=config).returncode == 0


@pytest.mark.parametrize("racers", [2])
def test_two_recoverers_racing_for_one_expired_lease_give_one_winner(tmp_path, racers):
    url = f"sqlite:///{tmp_path / 'race.db'}"
    with Store(url) as store:
        store.acquire_lock("prod", holder="U1", reason="deploy", deployment_id=7, owner="gone", lease_seconds=0.01)
        time.sleep(0.05)
        assert store.take_over_lease("prod", 7, "live", lease_seconds=30) is True
        assert store.take_over_lease("prod", 7, "other", lease_seconds=30) is False  # renewed: not expired
        assert store.get_lock("prod").owner == "live" and store.renew_leases("live", 30) == {7}
    script = (
        "import sys; from bot.store import Store; s = Store(sys.argv[1]); "
        "print(s.take_over_lease('prod', 8, sys.argv[2], lease_seconds=30))"
    )
    with Store(url) as store:
        store.acquire_lock("stage", holder="U1", reason="x", deployment_id=8, owner="gone", lease_seconds=0.01)
        store.release_lock("prod")
        store.acquire_lock("prod", holder="U1", reason="x", deployment_id=8, owner="gone", lease_seconds=0.01)
    time.sleep(0.05)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, url, f"r{i}"],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )
        for i in range(racers)
    ]
    answers = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert answers == ["False", "True"]


def test_a_deploy_killed_while_starting_is_taken_over_and_changes_nothing(hosts, make_config, cli, cli_env, db_path):
    two = hosts[:2]
    config = make_config(hosts=two, backup={"commands": ['sleep 20; echo dump > "$BACKUP_DIR/db.sql"']})
    assert cli("deploy", "prod", "v1.0.0", "--yes", config=config).returncode == 0
    doomed = start_deploy(cli_env, config, "v1.1.0", DEPLOYBOT_LEASE_TTL="2")
    wait_for_line(doomed, "… backup")
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait()
    time.sleep(2.5)
    assert cli("lock", "prod", "--reason", "look first", config=config).returncode == 0  # takes over first
    with Store(f"sqlite:///{db_path}") as store:
        killed = store.list_deployments("prod", limit=1)[0]
        assert (killed.version, killed.state.value) == ("v1.1.0", "interrupted") and "stopped" in killed.error
        assert store.get_lock("prod").kind == "manual" and store.verify_audit().ok
    assert [h.current() for h in two] == ["v1.0.0"] * 2 and [h.answering() for h in two] == ["v1.0.0"] * 2
    assert not any(p.alive and "sleep 20" in p.cmdline for h in two for p in h.processes())  # the backup stopped
