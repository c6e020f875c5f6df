"""On AWS: artifacts in S3, hosts found by EC2 tags, CloudWatch alarms as gates, Secrets Manager values in
shared/.env. Against moto's server (tests/aws_lab.py) and the namespace hosts: the bot's boto3 clients speak
HTTP to it, and the hosts download presigned URLs from it as they would from S3."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import stat
import subprocess
import sys
import threading
from contextlib import ExitStack

import pytest
import yaml

from bot.config import ConfigError, parse_config
from bot.config_check import problems
from bot.domain import State
from bot.engine.events import StageStarted
from bot.redact import Redactor
from bot.service import Refused
from bot.store import Store
from tests.conftest import ROOT

pytest_plugins = ("tests.aws_lab",)  # the moto_server and aws fixtures

S3_TEMPLATE = "s3://releases/sampleapp/sampleapp-{version}.tar.gz"
SIGNATURE = re.compile(r"X-Amz-Signature=([0-9a-f]{64})")


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def upload(aws, artifacts, version: str, sha256: str | None = None) -> None:
    file = artifacts / f"sampleapp-{version}.tar.gz"
    aws.upload("releases", f"sampleapp/sampleapp-{version}.tar.gz", file, sha256)


def audit_rows(store, deployment_id=None, action=None) -> list:
    return [r for r in store.audit_events(deployment_id=deployment_id) if action is None or r.action == action]


# ---- S3 artifacts --------------------------------------------------------------------------------------------
def test_hosts_fetch_from_s3_through_presigned_urls_and_a_wrong_checksum_stops_before_any_switch(
    hosts, aws, artifacts, make_config, service, cli, presigned
):
    two = hosts[:2]
    upload(aws, artifacts, "v1.0.0")  # no published checksum: the bot downloads it once to compute one
    upload(aws, artifacts, "v1.1.0", sha256=sha(artifacts / "sampleapp-v1.1.0.tar.gz"))
    svc = service(make_config(two, artifact=S3_TEMPLATE, upload="fetch"))

    plan = cli("deploy", "prod", "v1.1.0", "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert "s3://releases/sampleapp/sampleapp-v1.1.0.tar.gz" in plan.stdout and "X-Amz-" not in plan.stdout
    assert "curl -fsSL --globoff -r 0-0 --connect-timeout 5 --max-time 15 -o /dev/null -K -" in plan.stdout
    assert sha(artifacts / "sampleapp-v1.1.0.tar.gz") in plan.stdout

    with ExitStack() as watching:  # what `ps` shows on each host whenever curl runs there
        listings = [watching.enter_context(h.process_lists("curl")) for h in two]
        for version in ("v1.0.0", "v1.1.0"):
            dep = svc.deploy("prod", version, "cli:test")
            assert dep.state is State.SUCCEEDED, dep.error
        listed = [f.read_text() for f in listings]
    assert len(presigned) == 2 * 2 * 2  # signed per deploy and host: for preflight's probe and for the download
    signatures = {SIGNATURE.search(url)[1] for url in presigned}  # (two signed in the same second are alike)
    for h, seen in zip(two, listed, strict=True):
        assert h.current() == "v1.1.0" and h.answering() == "v1.1.0"  # the bytes checked against the sha256
        commands = h.commands()
        probes = [c for c in commands if "-r 0-0" in c]  # preflight: one byte by GET, as a presigned URL allows
        downloads = [c for c in commands if '-o "$f" ' in c]
        assert len(probes) == 2 and len(downloads) == 2
        assert not any(" -I " in c for c in probes)  # no HEAD: a presigned GET URL refuses it
        assert not any("sftp-server" in c for c in commands)  # nothing went through the bot
        # the URLs came on stdin: in no command line that reached the host, in no process list while curl ran
        assert seen.count("=== curl") == 4 and f"deploybot-d{dep.id}" in seen and " -K -" in seen
        for shown in (*commands, seen):
            assert "X-Amz-" not in shown and not any(s in shown for s in signatures)
    recorded = json.dumps([[r.excerpt, r.error, out] for d in (1, 2) for r, out in svc.store.stage_outputs(d)])
    recorded += json.dumps([r.detail for r in svc.store.audit_events()], default=str)
    assert signatures and not any(s in recorded for s in signatures)

    bad = artifacts / "sampleapp-v1.2.0.tar.gz"
    upload(aws, artifacts, "v1.2.0", sha256="0" * 64)  # the metadata lies
    dep = svc.deploy("prod", "v1.2.0", "cli:test")
    assert dep.state is State.FAILED and dep.failed_stage == "upload", dep.error
    assert dep.error.count("checksum mismatch") == 2 and sha(bad) in dep.error
    for h in two:
        assert h.current() == "v1.1.0" and h.answering() == "v1.1.0"
        assert not (h.srv / "app" / "releases" / "v1.2.0").exists()


def test_sftp_sends_a_copy_the_bot_downloaded_from_s3(hosts, aws, artifacts, make_config, service):
    one = hosts[:1]
    upload(aws, artifacts, "v1.0.0", sha256=sha(artifacts / "sampleapp-v1.0.0.tar.gz"))
    svc = service(make_config(one, artifact=S3_TEMPLATE))
    dep = svc.deploy("prod", "v1.0.0", "cli:test")
    assert dep.state is State.SUCCEEDED, dep.error
    assert one[0].answering() == "v1.0.0"
    assert any("sftp-server" in c for c in one[0].commands())
    assert not any("X-Amz-" in c for c in one[0].commands())
    with pytest.raises(Refused, match="artifact not found: s3://releases/sampleapp/sampleapp-v1.1.0.tar.gz"):
        svc.deploy("prod", "v1.1.0", "cli:test")


# ---- EC2 discovery -------------------------------------------------------------------------------------------
def test_hosts_are_the_running_instances_with_the_tags(hosts, aws, lab, make_config, service, cli):
    tags = {"App": "sampleapp", "Env": "prod"}
    running = aws.instances([h.address for h in hosts[:2]], tags, lab.net)
    stopped = aws.instances([hosts[2].address], tags, lab.net)
    aws.ec2.stop_instances(InstanceIds=stopped)
    aws.instances([hosts[3].address], {"App": "sampleapp", "Env": "staging"}, lab.net)
    config = make_config(hosts[:2])  # shared/.env on the two that run; then the hosts become a tag query
    data = yaml.safe_load(config.read_text())
    data["environments"]["prod"]["hosts"] = {"ec2": {"tags": tags, "user": "root"}}
    config.write_text(yaml.safe_dump(data))
    check = cli("check-config")
    assert check.returncode == 0 and "EC2 instances tagged App=sampleapp, Env=prod" in check.stdout, check.stderr

    plan = cli("deploy", "prod", "v1.0.0", "--dry-run")
    assert plan.returncode == 0, plan.stderr
    by_id = dict(zip(running, hosts[:2], strict=True))
    for iid, h in by_id.items():
        assert f"{iid} ({h.address})" in plan.stdout
    assert stopped[0] not in plan.stdout

    svc = service(config)
    dep = svc.requests.deploy("prod", "v1.0.0", "cli:test", skip_approval=True)
    assert dep.meta["hosts"] == sorted(running)  # what an approval message lists, named by instance id
    assert svc.runs.run(dep.id).state is State.SUCCEEDED
    for h in hosts[:2]:
        assert h.current() == "v1.0.0" and h.answering() == "v1.0.0"
    for h in hosts[2:]:
        assert h.commands() == [] and not (h.srv / "app").exists()
    status = cli("status", "prod", "--json")
    assert status.returncode == 0, status.stderr
    seen = {h["name"]: (h["address"], h["release"]) for h in json.loads(status.stdout)[0]["hosts"]}
    assert seen == {iid: (h.address, "v1.0.0") for iid, h in by_id.items()}
    plan_hosts = svc.requests.plan("prod", "v1.1.0", "cli:test").hosts
    assert {h.vars["instance_id"] for h in plan_hosts} == set(running)


# ---- CloudWatch alarms ---------------------------------------------------------------------------------------
REASON = "Threshold Crossed: 1 datapoint [12.0] was greater than the threshold (5.0)."


def test_an_alarm_in_alarm_refuses_the_start_and_an_override_with_a_reason_proceeds(
    hosts, aws, make_config, service, cli
):
    one = hosts[:1]
    for name in ("sampleapp-prod-5xx", "sampleapp-prod-latency", "shared-db-cpu"):
        aws.alarm(name)
    aws.set_alarm("sampleapp-prod-5xx", "ALARM", REASON)
    config = make_config(one, alarms={"prefix": "sampleapp-prod-", "names": ["shared-db-cpu"]})
    svc = service(config)
    with pytest.raises(Refused) as refused:
        svc.deploy("prod", "v1.0.0", "cli:test")
    assert "sampleapp-prod-5xx" in str(refused.value) and REASON in str(refused.value)
    assert "latency" not in str(refused.value) and one[0].commands() == []
    row = audit_rows(svc.store, action="refused")[-1]
    assert [(a["name"], a["reason"]) for a in row.detail["alarms"]] == [("sampleapp-prod-5xx", REASON)]
    assert row.detail["alarms"][0]["since"]

    run = cli("deploy", "prod", "v1.0.0", "--yes", "--override-alarms", "hotfix for incident 42")
    assert run.returncode == 0, run.stderr + run.stdout
    assert one[0].answering() == "v1.0.0"
    dep = svc.store.list_deployments("prod", limit=1)[0]
    for action in ("deploy_requested", "deploy_started"):
        overridden = audit_rows(svc.store, dep.id, action)[0].detail["alarms_overridden"]
        assert overridden["reason"] == "hotfix for incident 42"
        assert [a["name"] for a in overridden["alarms"]] == ["sampleapp-prod-5xx"]

    # asked while all was quiet, the alarm fired before the run began: the run does not start
    aws.set_alarm("sampleapp-prod-5xx", "OK", "back to normal")
    dep = svc.requests.deploy("prod", "v1.1.0", "cli:test", skip_approval=True)
    aws.set_alarm("shared-db-cpu", "ALARM", "CPU above 90%")
    with pytest.raises(Refused, match="shared-db-cpu"):
        svc.runs.run(dep.id)
    dep = svc.store.get(dep.id)
    assert dep.state is State.CANCELLED and "shared-db-cpu" in dep.error
    row = audit_rows(svc.store, dep.id, "cancelled")[0]
    assert row.detail["alarms"][0]["name"] == "shared-db-cpu" and row.detail["alarms"][0]["reason"] == "CPU above 90%"
    assert one[0].answering() == "v1.0.0"


def test_an_alarm_going_off_in_the_verification_window_rolls_back(hosts, aws, make_config, service):
    two = hosts[:2]
    aws.alarm("sampleapp-prod-errors")
    svc = service(make_config(two, verify_seconds=3, alarms={"names": ["sampleapp-prod-errors"], "interval": 0.2}))
    assert svc.deploy("prod", "v1.0.0", "cli:test").state is State.SUCCEEDED
    fire = threading.Timer(0.7, aws.set_alarm, ("sampleapp-prod-errors", "ALARM", REASON))
    svc.events.subscribe(
        lambda e: (
            fire.start()
            if isinstance(e, StageStarted) and e.stage == "verify" and e.host is None and e.deployment_id == 2
            else None
        )
    )
    dep = svc.deploy("prod", "v1.1.0", "cli:test")
    fire.join()
    assert dep.state is State.ROLLED_BACK and dep.failed_stage == "verify", dep.error
    assert "CloudWatch alarm sampleapp-prod-errors went to ALARM" in dep.error and REASON in dep.error
    for h in two:
        assert h.current() == "v1.0.0" and h.answering() == "v1.0.0"
    assert "sampleapp-prod-errors" in audit_rows(svc.store, dep.id, "auto_rollback_started")[0].detail["reason"]
    alarm = audit_rows(svc.store, dep.id, "deploy_finished")[0].detail["alarm"]
    assert alarm["name"] == "sampleapp-prod-errors" and alarm["reason"] == REASON and alarm["since"]


# ---- Secrets Manager -----------------------------------------------------------------------------------------
def test_a_secret_lands_in_shared_env_with_mode_0600_and_nowhere_else(hosts, aws, make_config, cli, db_path):
    two = hosts[:2]
    values = {"DATABASE_URL": "postgres://app:Zq8-sealed-pass@db.internal/shop", "SECRET_KEY": "sk-7f3a9c1e5b2d4f60"}
    aws.secret("sampleapp/prod", {**values, "NOT_ASKED": "unused-value-0x51"})
    make_config(
        two,
        required_env=["DATABASE_URL", "SECRET_KEY"],
        secrets_manager={"secret_id": "sampleapp/prod", "keys": ["DATABASE_URL", "SECRET_KEY"]},
    )
    plan = cli("deploy", "prod", "v1.0.0", "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert "sftp put <DATABASE_URL, SECRET_KEY from Secrets Manager secret sampleapp/prod>" in plan.stdout
    run = cli("deploy", "prod", "v1.0.0", "--yes")
    assert run.returncode == 0, run.stderr + run.stdout
    shown = run.stdout + run.stderr + plan.stdout + plan.stderr
    for h in two:
        env_file = h.srv / "app" / "shared" / ".env"
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        lines = env_file.read_text().splitlines()
        assert "PORT=8000" in lines  # kept
        assert [f"{k}={shlex.quote(v)}" for k, v in values.items()] == [line for line in lines if "PORT" not in line]
        assert "NOT_ASKED" not in env_file.read_text()
        assert h.answering() == "v1.0.0"
        shown += "\n".join(h.commands())  # every command line that reached the host (what `ps` could show)
        assert not list((h.srv / "app" / ".incoming").iterdir())  # the file it came in is gone
    exported = cli("audit", "export")
    logs = cli("logs", "1", "--json")
    assert exported.returncode == 0 and logs.returncode == 0
    shown += exported.stdout + logs.stdout
    with Store(f"sqlite:///{db_path}") as store:
        shown += json.dumps([[r.excerpt, r.error, out] for r, out in store.stage_outputs(1)])
    assert "wrote DATABASE_URL SECRET_KEY" in shown  # the stage output names the keys ...
    for value in values.values():
        assert value not in shown  # ... never the values


# ---- without AWS ----------------------------------------------------------------------------------------------
def test_the_cli_loads_no_boto3_for_help_status_and_history(tmp_path):
    from bot.demo import build_workspace

    env = {
        **os.environ,
        "DEPLOYBOT_CONFIG": str(build_workspace(tmp_path / "w")),
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'd.db'}",
    }
    Store(env["DATABASE_URL"]).close()
    for args in (["--help"], ["status", "prod"], ["history", "prod"]):
        run = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "bot.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr[-2000:]
        assert "boto3" not in run.stderr and "botocore" not in run.stderr, args


def test_presigned_urls_are_masked_wherever_shown():
    url = (
        "http://10.0.0.1:9000/releases/app-v1.tar.gz?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
        "AKIAIOSFODNN7EXAMPLE%2F20240101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20240101T000000Z&"
        "X-Amz-Expires=300&X-Amz-SignedHeaders=host&X-Amz-Security-Token=FwoGZXIvYXdzEJr&X-Amz-Signature=" + "ab" * 32
    )
    shown = Redactor()(f"curl -fsSL '{url}' failed")
    assert "X-Amz-Signature=***" in shown and "X-Amz-Credential=***&" in shown
    assert "X-Amz-Security-Token=***&" in shown
    assert "ab" * 32 not in shown and "AKIA" not in shown and "X-Amz-Expires=300" in shown
    legacy = Redactor()("http://h/b/k?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=abc%3D&Expires=1")
    assert legacy == "http://h/b/k?AWSAccessKeyId=***&Signature=***&Expires=1"


BASE = {
    "app": {"name": "shop", "artifact": "s3://releases/shop-{version}.tar.gz", "upload": "fetch"},
    "environments": {
        "prod": {
            "hosts": {"ec2": {"tags": {"App": "shop"}}},
            "path": "/srv/{instance_id}",
            "restart": "bin/restart",
            "health": {"url": "http://{private_ip}:8000/health"},
            "ssh": {"accept_unknown_hosts": True},
        }
    },
}


def test_the_aws_keys_of_deploy_yml_are_checked(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    cfg = parse_config(BASE)
    assert cfg.environments["prod"].ec2.tags == {"App": "shop"} and cfg.environments["prod"].hosts == []
    assert problems(cfg) == []
    bad = json.loads(json.dumps(BASE))
    prod = bad["environments"]["prod"]
    prod["health"]["url"] = "http://{rack}:8000/health"
    assert any("health.url: {rack} is not defined for EC2 hosts" in p for p in problems(parse_config(bad)))
    prod.update(alarms={"interval": 5}, secrets_manager={"secret_id": "shop/prod", "keys": ["not a name"]})
    prod["hosts"] = {"ec2": {"tags": {}, "address": "elastic"}}
    bad["app"]["artifact"] = "s3://{version}/shop.tgz"
    with pytest.raises(ConfigError) as err:
        parse_config(bad)
    found = "\n".join(err.value.problems)
    for where in (
        "app.artifact",
        "environments.prod.hosts.ec2.tags",
        "environments.prod.hosts.ec2.address",
        "environments.prod.alarms",
        "environments.prod.secrets_manager.keys",
    ):
        assert where in found
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    assert any(p.startswith("aws.region:") for p in problems(parse_config(BASE)))
