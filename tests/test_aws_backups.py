"""Backups that leave the hosts: each host's backup set copied to S3 through presigned PUT URLs, pruned there by
age, listed by `deploybot backups`, fetched back for `rollback --restore-db`; an RDS snapshot before a migration
and its restore into a new instance. Against moto's server (tests/aws_lab.py) and the namespace hosts: the hosts
PUT and GET the presigned URLs on moto as they would on S3, and the bot's boto3 clients speak HTTP to it."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import subprocess
import sys
import tarfile
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta

import pytest

from bot.config import ConfigError, parse_config
from bot.domain import State
from bot.engine.events import StageStarted
from handlers.modals import rollback_modal
from tests.conftest import APP_PATH

pytest_plugins = ("tests.aws_lab",)  # the moto_server and aws fixtures

BUCKET = "shop-backups"
PREFIX = "db-backups/sampleapp/prod/"
SIGNATURE = re.compile(r"X-Amz-Signature=([0-9a-f]{64})")
# the "database" is a file in shared/: backed up into the set, restored from it
BACKUP = {
    "commands": ['cp "$APP_SHARED/db.txt" "$BACKUP_DIR/db.txt"'],
    "restore_commands": ['cp "$BACKUP_DIR/db.txt" "$APP_SHARED/db.txt"'],
    "s3": {"bucket": BUCKET, "prefix": "db-backups", "keep_days": 30},
}


def db_file(h):
    return h.srv / APP_PATH.removeprefix("/srv/") / "shared" / "db.txt"


def objects(aws) -> dict[str, bytes]:
    listed = aws.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {o["Key"]: aws.s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed}


def audit(store, deployment_id, action):
    return [r for r in store.audit_events(deployment_id=deployment_id) if r.action == action]


def everything_shown(svc, deployment_ids) -> str:
    """Every stage row, output, error and audit detail of these deployments, as one text."""
    rows = [[r.excerpt, r.error, out] for d in deployment_ids for r, out in svc.store.stage_outputs(d)]
    return json.dumps(rows) + json.dumps([r.detail for r in svc.store.audit_events()], default=str)


def test_backup_sets_go_to_s3_with_their_checksum_and_old_ones_are_pruned_by_age(
    hosts, aws, make_config, service, cli, presigned
):
    two = hosts[:2]
    aws.s3.create_bucket(Bucket=BUCKET)
    svc = service(make_config(two, backup=BACKUP))
    plan = cli("deploy", "prod", "v1.0.0", "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert f"# copy to s3://{BUCKET}/{PREFIX}<stamp>-<current>/h1.tar (+ .sha256)" in plan.stdout
    assert "the presigned PUT URLs come on stdin" in plan.stdout and "X-Amz-" not in plan.stdout
    assert "IFS= read -r put && IFS= read -r put_sha" in plan.stdout and "| curl -fsS --globoff" in plan.stdout
    assert f"delete the sets under s3://{BUCKET}/{PREFIX} older than 30 days (never the newest)" in plan.stdout
    for h in two:
        db_file(h).write_text(f"orders of {h.name} at v1.0.0\n")
    assert svc.deploy("prod", "v1.0.0", "cli:test").state is State.SUCCEEDED
    # a set 40 days old by the time in its name (moto cannot age objects; the age is read from the name)
    old_name = (datetime.now(UTC) - timedelta(days=40)).strftime("%Y%m%dT%H%M%S") + "-d7-v0.9.0"
    for key in (f"{PREFIX}{old_name}/h1.tar", f"{PREFIX}{old_name}/h1.tar.sha256"):
        aws.s3.put_object(Bucket=BUCKET, Key=key, Body=b"old")
    aws.s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}notes.txt", Body=b"not a backup")  # left alone
    with ExitStack() as watching:  # what `ps` shows on each host whenever curl runs there
        listings = [watching.enter_context(h.process_lists("curl")) for h in two]
        dep = svc.deploy("prod", "v1.1.0", "cli:test")
        assert dep.state is State.SUCCEEDED, dep.error
        listed = dict(zip(two, (f.read_text() for f in listings), strict=True))
    assert len(presigned) == 2 * 2 * 2  # per deploy and host: the set's PUT URL and its .sha256's
    signatures = {SIGNATURE.search(url)[1] for url in presigned}

    stored = objects(aws)
    assert f"{PREFIX}{old_name}/h1.tar" not in stored and f"{PREFIX}notes.txt" in stored
    finished = audit(svc.store, dep.id, "deploy_finished")[0].detail
    assert finished["s3_pruned"] == [old_name]
    keys = finished["s3_backups"]
    assert sorted(keys) == [h.name for h in two]
    for h in two:
        key = keys[h.name].removeprefix(f"s3://{BUCKET}/")
        assert re.fullmatch(rf"{PREFIX}\d{{8}}T\d{{6}}-d{dep.id}-v1\.0\.0/{h.name}\.tar", key)
        body = stored[key]
        assert stored[key + ".sha256"].decode().split() == [hashlib.sha256(body).hexdigest(), f"{h.name}.tar"]
        with tarfile.open(fileobj=io.BytesIO(body)) as tar:
            set_name = key.split("/")[-2]
            assert tar.extractfile(f"{set_name}/db.txt").read() == f"orders of {h.name} at v1.0.0\n".encode()
            assert f"{set_name}/SHA256SUMS" in tar.getnames() and f"{set_name}/release.tar" in tar.getnames()
        assert (h.srv / "app" / "backups" / set_name / "db.txt").exists()  # the local copy stays
        puts = [c for c in h.commands() if "curl -fsS" in c and " -T " in c]
        assert len(puts) == 2  # one per deploy: the set and its .sha256, each through its own presigned URL
        assert not any("AWS_SECRET_ACCESS_KEY" in c or "aws_secret" in c.lower() for c in h.commands())
        # the URLs came on stdin: in no command line that reached the host, in no process list while curl ran
        assert listed[h].count("=== curl") == 2 and " -T " in listed[h] and f"deploybot-d{dep.id}" in listed[h]
        for shown in (*h.commands(), listed[h]):
            assert "X-Amz-" not in shown and not any(s in shown for s in signatures)
    shown = everything_shown(svc, [1, dep.id])
    assert signatures and not any(s in shown for s in signatures)
    assert f"uploaded s3://{BUCKET}/{keys['h1'].removeprefix(f's3://{BUCKET}/')}" in shown

    # deploybot backups: each host's sets, read live, and every copy in S3, newest first
    listed = cli("backups", "prod")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["TAKEN", "(UTC)", "RELEASE", "DEPLOYMENT", "SIZE", "WHERE"]
    newest = set_name  # of the second deploy, taken while v1.0.0 ran
    for h in two:
        for where in (f"{h.name}:/srv/app/backups/{newest}", keys[h.name]):
            (line,) = [x for x in lines if x.endswith(where)]
            assert line.split()[2:4] == ["v1.0.0", f"#{dep.id}"]
    document = json.loads(cli("backups", "prod", "--json").stdout)
    seen = {(d["release"], d["deployment"], d["where"]): d["bytes"] for d in document}
    for h in two:
        assert seen[("v1.0.0", dep.id, keys[h.name])] == len(stored[keys[h.name].removeprefix(f"s3://{BUCKET}/")])
        assert ("v1.0.0", dep.id, f"{h.name}:/srv/app/backups/{newest}") in seen
        assert sum(1 for release, d, where in seen if d == 1 and h.name in where) == 2  # host and S3
    assert [d["deployment"] for d in document] == sorted((d["deployment"] for d in document), reverse=True)
    assert not any(old_name in d["name"] for d in document)


def test_rollback_restore_db_fetches_the_set_from_s3_when_the_host_lost_it(hosts, aws, make_config, service, presigned):
    two = hosts[:2]
    aws.s3.create_bucket(Bucket=BUCKET)
    svc = service(make_config(two, backup=BACKUP))
    for h in two:
        db_file(h).write_text("orders before v1.1.0\n")
    for version in ("v1.0.0", "v1.1.0"):
        assert svc.deploy("prod", version, "cli:test").state is State.SUCCEEDED
    first = two[0]
    db_file(first).write_text("orders after a migration that went wrong\n")
    for folder in (first.srv / "app" / "backups").iterdir():  # the host lost its local sets
        first.run(f"rm -rf /srv/app/backups/{folder.name}")
    assert not list((first.srv / "app" / "backups").iterdir())

    signed = len(presigned)
    with first.process_lists("curl") as listing:
        dep = svc.rollback("prod", "cli:test", "v1.0.0", reason="bad migration", restore_db=True)
        listed = listing.read_text()
    assert dep.state is State.SUCCEEDED, dep.error
    assert db_file(first).read_text() == "orders before v1.1.0\n"  # the restore command ran on the fetched set
    assert first.current() == "v1.0.0" and first.answering() == "v1.0.0"
    restored = audit(svc.store, dep.id, "rollback_finished")[0].detail["s3_restored_from"]
    assert re.fullmatch(rf"s3://{BUCKET}/{PREFIX}\d{{8}}T\d{{6}}-d2-v1\.0\.0/h1\.tar", restored)
    fetches = [c for c in first.commands() if "curl -fsS" in c and '-o "$f"' in c]
    assert len(fetches) == 1 and "sha256sum -c --quiet SHA256SUMS" in fetches[0]
    (url,) = presigned[signed:]  # the set's GET URL, on the command's stdin
    signature = SIGNATURE.search(url)[1]
    assert listed.count("=== curl") == 1 and "restore-" in listed and " -K -" in listed
    for shown in (*first.commands(), listed, everything_shown(svc, [1, 2, dep.id])):
        assert signature not in shown and "X-Amz-" not in shown
    assert not [f for f in (first.srv / "app" / ".incoming").iterdir() if f.name.startswith("restore-")]
    assert two[1].commands().count(fetches[0]) == 0  # only the first host restores


def test_a_set_that_is_neither_on_the_host_nor_in_s3_fails_the_restore_before_any_switch(
    hosts, aws, make_config, service
):
    one = hosts[:1]
    aws.s3.create_bucket(Bucket=BUCKET)
    svc = service(make_config(one, backup={**BACKUP, "s3": {**BACKUP["s3"], "prefix": "elsewhere"}}))
    db_file(one[0]).write_text("orders\n")
    for version in ("v1.0.0", "v1.1.0"):
        assert svc.deploy("prod", version, "cli:test").state is State.SUCCEEDED
    one[0].run("rm -rf /srv/app/backups")
    aws.s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in objects(aws)]})
    dep = svc.rollback("prod", "cli:test", "v1.0.0", reason="bad", restore_db=True)
    assert dep.state is State.FAILED and dep.failed_stage == "restore_db", dep.error
    assert f"no backup of v1.0.0 on this host, nor in s3://{BUCKET}/elsewhere/sampleapp/prod/" in dep.error
    assert one[0].current() == "v1.1.0"


def test_an_rds_snapshot_is_taken_before_the_migration_and_a_rollback_restores_it_into_a_new_instance(
    hosts, aws, make_config, service, cli, cli_env
):
    import boto3

    rds = boto3.client("rds", endpoint_url=aws.url, region_name="us-east-1")
    rds.create_db_instance(
        DBInstanceIdentifier="shop-prod",
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        AllocatedStorage=20,
        MasterUsername="app",
        MasterUserPassword="not-a-real-password",
    )
    one = hosts[:1]
    config = make_config(one, backup={"rds_snapshot": {"instance": "shop-prod", "interval": 0.1}})
    plan = cli("deploy", "prod", "v1.0.0", "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert "create RDS snapshot shop-prod-d0-<stamp> of shop-prod; wait until available" in plan.stdout
    assert plan.stdout.index("[upload]") < plan.stdout.index("[snapshot]") < plan.stdout.index("[migrate]")

    svc = service(config)
    order: list[str] = []
    svc.events.subscribe(lambda e: order.append(e.stage) if isinstance(e, StageStarted) and e.host is None else None)
    taken = []
    for version in ("v1.0.0", "v1.1.0"):
        dep = svc.deploy("prod", version, "cli:test")
        assert dep.state is State.SUCCEEDED, dep.error
        taken.append(audit(svc.store, dep.id, "deploy_finished")[0].detail["rds_snapshot"])
    assert order.index("snapshot") == order.index("migrate") - 1
    for dep_id, name in enumerate(taken, 1):
        assert re.fullmatch(rf"shop-prod-d{dep_id}-\d{{8}}t\d{{6}}", name)
        (snap,) = rds.describe_db_snapshots(DBSnapshotIdentifier=name)["DBSnapshots"]
        assert snap["Status"] == "available" and snap["DBInstanceIdentifier"] == "shop-prod"

    # the rollback to v1.0.0 offers the snapshot taken before v1.1.0's migration, restored into a new instance
    options = svc.requests.rollback_options("prod")
    restore = {"snapshot": taken[1], "of": "shop-prod", "instance": "shop-prod-d2-restored"}
    assert options.previous_good == "v1.0.0" and options.snapshot == restore
    view = rollback_modal(options, "C1")  # the Slack rollback form shows the step behind its checkbox
    text = json.dumps(view["blocks"])
    assert f"RDS snapshot `{taken[1]}` of `shop-prod`" in text and "new* DB instance `shop-prod-d2-restored`" in text
    (box,) = [b for b in view["blocks"] if b.get("block_id") == "restore_db"]
    assert "RDS snapshot, into a new instance" in json.dumps(box) and box["optional"] is True

    args = ("rollback", "prod", "--restore-db", "--reason", "the migration broke checkout")
    asked = subprocess.run(
        [sys.executable, "-m", "bot.cli", *args], env=cli_env(config), input="n\n", capture_output=True, text=True
    )
    assert asked.returncode == 1 and "Restore the snapshot into a new instance and roll back?" in asked.stdout
    assert (
        "restore step: RDS snapshot " + taken[1] in asked.stdout
        and "NEW DB instance shop-prod-d2-restored" in asked.stdout
    )
    assert len(rds.describe_db_instances()["DBInstances"]) == 1 and len(svc.store.list_deployments("prod")) == 2
    run = cli(*args, "--yes")
    assert run.returncode == 0, run.stderr + run.stdout
    dep = svc.store.list_deployments("prod", limit=1)[0]
    assert dep.kind.value == "rollback" and dep.state is State.SUCCEEDED, dep.error
    shown = cli("logs", str(dep.id)).stdout  # the restore step's output, as `deploybot logs` shows it
    assert f"restoring RDS snapshot {taken[1]} into the new DB instance shop-prod-d2-restored" in shown
    assert one[0].current() == "v1.0.0"
    made = {i["DBInstanceIdentifier"]: i for i in rds.describe_db_instances()["DBInstances"]}
    assert set(made) == {"shop-prod", "shop-prod-d2-restored"}  # the old instance is left as it is
    assert audit(svc.store, dep.id, "rollback_requested")[0].detail["restore_snapshot"] == restore
    assert audit(svc.store, dep.id, "rollback_finished")[0].detail["rds_restored"] == {
        "snapshot": taken[1],
        "instance": "shop-prod-d2-restored",
    }


def test_no_presigned_signature_reaches_slack_or_the_logs(world, hosts, aws, caplog, presigned):
    caplog.set_level(logging.INFO)  # LOG_LEVEL as served (at DEBUG, botocore itself logs what it signs)
    one = hosts[:1]
    aws.s3.create_bucket(Bucket=BUCKET)
    bot = world(one, backup=BACKUP)
    db_file(one[0]).write_text("orders\n")
    for version in ("v1.0.0", "v1.1.0"):
        bot.slack.command("/deploy", f"prod {version}", "U0DEV")
        bot.fake.wait_for(
            lambda v=version: (
                (d := bot.service.store.list_deployments("prod", limit=1)) and d[0].version == v and d[0].state.is_final
            )
        )
        bot.settle()
    assert [d.state for d in bot.service.store.list_deployments("prod")] == [State.SUCCEEDED] * 2
    assert len(objects(aws)) == 2 * 2  # both sets, each with its .sha256
    assert len(presigned) == 2 * 2  # the set's PUT URL and its .sha256's, per deploy
    signatures = {SIGNATURE.search(url)[1] for url in presigned}
    assert not any("X-Amz-" in c for c in one[0].commands())  # they reached the host on its commands' stdin
    slack = "\n".join(
        json.dumps(c.params) for c in bot.fake.of("chat.postMessage", "chat.update", "chat.postEphemeral")
    )
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "backup" in slack and "backup" in logged
    for shown in (slack, logged, everything_shown(bot.service, [1, 2])):
        assert not any(s in shown for s in signatures) and "X-Amz-Credential=testing" not in shown


def test_the_backup_keys_of_deploy_yml_are_checked():
    base = {
        "app": {"name": "shop", "artifact": "/tmp/shop-{version}.tar.gz"},
        "environments": {
            "prod": {"hosts": ["h1"], "path": "/srv/shop", "restart": "bin/restart", "health": {"url": "http://h/"}}
        },
    }
    good = json.loads(json.dumps(base))
    good["environments"]["prod"]["backup"] = {
        "s3": {"bucket": "shop-backups"},
        "rds_snapshot": {"instance": "shop-prod"},
    }
    backup = parse_config(good).environments["prod"].backup
    assert backup.s3.keep_days == 30 and backup.s3.prefix == "" and backup.rds_snapshot.wait_seconds == 1800
    bad = json.loads(json.dumps(base))
    bad["environments"]["prod"]["backup"] = {
        "s3": {"bucket": "Shop_Backups", "prefix": "../up", "keep_days": 0},
        "rds_snapshot": {"instance": "shop--prod;", "wait_seconds": 0},
    }
    with pytest.raises(ConfigError) as err:
        parse_config(bad)
    found = "\n".join(err.value.problems)
    for where in ("s3.bucket", "s3.prefix", "s3.keep_days", "rds_snapshot.instance", "rds_snapshot.wait_seconds"):
        assert f"environments.prod.backup.{where}" in found
