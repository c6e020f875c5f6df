"""Migrations under zero downtime: in a canary (or rolling behind a balancer, or blue-green) deploy the old release
keeps serving while the new schema is in place. Unless the environment declares its migrations backward-compatible
(`migrations: expand-contract`), a deploy with a migration is refused until confirmed: from the CLI with
`--confirm-migration`, from Slack with `/deploy ENV VERSION confirm-migration`; the refusal is audited and nothing
reaches a host. The approval request says that the old release keeps serving on the new schema. Real SSH hosts,
the real CLI process, signed Slack requests into the real bot."""

from __future__ import annotations

import re

from tests.test_slack_flow import DEV, PM, deployment_id, ephemerals, request_message, wait_final

CANARY = {"kind": "canary", "canary_hosts": 1, "canary_seconds": 0.5, "batch_size": 1}


def refusals(store) -> list:
    return [r for r in store.audit_events() if r.action == "refused"]


def migrations_ran(host) -> str:
    log = host.srv / "app" / "shared" / "migrations.log"
    return log.read_text() if log.exists() else ""


def test_the_cli_refuses_an_unconfirmed_migration_and_runs_a_confirmed_one(hosts, make_config, cli, service):
    three = hosts[:3]
    config = make_config(hosts=three, strategy=CANARY, migrations="unchecked")

    refused = cli("deploy", "prod", "v1.0.0", "--yes")
    assert refused.returncode != 0
    assert "does not declare its migrations backward-compatible" in refused.stderr + refused.stdout
    assert "--confirm-migration" in refused.stderr + refused.stdout
    assert all(not (h.srv / "app" / "releases").exists() for h in three)  # nothing reached a host
    svc = service(config)
    [row] = refusals(svc.store)
    assert row.actor == "cli:tester" and row.detail["migration"] and row.version == "v1.0.0"
    assert svc.store.list_deployments("prod") == []

    plan = cli("deploy", "prod", "v1.0.0", "--dry-run")
    assert plan.returncode == 0 and "[canary]" in plan.stdout and "batch 1 (canary" in plan.stdout

    ran = cli("deploy", "prod", "v1.0.0", "--yes", "--confirm-migration")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert [h.answering() for h in three] == ["v1.0.0"] * 3
    assert migrations_ran(three[0]) == "v1.0.0\n"
    requested = [r for r in svc.store.audit_events() if r.action == "deploy_requested"][0]
    assert requested.detail["migration_confirmed"] is True


def test_expand_contract_migrations_need_no_confirmation(hosts, make_config, service):
    three = hosts[:3]
    svc = service(make_config(hosts=three, strategy=CANARY, migrations="expand-contract"))
    assert svc.deploy("prod", "v1.0.0", "cli:test").state.value == "succeeded"
    assert refusals(svc.store) == []


def test_slack_asks_for_the_confirmation_and_the_request_says_the_old_release_keeps_serving(world, hosts):
    three = hosts[:3]
    bot = world(three, strategy=CANARY, migrations="unchecked", approval={"approvers": [PM]})

    r = bot.slack.command("/deploy", "prod v1.0.0", DEV)
    assert r.status_code == 200
    said = bot.fake.wait_for(lambda: [t for t in ephemerals(bot, DEV) if "confirm-migration" in t] or None, 20)
    assert "/deploy ENV VERSION confirm-migration" in said[0] and "old release keeps serving" in said[0]
    assert bot.fake.of("chat.postMessage") == []  # no request was posted
    assert [r.actor for r in refusals(bot.service.store)] == [DEV]

    since = len(bot.fake.calls)
    r = bot.slack.command("/deploy", "prod v1.0.0 confirm-migration", DEV)
    assert r.status_code == 200
    req = request_message(bot, since=since)
    assert "the old release keeps serving while the new schema is in place" in req.text
    assert "the requester confirmed" in req.text and "canary" in req.text

    bot.slack.click("approve", str(deployment_id(req)), PM, req.params["_ts"])
    final = wait_final(bot, req.params["_ts"])
    assert "Succeeded* in" in final.text, final.text
    assert re.search(r":white_check_mark: canary — done \d+\.\d\ds", final.text), final.text
    assert [h.answering() for h in three] == ["v1.0.0"] * 3
