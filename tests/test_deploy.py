"""The runbook over real SSH: deploys, and each manual-deploy failure stopped with the service on a known version."""

from __future__ import annotations

import json
import threading
import time

import pytest

from bot.domain import State
from bot.engine.events import StageStarted
from bot.service import DeployService


def test_deploy_to_three_hosts_then_status_shows_each_host(hosts, make_config, cli):
    three = hosts[:3]
    config = make_config(hosts=three)
    first = cli("deploy", "prod", "v1.0.0", "--yes", config=config)
    assert first.returncode == 0, first.stderr + first.stdout
    assert "SUCCEEDED" in first.stdout
    for stage in ("preflight", "backup", "upload", "migrate", "switch", "restart", "health", "verify", "cleanup"):
        assert stage in first.stdout
    assert [h.current() for h in three] == ["v1.0.0"] * 3
    assert [h.answering() for h in three] == ["v1.0.0"] * 3

    second = cli("deploy", "prod", "v1.1.0", "--yes", config=config)
    assert second.returncode == 0, second.stderr
    status = cli("status", "prod", config=config)
    assert status.returncode == 0
    for h in three:
        line = next(line for line in status.stdout.splitlines() if line.strip().startswith(h.name))
        assert "current v1.1.0" in line and "answers v1.1.0" in line
    assert "DRIFT" not in status.stdout
    # the release layout and the backup of what ran before
    app = three[0].srv / "app"
    assert (app / "releases" / "v1.0.0").is_dir() and (app / "releases" / "v1.1.0").is_dir()
    backups = list((app / "backups").glob("*-v1.0.0"))
    assert backups and (backups[0] / "SHA256SUMS").read_text().strip()
    assert (app / "shared" / "migrations.log").read_text().split() == ["v1.0.0", "v1.1.0"]


def test_status_shows_drift_between_hosts(hosts, make_config, cli):
    config = make_config(hosts=hosts[:2])
    assert cli("deploy", "prod", "v1.0.0", "--yes", config=config).returncode == 0
    # someone flips one host by hand
    (hosts[1].srv / "app" / "releases" / "v1.1.0").mkdir()
    hosts[1].run("ln -sfn releases/v1.1.0 /srv/app/current")
    out = cli("status", "prod", config=config).stdout
    assert "DRIFT" in out


def test_missing_env_var_fails_preflight_and_changes_nothing(hosts, make_config, service):
    three = hosts[:3]
    config = make_config(hosts=three)
    svc = service(config)
    assert svc.deploy("prod", "v1.0.0", "cli:test").state is State.SUCCEEDED
    env_file = three[1].srv / "app" / "shared" / ".env"
    env_file.write_text("PORT=8000\n")  # DATABASE_URL forgotten on h2
    before = [h.tree() for h in three]
    dep = svc.deploy("prod", "v1.1.0", "cli:test")
    assert dep.state is State.FAILED and dep.failed_stage == "preflight"
    assert three[1].name in dep.error and "DATABASE_URL" in dep.error
    assert [h.tree() for h in three] == before
    assert [h.answering() for h in three] == ["v1.0.0"] * 3
    # the value of the secret never reaches the trail
    trail = json.dumps([e.detail for e in svc.store.audit_events()]) + dep.error
    assert "s3cr3t" not in trail


