"""Bad input is refused before anything connects; one deploy per environment; the trail cannot be edited quietly."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest
import yaml

HOSTILE = [
    "v1; rm -rf /",
    "$(id)",
    "`id`",
    "../../etc",
    "v1.0.0/../../x",
    "v1.0.0 && reboot",
    "v1.0.0\nid",
    "x" * 10_000,
    "v1.0.0\u202e",
    "ｖ1.0.0",
    "v١.٠.٠",
    "",
]


@pytest.mark.parametrize("version", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_version_is_refused_and_nothing_reaches_a_host(hosts, make_config, cli, version):
    config = make_config(hosts=hosts[:2])
    for args in (("deploy", "prod", version, "--yes"), ("rollback", "prod", version)):
        res = cli(*args, config=config)
        assert res.returncode != 0
        assert "version" in (res.stderr + res.stdout).lower()
    for h in hosts[:2]:
        assert h.commands() == []
        assert not any(h.srv.iterdir()) or not (h.srv / "app" / "releases").exists()


def test_hostile_environment_name_is_refused(hosts, make_config, cli):
    config = make_config(hosts=hosts[:1])
    res = cli("deploy", "prod; touch /tmp/pwned", "v1.0.0", "--yes", config=config)
    assert res.returncode != 0 and "unknown environment" in res.stderr
    assert hosts[0].commands() == []


def test_two_deploys_at_once_exactly_one_runs(hosts, make_config, cli_env):
    config = make_config(hosts=hosts[:2], verify_seconds=3)
    env = cli_env(config)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "deploy", "prod", v, "--yes"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for v in ("v1.0.0", "v1.1.0")
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 1], outs
    loser = outs[codes.index(1)]
    assert "locked by a running deployment: held by cli:" in loser[1]
    winner_version = ("v1.0.0", "v1.1.0")[codes.index(0)]
    for h in hosts[:2]:
        assert (h.srv / "app" / "current").readlink().name == winner_version


def test_manual_lock_refuses_deploys_with_holder_and_reason(hosts, make_config, cli):
    config = make_config(hosts=hosts[:1])
    assert cli("lock", "prod", "--reason", "release freeze", config=config).returncode == 0
    res = cli("deploy", "prod", "v1.0.0", "--yes", config=config)
    assert res.returncode == 1
    assert "prod is frozen: held by cli:" in res.stderr and "release freeze" in res.stderr
    assert hosts[0].commands() == []
    assert cli("unlock", "prod", config=config).returncode == 0
    assert cli("deploy", "prod", "v1.0.0", "--yes", config=config).returncode == 0


def test_edited_or_deleted_audit_row_is_caught(hosts, make_config, cli, db_path):
    config = make_config(hosts=hosts[:1])
    assert cli("deploy", "prod", "v1.0.0", "--yes", config=config).returncode == 0
    ok = cli("audit", "verify", config=config)
    assert ok.returncode == 0 and "intact" in ok.stdout
    with sqlite3.connect(db_path) as db:
        row = db.execute("SELECT id FROM audit_events ORDER BY id LIMIT 1 OFFSET 1").fetchone()[0]
        db.execute("UPDATE audit_events SET actor = 'someone-else' WHERE id = ?", (row,))
    bad = cli("audit", "verify", config=config)
    assert bad.returncode == 1 and "TAMPERED" in bad.stdout and str(row) in bad.stderr
    exported = cli("audit", "export", "--format", "csv", config=config)
    assert exported.returncode == 0 and exported.stdout.splitlines()[0].startswith("id,")


def test_check_config_reports_every_problem_with_its_location(tmp_path, cli):
    cfg = {
        "app": {"name": "sampleapp", "artifact": str(tmp_path / "missing-dir" / "app-{version}.tar.gz")},
        "environments": {
            "prod": {
                "hosts": ["root@10.0.0.1", "root@@typo", "root@10.0.0.3:99999"],
                "path": "srv/app",  # the classic: relative path, release lands somewhere else
                "restart": "bin/restart",
                "health": {"url": "localhost:8000/health"},
            },
            "staging": {
                "hosts": ["root@10.0.0.9"],
                "path": "/srv/my app",
                "restart": "x",
                "health": {"url": "http://{host}:{port}/health"},
            },
        },
    }
    path = tmp_path / "deploy.yml"
    path.write_text(yaml.safe_dump(cfg))
    res = cli("check-config", config=path)
    assert res.returncode == 2
    err = res.stderr
    assert "environments.prod.hosts[1]" in err and "environments.prod.hosts[2]" in err
    assert "environments.prod.path" in err and "environments.prod.health.url" in err
    assert "environments.staging.path" in err


def test_check_config_semantic_problems(tmp_path, cli, make_config, hosts):
    good = make_config(hosts=hosts[:2])
    assert cli("check-config", config=good).returncode == 0
    data = yaml.safe_load(good.read_text())
    env = data["environments"]["prod"]
    env["health"]["url"] = "http://{host}:{port}/health"
    env["ssh"]["key_file"] = str(tmp_path / "nope")
    data["app"]["artifact"] = str(tmp_path / "nowhere" / "x-{version}.tgz")
    good.write_text(yaml.safe_dump(data))
    res = cli("check-config", config=good)
    assert res.returncode == 2
    assert "environments.prod.health.url: {port} is not defined for hosts[0]" in res.stderr
    assert "environments.prod.ssh.key_file" in res.stderr and "app.artifact" in res.stderr


def test_dry_run_prints_the_plan_and_runs_nothing(hosts, make_config, cli):
    config = make_config(hosts=hosts[:2])
    res = cli("deploy", "prod", "v1.0.0", "--dry-run", config=config)
    assert res.returncode == 0, res.stderr
    for text in (hosts[0].name, hosts[1].address, "preflight -> backup -> upload", "ln -sfn", "bin/restart"):
        assert text in res.stdout
    assert all(h.commands() == [] for h in hosts[:2])
