"""Requests on AWS, as the requester sees them: an EC2 environment whose instances cannot be read is refused and
audited like every refusal; a deploy asked in Slack while a CloudWatch alarm fires is refused (the channel says
which alarm and how to override), and `override-alarms REASON` proceeds with the alarm and the reason on the
audit row. Against moto's server (tests/aws_lab.py) and, for the Slack test, signed requests into the real app."""

from __future__ import annotations

import json

import pytest
import yaml

from bot.domain import State
from bot.service import Refused
from tests.slack_client import text_input
from tests.test_home import channel_pick, click_home, open_home, opened_form, response_url_for, submit

pytest_plugins = ("tests.aws_lab",)  # the moto_server and aws fixtures

TAGS = {"App": "sampleapp", "Env": "prod"}


def test_an_ec2_environment_that_cannot_be_read_is_refused_and_audited(hosts, aws, lab, make_config, service):
    one = hosts[:1]
    config = make_config(one)
    data = yaml.safe_load(config.read_text())
    data["environments"]["prod"]["hosts"] = {"ec2": {"tags": TAGS, "user": "root"}}
    data["aws"] = {"endpoint_url": f"http://{lab.services_address}:9"}  # nothing listens there: EC2 unreachable
    config.write_text(yaml.safe_dump(data))
    svc = service(config)

    with pytest.raises(Refused, match="prod: listing the EC2 instances tagged App=sampleapp, Env=prod: ") as refused:
        svc.requests.deploy("prod", "v1.0.0", "U0DEV")
    row = svc.store.audit_events()[-1]
    assert (row.actor, row.action, row.outcome, row.version) == ("U0DEV", "refused", "refused", "v1.0.0")
    assert row.detail["reason"] == str(refused.value) and row.detail["ec2_tags"] == "App=sampleapp, Env=prod"
    assert svc.store.list_deployments("prod") == [] and one[0].commands() == []


# ---- the alarm override from Slack ---------------------------------------------------------------------------
DEV, PM = "U0DEV", "U0PM"
REASON = "Threshold Crossed: 1 datapoint [12.0] was greater than the threshold (5.0)."


def test_slack_refuses_a_deploy_while_an_alarm_fires_and_override_alarms_with_a_reason_proceeds(world, hosts, aws):
    one = hosts[:1]
    for name in ("sampleapp-prod-5xx", "sampleapp-prod-latency"):
        aws.alarm(name)
    aws.set_alarm("sampleapp-prod-5xx", "ALARM", REASON)
    bot = world(one, alarms={"prefix": "sampleapp-prod-"}, approval={"approvers": [PM]})
    fake = bot.fake

    r = bot.slack.command("/deploy", "prod v1.0.0", DEV)
    assert r.status_code == 200 and "Checking" in r.json()["text"]
    refusal = fake.wait_for(lambda: next((c for c in fake.of("response_url") if "not starting" in c.text), None))
    assert "CloudWatch alarm sampleapp-prod-5xx is in ALARM since " in refusal.text and REASON in refusal.text
    assert "`/deploy ENV VERSION override-alarms REASON` in Slack" in refusal.text and "latency" not in refusal.text
    assert fake.of("chat.postMessage") == [] and one[0].commands() == []
    row = bot.service.store.audit_events()[-1]
    assert (row.actor, row.action, row.outcome) == (DEV, "refused", "refused")
    assert [(a["name"], a["reason"]) for a in row.detail["alarms"]] == [("sampleapp-prod-5xx", REASON)]

    r = bot.slack.command("/deploy", "prod v1.0.0 override-alarms", DEV)  # no reason: nothing asked
    assert "override-alarms needs a reason" in r.json()["text"] and len(bot.service.store.audit_events()) == 1

    asked = 'prod v1.0.0 override-alarms "hotfix for incident 42, api_key=sk_live_4242abcd"'
    assert bot.slack.command("/deploy", asked, DEV).status_code == 200
    request = fake.wait_for(lambda: next(iter(fake.of("chat.postMessage")), None))
    assert "CloudWatch alarms overridden: hotfix for incident 42, api_key=***" in request.text
    dep_id = int(
        next(e["value"] for b in request.params["blocks"] if b.get("type") == "actions" for e in b["elements"])
    )
    bot.slack.click("approve", str(dep_id), PM, request.params["_ts"])
    final = fake.wait_for(lambda: (m := fake.message(request.params["_ts"])) and "Succeeded* in" in m.text and m, 90)
    assert final and one[0].answering() == "v1.0.0"
    assert bot.service.store.get(dep_id).state is State.SUCCEEDED

    for action in ("deploy_requested", "deploy_started"):
        row = next(r for r in bot.service.store.audit_events(deployment_id=dep_id) if r.action == action)
        assert row.actor == DEV
        assert row.detail["alarms_overridden"]["reason"] == "hotfix for incident 42, api_key=***"
        assert [a["name"] for a in row.detail["alarms_overridden"]["alarms"]] == ["sampleapp-prod-5xx"]
    everything = json.dumps([c.params for c in fake.calls]) + json.dumps(
        [r.detail for r in bot.service.store.audit_events()], default=str
    )
    assert "sk_live_4242abcd" not in everything


def test_the_home_deploy_form_overrides_a_firing_alarm_only_with_a_reason(world, hosts, aws):
    one = hosts[:1]
    aws.alarm("sampleapp-prod-5xx")
    aws.set_alarm("sampleapp-prod-5xx", "ALARM", REASON)
    bot = world(one, alarms={"prefix": "sampleapp-prod-"}, approval={"approvers": [PM]})
    mark = bot.fake.mark()
    click_home(bot, open_home(bot, DEV), "home_deploy", DEV)
    form = opened_form(bot, mark)
    assert [b.get("block_id") for b in form["blocks"] if b["type"] == "input"] == [
        "version",
        "channel",
        "override_alarms",
    ]
    values = {"version": text_input("v1.0.0"), "channel": channel_pick("C0OTHER")}
    r = submit(bot, form, {**values, "override_alarms": text_input("")}, DEV)
    assert r.json()["response_action"] == "errors"
    assert "sampleapp-prod-5xx is in ALARM" in r.json()["errors"]["version"]
    r = submit(bot, form, {**values, "override_alarms": text_input("x" * 201)}, DEV)
    assert "at most 200 characters" in r.json()["errors"]["override_alarms"]
    assert bot.service.environments.history("prod") == []  # nothing recorded, nothing ran

    mark = bot.fake.mark()
    reason = text_input("hotfix for incident 42, token=abcd1234efgh")
    r = submit(bot, form, {**values, "override_alarms": reason}, DEV, response_url_for(bot, "C0OTHER", "alarm"))
    assert r.status_code == 200 and not r.text.strip(), r.text
    request = bot.fake.wait_for(lambda: next(iter(bot.fake.of("chat.postMessage", since=mark)), None))
    assert "CloudWatch alarms overridden: hotfix for incident 42, token=***" in request.text
    row = next(r for r in bot.service.store.audit_events() if r.action == "deploy_requested")
    assert row.actor == DEV and row.detail["alarms_overridden"]["reason"] == "hotfix for incident 42, token=***"