def test_corrupted_upload_is_caught_by_checksum_and_nothing_switches(hosts, make_config, service, artifacts, tmp_path):
    two = hosts[:2]
    svc = service(make_config(hosts=two))
    assert svc.deploy("prod", "v1.0.0", "cli:test").state is State.SUCCEEDED
    # the build published a checksum, but the file on disk is a partial copy
    broken = tmp_path / "broken"
    broken.mkdir()
    good = artifacts / "sampleapp-v1.1.0.tar.gz"
    data = good.read_bytes()
    (broken / "sampleapp-v1.1.0.tar.gz").write_bytes(data[: len(data) // 2])
    import hashlib

    (broken / "sampleapp-v1.1.0.tar.gz.sha256").write_text(hashlib.sha256(data).hexdigest() + "  x\n")
    svc = service(make_config(hosts=two, artifact=str(broken / "sampleapp-{version}.tar.gz")))
    dep = svc.deploy("prod", "v1.1.0", "cli:test")
    assert dep.state is State.FAILED and dep.failed_stage == "upload"
    assert "checksum mismatch" in dep.error
    for h in two:
        assert h.current() == "v1.0.0" and h.answering() == "v1.0.0"
        assert not (h.srv / "app" / "releases" / "v1.1.0").exists()


def test_migration_failure_stops_before_switch(hosts, make_config, service):
    two = hosts[:2]
    svc = service(make_config(hosts=two))
    svc.deploy("prod", "v1.0.0", "cli:test")
    dep = svc.deploy("prod", "v1.7.0", "cli:test")
    assert dep.state is State.FAILED and dep.failed_stage == "migrate"
    assert [h.current() for h in two] == ["v1.0.0"] * 2
    assert [h.answering() for h in two] == ["v1.0.0"] * 2
    stages = [s.stage for s in svc.store.stages(dep.id)]
    assert "switch" not in stages and "restart" not in stages


@pytest.mark.parametrize(
    "bad, reason", [("v1.9.0", "HTTP 500"), ("v1.8.0", "answers version"), ("v1.6.0", "no answer")]
)
def test_failed_health_gate_rolls_back_on_its_own(hosts, make_config, service, bad, reason):
    three = hosts[:3]
    svc = service(make_config(hosts=three, health={"timeout": 2}))
    svc.deploy("prod", "v1.0.0", "cli:test")
    dep = svc.deploy("prod", bad, "cli:test")
    assert dep.state is State.ROLLED_BACK and dep.failed_stage == "health"
    assert reason in dep.error
    assert [h.current() for h in three] == ["v1.0.0"] * 3
    assert [h.answering() for h in three] == ["v1.0.0"] * 3
    actions = [e.action for e in svc.store.audit_events(deployment_id=dep.id)]
    assert "auto_rollback_started" in actions and actions[-1] == "deploy_finished"
    reverts = [s for s in svc.store.stages(dep.id) if s.stage == "revert"]
    assert {s.host for s in reverts} == {h.name for h in three} and all(s.ok for s in reverts)


def test_verification_window_failure_rolls_back(hosts, make_config, service):
    one = hosts[:1]
    svc = service(make_config(hosts=one, verify_seconds=3))
    svc.deploy("prod", "v1.0.0", "cli:test")

    def kill_new_app_later():
        time.sleep(1.5)
        one[0].run("kill $(cat /srv/app/shared/app.pid)")

    threading.Thread(target=kill_new_app_later).start()
    dep = svc.deploy("prod", "v1.1.0", "cli:test")
    assert dep.state is State.ROLLED_BACK and dep.failed_stage == "verify"
    assert one[0].current() == "v1.0.0" and one[0].answering() == "v1.0.0"


def test_backup_failure_stops_before_touching_the_release(hosts, make_config, service):
    two = hosts[:2]
    svc = service(make_config(hosts=two))
    svc.deploy("prod", "v1.0.0", "cli:test")
    svc = service(make_config(hosts=two, backup={"commands": ["echo dumping; exit 3"]}))
    dep = svc.deploy("prod", "v1.1.0", "cli:test")
    assert dep.state is State.FAILED and dep.failed_stage == "backup"
    for h in two:
        assert h.current() == "v1.0.0" and h.answering() == "v1.0.0"
        assert not (h.srv / "app" / "releases" / "v1.1.0").exists()
        assert list((h.srv / "app" / "backups").iterdir()) == []  # the first deploy had nothing; no half backup


def test_unreachable_host_fails_preflight_fast_and_names_it(hosts, make_config, service):
    three = hosts[:3]
    svc = service(make_config(hosts=three, ssh={"connect_timeout": 2}))
    svc.deploy("prod", "v1.0.0", "cli:test")
    svc.pool.close()  # a fresh bot: cold connections
    three[2].cut()
    try:
        dep = svc.deploy("prod", "v1.1.0", "cli:test")
    finally:
        three[2].restore()
    assert dep.state is State.FAILED and dep.failed_stage == "preflight"
    assert three[2].name in dep.error and "unreachable" in dep.error
    assert dep.seconds < 2 + 5  # bounded by the connect timeout, not a hang
    assert [h.current() for h in three] == ["v1.0.0"] * 3


def deploy_cutting(svc: DeployService, version: str, host, when) -> tuple:
    """Deploy `version` and cut `host` off the network once `when()` holds; the host is back afterwards.
    Returns the deployment and how long it took."""

    def cut_when_due() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not when():
            time.sleep(0.02)
        if when():
            host.cut()

    cutter = threading.Thread(target=cut_when_due)
    cutter.start()
    t0 = time.monotonic()
    try:
        dep = svc.deploy("prod", version, "cli:test")
    finally:
        took = time.monotonic() - t0
        cutter.join()
        host.restore()
    return dep, took


def test_host_dropped_after_switch_leaves_a_known_state(hosts, make_config, service):
    two = hosts[:2]
    svc = service(
        make_config(
            hosts=two, verify_seconds=6, health={"timeout": 2}, ssh={"connect_timeout": 2, "command_timeout": 15}
        )
    )
    svc.deploy("prod", "v1.0.0", "cli:test")

    verifying = threading.Event()
    svc.events.subscribe(lambda e: verifying.set() if isinstance(e, StageStarted) and e.stage == "verify" else None)
    dep, took = deploy_cutting(svc, "v1.1.0", two[1], when=verifying.is_set)
    # h2 failed its verification, h1 went back to v1.0.0, h2 could not be reached to revert: said, not hung
    assert dep.state is State.ROLLBACK_FAILED and (dep.failed_stage, dep.failed_host) == ("verify", two[1].name)
    assert took < 60  # a kept-open connection to a dropped host once waited paramiko's hour for a channel
    reverts = {s.host: s for s in svc.store.stages(dep.id) if s.stage == "revert"}
    assert reverts[two[0].name].ok and "connection lost" in reverts[two[1].name].error
    assert two[0].current() == "v1.0.0" and two[0].answering() == "v1.0.0"
    trail = svc.store.audit_events(deployment_id=dep.id)
    assert (trail[-1].action, trail[-1].outcome) == ("deploy_finished", "rollback_failed")
    assert svc.store.get_lock("prod") is None and svc.store.verify_audit().ok
    # back on the network, h2 still runs what it was given; status shows the drift and a rollback ends it
    status = svc.environments.status("prod")[0]
    assert status.drift and {h.name: h.release for h in status.hosts} == {two[0].name: "v1.0.0", two[1].name: "v1.1.0"}
    assert svc.rollback("prod", "cli:test", "v1.0.0").state is State.SUCCEEDED
    assert [h.answering() for h in two] == ["v1.0.0"] * 2


def test_host_silent_mid_command_is_given_up_after_dead_after(hosts, make_config, service):
    """The host drops while its migration runs: no reset ever arrives, yet the stage fails after `dead_after`
    seconds of silence (TCP keepalive), not after the command timeout, and nothing switched anywhere."""
    two = hosts[:2]
    slow_for_v11 = "if grep -q v1.1.0 VERSION; then sleep 25; fi; bin/migrate"
    svc = service(
        make_config(
            hosts=two, migrate=slow_for_v11, ssh={"connect_timeout": 2, "command_timeout": 120, "dead_after": 4}
        )
    )
    svc.deploy("prod", "v1.0.0", "cli:test")  # the next deploy reuses these connections
    dep, took = deploy_cutting(svc, "v1.1.0", two[0], when=lambda: any(p.comm == "sleep" for p in two[0].processes()))
    assert dep.state is State.FAILED and (dep.failed_stage, dep.failed_host) == ("migrate", two[0].name)
    assert "connection lost" in dep.error
    assert took < 25  # given up on silence, before the migration could even have ended
    assert [h.current() for h in two] == ["v1.0.0"] * 2 and svc.store.get_lock("prod") is None


def test_each_host_goes_on_without_waiting_for_the_slowest(hosts, make_config, service):
    """Switch, restart and health run as one chain per host: a fast host is healthy while a slow one restarts."""
    two = hosts[:2]
    svc = service(make_config(hosts=two, restart='if [ -f "$APP_SHARED/slow" ]; then sleep 3; fi; bin/restart'))
    (two[1].srv / "app" / "shared" / "slow").write_text("")
    dep = svc.deploy("prod", "v1.0.0", "cli:test")
    assert dep.state is State.SUCCEEDED and [h.answering() for h in two] == ["v1.0.0"] * 2
    rows = {(s.stage, s.host): s for s in svc.store.stages(dep.id)}
    assert rows["health", two[0].name].ended_at < rows["restart", two[1].name].ended_at


def test_unknown_host_key_is_refused(hosts, make_config, service, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    svc = service(make_config(hosts=hosts[:1], ssh={"known_hosts": str(empty)}))
    dep = svc.deploy("prod", "v1.0.0", "cli:test")
    assert dep.state is State.FAILED and "known_hosts" in dep.error
    assert hosts[0].commands() == []


def test_rolling_failure_in_second_batch_reverts_only_switched_hosts(hosts, make_config, service):
    svc = service(make_config(hosts=hosts, strategy={"kind": "rolling", "batch_size": 1}, health={"timeout": 2}))
    svc.deploy("prod", "v1.0.0", "cli:test")
    pids = [(h.srv / "app" / "shared" / "app.pid").read_text() for h in hosts]
    # h2 has a host-specific setting that breaks v1.1.0 there only
    with (hosts[1].srv / "app" / "shared" / ".env").open("a") as f:
        f.write("UNHEALTHY_VERSIONS=v1.1.0\n")
    dep = svc.deploy("prod", "v1.1.0", "cli:test")
    assert dep.state is State.ROLLED_BACK and dep.failed_stage == "health" and dep.failed_host == hosts[1].name
    assert [h.current() for h in hosts] == ["v1.0.0"] * 4
    assert [h.answering() for h in hosts] == ["v1.0.0"] * 4
    reverted = {s.host for s in svc.store.stages(dep.id) if s.stage == "revert"}
    assert reverted == {hosts[0].name, hosts[1].name}
    switched = {s.host for s in svc.store.stages(dep.id) if s.stage == "switch"}
    assert switched == {hosts[0].name, hosts[1].name}
    # h3, h4 were never restarted
    assert [(h.srv / "app" / "shared" / "app.pid").read_text() for h in hosts[2:]] == pids[2:]


def test_rollback_after_good_deploy_restores_previous_everywhere(hosts, make_config, cli):
    three = hosts[:3]
    config = make_config(hosts=three)
    assert cli("deploy", "prod", "v1.0.0", "--yes", config=config).returncode == 0
    assert cli("deploy", "prod", "v1.1.0", "--yes", config=config).returncode == 0
    res = cli("rollback", "prod", "--reason", "incident 42", config=config)
    assert res.returncode == 0, res.stderr
    assert "warning: migrations ran" in res.stderr
    assert [h.current() for h in three] == ["v1.0.0"] * 3
    assert [h.answering() for h in three] == ["v1.0.0"] * 3
    hist = cli("history", "prod", config=config).stdout.splitlines()
    assert "rollback" in hist[0] and "v1.0.0" in hist[0] and "succeeded" in hist[0]


def test_rollback_with_restore_db_runs_restore_against_the_right_backup(hosts, make_config, service):
    one = hosts[:1]
    svc = service(
        make_config(
            hosts=one,
            backup={
                "commands": ['echo "db at $DEPLOY_VERSION" > "$BACKUP_DIR/db.sql"'],
                "restore_commands": ['cp "$BACKUP_DIR/db.sql" "$APP_SHARED/restored.sql"'],
            },
        )
    )
    svc.deploy("prod", "v1.0.0", "cli:test")
    svc.deploy("prod", "v1.1.0", "cli:test")
    dep = svc.rollback("prod", "cli:test", restore_db=True, reason="bad migration")
    assert dep.state is State.SUCCEEDED
    assert (one[0].srv / "app" / "shared" / "restored.sql").read_text().strip() == "db at v1.0.0"
    assert one[0].current() == "v1.0.0"


def test_cleanup_keeps_n_releases_and_never_current_or_previous(hosts, make_config, service):
    one = hosts[:1]
    svc = service(make_config(hosts=one, keep_releases=2, verify_seconds=0))
    incoming = one[0].srv / "app" / ".incoming"
    incoming.mkdir(parents=True)
    (incoming / "sampleapp-v0.9.0.tar.gz.d7").write_text("left by a killed upload two days ago")
    one[0].run("touch -d '2 days ago' /srv/app/.incoming/sampleapp-v0.9.0.tar.gz.d7", check=True)
    (incoming / "sampleapp-v1.5.0.tar.gz.d8").write_text("another deploy's upload, in progress")
    for v in ("v1.0.0", "v1.1.0", "v1.2.0"):
        assert svc.deploy("prod", v, "cli:test").state is State.SUCCEEDED
    assert [p.name for p in incoming.iterdir()] == ["sampleapp-v1.5.0.tar.gz.d8"]
    releases = sorted(p.name for p in (one[0].srv / "app" / "releases").iterdir())
    assert releases == ["v1.1.0", "v1.2.0"]
