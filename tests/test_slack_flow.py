"""The Slack front end end to end: signed requests into the real WSGI app under waitress, a fake Slack Web API
recording what users would see, a real SQLite store and real deploys over SSH to the namespace hosts."""

from __future__ import annotations

import json
import re
import time

import pytest
import requests

from tests.slack_client import checked, selected, text_input

DEV, PM, PM2, EVE = "U0DEV", "U0PM", "U0PM2", "U0EVE"
GROUP = "S0PMS"
STAGES = ("preflight", "backup", "upload", "migrate", "switch", "restart", "health", "verify", "cleanup")


@pytest.fixture
def world(world):
    """The shared bot under test (conftest), its Slack knowing the approver group GROUP = [PM2]."""
    return lambda hosts, **overrides: world(hosts, groups={GROUP: [PM2]}, **overrides)


def request_message(bot, since: int = 0, timeout: float = 20):
    """The approval request (or queued message) the bot posted in the channel: a top-level chat.postMessage."""
    return bot.fake.wait_for(
        lambda: next((c for c in bot.fake.of("chat.postMessage", since=since) if not c.params.get("thread_ts")), None),
        timeout,
    )


def latest(bot, ts: str):
    return bot.fake.message(ts)


def wait_final(bot, ts: str, timeout: float = 90):
    """Until the message shows an outcome (and no Abort button)."""

    def done():
        m = latest(bot, ts)
        return (
            m
            if re.search(r"(Succeeded|Failed|rolled back|Cancelled|Rejected|Expired)\S* in|Rejected|Expired", m.text)
            and "abort" not in m.buttons()
            else None
        )

    return bot.fake.wait_for(done, timeout)


def ephemerals(bot, user: str, since: int = 0) -> list[str]:
    """What `user` alone saw: chat.postEphemeral to them, and response_url answers."""
    eph = [c.text for c in bot.fake.of("chat.postEphemeral", since=since) if c.params.get("user") == user]
    return eph + [c.text for c in bot.fake.of("response_url", since=since)]


def deployment_id(message) -> int:
    return int(
        next(
            e["value"]
            for b in message.params["blocks"]
            if b.get("type") == "actions"
            for e in b["elements"]
            if e["action_id"] == "approve"
        )
    )


def actions(bot) -> list[tuple[str, str, str | None]]:
    return [(a.actor, a.action, a.outcome) for a in bot.service.store.audit_events()]


# ---- (a) the full story ---------------------------------------------------------------------------------
def test_deploy_approve_progress_success(world, hosts):
    two = hosts[:2]
    bot = world(two, production=True, approval={"approvers": [PM]})
    t0 = time.perf_counter()
    r = bot.slack.command("/deploy", "prod v1.0.0", DEV)
    acked = time.perf_counter() - t0
    assert r.status_code == 200 and acked < 1.0, r.text
    assert "Checking" in r.json()["text"] and r.json()["response_type"] == "ephemeral"

    req = request_message(bot)
    ts = req.params["_ts"]
    assert req.params["channel"] == "C0DEPLOY"
    text = req.text
    assert f"<@{DEV}>" in text and "prod" in text and "in-place" in text and f"<@{PM}>" in text
    for h in two:
        assert f"`{h.name}`: nothing → *v1.0.0*" in text
    assert req.buttons() == ["approve", "reject"]
    approve = next(
        e
        for b in req.params["blocks"]
        if b.get("type") == "actions"
        for e in b["elements"]
        if e["action_id"] == "approve"
    )
    assert approve["confirm"]["confirm"]["text"] == "Approve"  # production asks for confirmation

    r = bot.slack.click("approve", approve["value"], PM, ts)
    assert r.status_code == 200
    final = wait_final(bot, ts)
    assert "Succeeded* in" in final.text
    for stage in STAGES:
        assert re.search(rf":white_check_mark: {stage} — done \d+\.\d\ds", final.text), stage
    assert final.buttons() == []
    updates = [c for c in bot.fake.of("chat.update") if c.params["ts"] == ts]
    assert any("running:" in u.text and "abort" in u.buttons() for u in updates)  # a running state was shown
    assert len(updates) < 40  # coalesced, not one per event
    assert any("`health` done" in c.text for c in bot.fake.thread(ts))
    assert [h.answering() for h in two] == ["v1.0.0", "v1.0.0"]

    trail = actions(bot)
    assert (DEV, "deploy_requested", "pending_approval") in trail
    assert (PM, "approved", "approve") in trail
    assert (DEV, "deploy_started", "running") in trail and (DEV, "deploy_finished", "succeeded") in trail
    rows = bot.service.store.audit_events()
    assert any(r.action == "stage_finished" or r.action.startswith("stage") for r in rows) or bot.service.store.stages(
        deployment_id(req)
    )
    # secrets never reach Slack
    everything = json.dumps([c.params for c in bot.fake.calls])
    assert "s3cr3t" not in everything and "xoxb-" not in everything

    health = requests.get(bot.url + "/healthz", timeout=5)
    assert health.status_code == 200 and health.json()["ok"] is True
    assert requests.get(bot.url + "/metrics", timeout=5).status_code == 404  # not on the port Slack reaches
    metrics = requests.get(bot.metrics_url, timeout=5).text
    assert "deploybot_build_info{python=" in metrics and "process_resident_memory_bytes" in metrics
    assert 'deploybot_deployments_total{environment="prod",kind="deploy",outcome="succeeded"} 1.0' in metrics
    assert 'deploybot_stage_duration_seconds_count{environment="prod",ok="true",stage="upload"}' in metrics
    assert 'deploybot_approvals_waiting{environment="prod"} 0.0' in metrics
    assert 'deploybot_environment_locked{environment="prod",kind="manual"} 0.0' in metrics


# ---- (b) refusals: a clear private answer, nothing started, audited ---------------------------------------
def test_refusals_are_private_audited_and_start_nothing(world, hosts):
    two = hosts[:2]
    bot = world(two, approval={"approvers": [PM], "expires_after_minutes": 5}, deployers=[DEV, PM])
    fake = bot.fake

    def command(text: str, user: str = DEV) -> str:
        mark = fake.mark()
        r = bot.slack.command("/deploy", text, user)
        assert r.status_code == 200
        bot.settle()
        return r.json()["text"] + "\n".join(ephemerals(bot, user, mark))

    assert "unknown environment 'staging'" in command("staging v1.0.0")
    hostile = "v1.0.0;rm${IFS}-rf${IFS}/"
    answer = command("prod " + hostile)
    assert "not a valid version" in answer or "does not match" in answer
    answer = command("prod $(reboot)")
    assert "does not match the version pattern" in answer and "&lt;" not in answer
    assert "not allowed to deploy to prod" in command("prod v1.0.0", user=EVE)
    assert "not found" in command("prod v9.9.9")  # no artifact
    assert "Usage: `/deploy ENV VERSION" in command("prod")
    assert all(not h.commands() for h in two)  # nothing reached a host

    # a real request, then clicks by the wrong people
    mark = fake.mark()
    bot.slack.command("/deploy", "prod v1.0.0", DEV)
    req = request_message(bot, mark)
    ts, dep = req.params["_ts"], str(deployment_id(req))
    for who, expect in ((EVE, "only the approvers of prod may approve"), (DEV, "only the approvers")):
        m = fake.mark()
        bot.slack.click("approve", dep, who, ts)
        fake.wait_for(lambda m=m, who=who: ephemerals(bot, who, m))
        assert expect in ephemerals(bot, who, m)[0]
    m = fake.mark()
    bot.slack.click("reject", dep, EVE, ts)
    fake.wait_for(lambda: ephemerals(bot, EVE, m))
    assert "only the approvers of prod may reject" in ephemerals(bot, EVE, m)[0]
    assert not fake.of("views.open", since=m)

    # self-approval, when the requester is an approver
    mark = fake.mark()
    bot.slack.command("/deploy", "prod v1.1.0", PM)
    own = request_message(bot, mark)
    m = fake.mark()
    bot.slack.click("approve", str(deployment_id(own)), PM, own.params["_ts"])
    fake.wait_for(lambda: ephemerals(bot, PM, m))
    assert "you cannot approve your own deploy" in ephemerals(bot, PM, m)[0]

    # expiry: the message loses its buttons; a late click is refused
    from datetime import UTC, datetime, timedelta

    assert bot.runtime.sweep(now=datetime.now(UTC) + timedelta(minutes=6)) == 2
    bot.settle()
    assert latest(bot, ts).buttons() == [] and "Expired" in latest(bot, ts).text
    m = fake.mark()
    bot.slack.click("approve", dep, PM, ts)
    fake.wait_for(lambda: ephemerals(bot, PM, m))
    assert "expired" in ephemerals(bot, PM, m)[0]

    # a frozen environment
    r = bot.slack.command("/deploy", "lock prod release freeze", PM)
    assert r.json()["response_type"] == "in_channel" and "locked by <@U0PM>" in r.json()["text"]
    assert "prod is frozen: held by U0PM" in command("prod v1.0.0")
    r = bot.slack.command("/deploy", "unlock prod", PM)
    assert "unlocked" in r.json()["text"]

    trail = actions(bot)
    assert not [a for a in trail if a[1].endswith("_started")]
    refused = [a for a in trail if a[2] == "refused"]
    assert {(a[0], a[1]) for a in refused} >= {
        (DEV, "refused"),
        (EVE, "refused"),
        (EVE, "approval_refused"),
        (DEV, "approval_refused"),
        (EVE, "rejection_refused"),
        (PM, "approval_refused"),
    }
    assert all(h.srv.joinpath("app", "current").exists() is False for h in two)


def test_help_history_and_bad_input(world, hosts):
    bot = world(hosts[:1])
    for cmd, text in (
        ("/deploy", "help"),
        ("/rollback", "help"),
        ("/deploy", "status help"),
        ("/deploy", "history help"),
        ("/deploy", "lock help"),
        ("/deploy", "unlock help"),
    ):
        r = bot.slack.command(cmd, text, DEV)
        usage = "Usage: `" + " ".join([cmd, *text.split()[:-1]])
        assert r.json()["text"].startswith(usage) and r.json()["response_type"] == "ephemeral", (cmd, text)
    everything = bot.slack.command("/deploy", "help", DEV).json()["text"]  # one line per subcommand
    for line in (
        "`/deploy ENV VERSION",
        "`/deploy status",
        "`/deploy history",
        "`/deploy lock ENV REASON",
        "`/deploy unlock ENV",
        "`/deploy help",
        "`/rollback",
        "Invite @deploybot to the channel",
    ):
        assert f"\n{line}" in everything or everything.startswith(f"Usage: {line}"), line
    assert "I need an environment and a reason" in bot.slack.command("/deploy", "lock prod", DEV).json()["text"]
    assert "is not an environment name" in bot.slack.command("/deploy", "status <!channel>", DEV).json()["text"]
    assert "No deployments yet" in bot.slack.command("/deploy", "history", DEV).json()["text"]


# ---- (c) idempotent clicks and quorum ---------------------------------------------------------------------
def test_double_click_and_two_approvers_at_once_give_one_deployment(world, hosts):
    from concurrent.futures import ThreadPoolExecutor

    two = hosts[:2]
    bot = world(two, approval={"approvers": [PM, GROUP]})
    bot.slack.command("/deploy", "prod v1.0.0", DEV)
    req = request_message(bot)
    ts, dep = req.params["_ts"], str(deployment_id(req))
    clicks = [PM, PM, PM2, PM2, PM]  # double clicks, and the group member (resolved via usergroups) at once
    with ThreadPoolExecutor(len(clicks)) as pool:
        answers = list(pool.map(lambda u: bot.slack.click("approve", dep, u, ts), clicks))
    assert all(a.status_code == 200 for a in answers)
    final = wait_final(bot, ts)
    bot.settle()
    assert "Succeeded* in" in final.text
    trail = actions(bot)
    assert len([a for a in trail if a[1] == "deploy_started"]) == 1
    assert len([a for a in trail if a[1] == "deploy_finished"]) == 1
    assert [h.answering() for h in two] == ["v1.0.0"] * 2
    assert bot.fake.of("usergroups.users.list")  # membership was asked of Slack
    assert len(bot.fake.of("usergroups.users.list")) == 1  # and cached


def test_quorum_of_two_waits_for_the_second_approver(world, hosts):
    bot = world(hosts[:1], approval={"approvers": [PM, GROUP], "approvals_required": 2})
    bot.slack.command("/deploy", "prod v1.0.0", DEV)
    req = request_message(bot)
    ts, dep = req.params["_ts"], str(deployment_id(req))
    assert "Approvals: 0/2" in req.text
    mark = bot.fake.mark()
    bot.slack.click("approve", dep, PM, ts)
    bot.fake.wait_for(lambda: ephemerals(bot, PM, mark))
    assert "recorded (1/2)" in ephemerals(bot, PM, mark)[0]
    bot.slack.click("approve", dep, PM, ts)  # the same approver again does not count twice
    bot.settle()
    assert "Approvals: 1/2 (<@U0PM>)" in latest(bot, ts).text and latest(bot, ts).buttons() == ["approve", "reject"]
    assert not [a for a in actions(bot) if a[1] == "deploy_started"]
    bot.slack.click("approve", dep, PM2, ts)
    final = wait_final(bot, ts)
    assert "Succeeded* in" in final.text and "Approved by <@U0PM>, <@U0PM2>" in final.text
    assert hosts[0].answering() == "v1.0.0"


def test_reject_with_a_reason(world, hosts):
    bot = world(hosts[:1], approval={"approvers": [PM]})
    bot.slack.command("/deploy", "prod v1.0.0", DEV)
    req = request_message(bot)
    ts, dep = req.params["_ts"], str(deployment_id(req))
    bot.slack.click("reject", dep, PM, ts)
    view = bot.fake.wait_for(lambda: bot.fake.of("views.open"))[0].params["view"]
    r = bot.slack.submit(view, {"reason": text_input("not during the sale")}, PM)
    assert r.status_code == 200 and not r.text.strip(), r.text
    bot.settle()
    m = latest(bot, ts)
    assert "Rejected* by <@U0PM>" in m.text.replace(":no_entry: ", "*") or "Rejected by <@U0PM>" in m.text
    assert "not during the sale" in m.text and m.buttons() == []
    assert (PM, "rejected", "rejected") in actions(bot)
    assert not hosts[0].commands() or all("current" in c or "readlink" in c for c in hosts[0].commands())


# ---- (d) a failing version: failed stage, auto-rollback, then /rollback to an older release --------------------
def _deploy_now(bot, version: str):
    mark = bot.fake.mark()
    r = bot.slack.command("/deploy", f"prod {version}", DEV)
    assert r.status_code == 200, r.text
    msg = request_message(bot, mark)
    return wait_final(bot, msg.params["_ts"])


def test_failing_version_rolls_back_and_a_rollback_to_an_older_release_works(world, hosts):
    two = hosts[:2]
    bot = world(two)  # no approval policy: deploys start right away
    assert "Succeeded* in" in _deploy_now(bot, "v1.0.0").text
    assert "Succeeded* in" in _deploy_now(bot, "v1.1.0").text
    failed = _deploy_now(bot, "v1.9.0")  # answers unhealthy
    text = failed.text
    assert "Failed and rolled back* in" in text
    assert "Failed stage: *health* on host *h1*" in text or "Failed stage: *health* on host *h2*" in text
    assert ":x: health — failed" in text and ":white_circle:" not in text
    assert failed.buttons() == []  # the hosts are back on v1.1.0 already: no button inviting a second rollback
    assert any("rolling back" in c.text for c in bot.fake.thread(failed.params.get("ts") or failed.params["_ts"]))
    assert [h.answering() for h in two] == ["v1.1.0"] * 2  # auto-rollback

    mark = bot.fake.mark()
    bot.slack.command("/rollback", "prod", DEV)
    view = bot.fake.wait_for(lambda: bot.fake.of("views.open", since=mark))[0].params["view"]
    select = next(b for b in view["blocks"] if b.get("block_id") == "version")["element"]
    assert select["initial_option"]["value"] == "v1.0.0"
    assert any(b.get("block_id") == "restore_db" for b in view["blocks"])  # migrations ran since v1.0.0
    assert "migrations" in json.dumps(view["blocks"])
    r = bot.slack.submit(view, {"version": selected("v1.0.0"), "reason": text_input("v1.1.0 slow checkout")}, DEV)
    assert r.status_code == 200
    msg = request_message(bot, mark)
    final = wait_final(bot, msg.params["_ts"])
    assert "Roll back *v1.0.0* → *prod*" in final.text and "Succeeded* in" in final.text
    assert "v1.1.0 slow checkout" in final.text
    assert [h.answering() for h in two] == ["v1.0.0"] * 2
    assert (DEV, "rollback_requested", "approved") in actions(bot)


# ---- (e) /rollback modal, /deploy status live ---------------------------------------------------------------------
def test_rollback_command_opens_modal_and_status_reads_hosts_live(world, hosts):
    two = hosts[:2]
    bot = world(two)
    _deploy_now(bot, "v1.0.0")
    _deploy_now(bot, "v1.1.0")
    mark = bot.fake.mark()
    r = bot.slack.command("/rollback", "prod", DEV)
    assert r.status_code == 200 and not r.text.strip()
    view = bot.fake.wait_for(lambda: bot.fake.of("views.open", since=mark))[0].params["view"]
    assert view["callback_id"] == "rollback_submit"
    select = next(b for b in view["blocks"] if b.get("block_id") == "version")["element"]
    assert select["initial_option"]["value"] == "v1.0.0"
    assert ":warning: The deploy being undone ran database migrations" in json.dumps(view)
    # the reason is required: the modal shows the error, nothing starts
    r = bot.slack.submit(view, {"version": selected("v1.0.0"), "reason": text_input("  ")}, DEV)
    assert r.json() == {"response_action": "errors", "errors": {"reason": "Say why: it goes into the audit trail."}}
    r = bot.slack.submit(
        view, {"version": selected("v1.0.0"), "reason": text_input("checkout broken"), "restore_db": checked()}, DEV
    )
    assert r.status_code == 200
    msg = request_message(bot, mark)
    final = wait_final(bot, msg.params["_ts"])
    assert "Succeeded* in" in final.text and "checkout broken" in final.text
    assert [h.answering() for h in two] == ["v1.0.0"] * 2
    rollback = next(a for a in bot.service.store.audit_events() if a.action == "rollback_requested")
    assert rollback.actor == DEV and rollback.detail["reason"] == "checkout broken"

    # someone flips h2 by hand: /deploy status shows what the hosts run, read live
    two[1].run("cd /srv/app && ln -sfn releases/v1.1.0 current")
    mark = bot.fake.mark()
    r = bot.slack.command("/deploy", "status prod", DEV)
    assert "Reading the hosts" in r.json()["text"]
    answer = bot.fake.wait_for(lambda: bot.fake.of("response_url", since=mark))[0]
    assert answer.params["response_type"] == "ephemeral"
    assert "`h1` current v1.0.0, answers v1.0.0" in answer.text
    assert "`h2` current v1.1.0" in answer.text and "drift" in answer.text
    assert f"rollback v1.0.0 by <@{DEV}>" in answer.text and "succeeded" in answer.text

    r = bot.slack.command("/deploy", "history prod", DEV)
    assert r.json()["text"].count("\n") == 2 and "rollback v1.0.0" in r.json()["text"]

    # App Home: the same dashboard, published for the user who opened it
    mark = bot.fake.mark()
    assert bot.slack.home_opened(PM).status_code == 200
    home = bot.fake.wait_for(lambda: bot.fake.of("views.publish", since=mark))[0]
    assert home.params["user_id"] == PM and home.params["view"]["type"] == "home"
    assert "`h1` current v1.0.0" in home.text


# ---- (f) signatures ------------------------------------------------------------------------------------------
def test_unsigned_forged_or_replayed_requests_get_401_and_change_nothing(world, hosts):
    bot = world(hosts[:1])
    fields = bot.slack.command_fields("/deploy", "lock prod forged", DEV)
    before = len(bot.service.store.audit_events())
    mark = bot.fake.mark()
    forged = bot.slack.form(fields, signature="v0=" + "0" * 64)
    stale = bot.slack.form(fields, timestamp=int(time.time()) - 6 * 60)
    unsigned = bot.slack.form(fields, signed=False)
    wrong_secret = bot.slack.form(
        fields,
        signature=__import__("tests.slack_client").slack_client.sign(
            "not-the-secret", str(int(time.time())), __import__("urllib.parse").parse.urlencode(fields)
        ),
    )
    assert [r.status_code for r in (forged, stale, unsigned, wrong_secret)] == [401] * 4
    time.sleep(0.3)
    assert bot.fake.of("chat.postMessage", "chat.postEphemeral", "response_url", since=mark) == []
    assert len(bot.service.store.audit_events()) == before
    assert bot.slack.command("/deploy", "status prod", DEV).status_code == 200  # the genuine article still works
    assert bot.service.store.get_lock("prod") is None


# ---- (g) Slack rate-limiting and failing during a deploy ------------------------------------------------------
def test_slack_429_and_500_during_a_deploy_do_not_hurt_it(world, hosts):
    two = hosts[:2]
    bot = world(two, approval={"approvers": [PM]})
    bot.slack.command("/deploy", "prod v1.0.0", DEV)
    req = request_message(bot)
    ts, dep = req.params["_ts"], str(deployment_id(req))
    bot.fake.fail_next(2, 429)
    bot.fake.fail_next(3, 500)
    bot.fake.delay = 0.15  # and slow
    bot.slack.click("approve", dep, PM, ts)
    final = wait_final(bot, ts, timeout=120)
    bot.fake.delay = 0
    assert "Succeeded* in" in final.text
    for stage in STAGES:
        assert f":white_check_mark: {stage} — done" in final.text
    assert [c.status for c in bot.fake.calls if c.status != 200] == [429, 429, 500, 500, 500]
    assert [h.answering() for h in two] == ["v1.0.0"] * 2
    finished = next(a for a in bot.service.store.audit_events() if a.action == "deploy_finished")
    assert finished.outcome == "succeeded" and finished.detail["seconds"] < 30


# ---- (h) the running deployment's controls, dry runs, rolling progress ----------------------------------------
def test_abort_button_stops_a_running_deploy_and_rolls_back(world, hosts):
    two = hosts[:2]
    bot = world(two, approval={"approvers": [PM, GROUP]}, verify_seconds=30)
    assert bot.service.deploy("prod", "v1.0.0", "cli:ops").state.value == "succeeded"
    bot.slack.command("/deploy", "prod v1.1.0", DEV)
    req = request_message(bot)
    ts, dep = req.params["_ts"], str(deployment_id(req))
    bot.slack.click("approve", dep, PM, ts)
    running = bot.fake.wait_for(lambda: (m := latest(bot, ts)) and "running: verify" in m.text and m, 60)
    assert "abort" in running.buttons()
    assert [h.answering() for h in two] == ["v1.1.0"] * 2  # switched, inside the verification window

    mark = bot.fake.mark()
    bot.slack.click("abort", dep, EVE, ts)  # neither the requester nor an approver
    bot.fake.wait_for(lambda: ephemerals(bot, EVE, mark))
    assert "only the requester or an approver may abort" in ephemerals(bot, EVE, mark)[0]

    bot.slack.click("abort", dep, PM2, ts)  # an approver through the user group
    final = wait_final(bot, ts)
    assert "Failed and rolled back* in" in final.text and "aborted by request" in final.text
    assert [h.answering() for h in two] == ["v1.0.0"] * 2
    assert [h.current() for h in two] == ["v1.0.0"] * 2
    trail = actions(bot)
    assert (EVE, "abort_refused", "refused") in trail and (PM2, "abort_requested", "aborting") in trail
    assert (DEV, "deploy_finished", "rolled_back") in trail
    assert bot.service.store.get_lock("prod") is None


def test_dry_run_from_slack_shows_the_plan_and_runs_nothing(world, hosts):
    two = hosts[:2]
    bot = world(two, approval={"approvers": [PM]})
    mark = bot.fake.mark()
    r = bot.slack.command("/deploy", "prod v1.1.0 --dry-run", DEV)
    assert "dry run" in r.json()["text"]
    answer = bot.fake.wait_for(lambda: bot.fake.of("response_url", since=mark))[0]
    assert answer.params["response_type"] == "ephemeral" and "Dry run, nothing ran" in answer.text
    for h in two:
        assert f"{h.name} ({h.address})" in answer.text
    assert (
        "preflight -> backup -> upload -> migrate -> switch -> restart -> health -> verify -> cleanup"
        in answer.text.replace("&gt;", ">")
    )
    assert "s3cr3t" not in answer.text
    bot.settle()
    assert bot.fake.of("chat.postMessage", since=mark) == []  # no approval request
    assert bot.service.environments.history("prod") == []
    assert all(not h.commands() for h in two)


def test_rolling_deploy_shows_each_host_as_it_goes(world, hosts):
    bot = world(hosts, strategy={"kind": "rolling", "batch_size": 1}, verify_seconds=0)
    final = _deploy_now(bot, "v1.0.0")
    assert "Succeeded* in" in final.text
    names = [h.name for h in hosts]
    assert all(f":white_check_mark: `{n}` cleanup" in final.text for n in names)
    updates = [c.text for c in bot.fake.of("chat.update") if c.params["ts"] == final.params["ts"]]

    # mid-way, some hosts were already switched and serving while the others still waited on the old release
    def split(u: str) -> bool:
        stages = set(re.findall(r"`h\d` (\w+)", u))
        return bool(stages & {"switch", "restart", "health"}) and "upload" in stages

    assert any(split(u) for u in updates), updates
    assert [h.answering() for h in hosts] == ["v1.0.0"] * len(hosts)


def test_approval_rechecks_what_the_request_showed(world, hosts, artifacts, tmp_path):
    own = tmp_path / "artifacts"
    own.mkdir()
    for v in ("v1.0.0", "v1.1.0"):
        (own / f"sampleapp-{v}.tar.gz").write_bytes((artifacts / f"sampleapp-{v}.tar.gz").read_bytes())
    bot = world(hosts[:1], approval={"approvers": [PM]}, artifact=str(own / "sampleapp-{version}.tar.gz"))

    def click_approve(version: str) -> str:
        mark = bot.fake.mark()
        bot.slack.command("/deploy", f"prod {version}", DEV)
        req = request_message(bot, mark)
        m = bot.fake.mark()
        bot.slack.click("approve", str(deployment_id(req)), PM, req.params["_ts"])
        return bot.fake.wait_for(lambda: ephemerals(bot, PM, m))[0]

    # frozen after the request was shown: refused; once unfrozen, the approver's next click starts it
    mark = bot.fake.mark()
    bot.slack.command("/deploy", "prod v1.0.0", DEV)
    first = request_message(bot, mark)
    bot.slack.command("/deploy", "lock prod incident 7", EVE)
    m = bot.fake.mark()
    bot.slack.click("approve", str(deployment_id(first)), PM, first.params["_ts"])
    assert "prod is frozen: held by U0EVE" in bot.fake.wait_for(lambda: ephemerals(bot, PM, m))[0]
    bot.settle()
    assert not [a for a in actions(bot) if a[1] == "deploy_started"] and not hosts[0].current()
    bot.slack.command("/deploy", "unlock prod", EVE)
    bot.slack.click("approve", str(deployment_id(first)), PM, first.params["_ts"])
    assert "Succeeded* in" in wait_final(bot, first.params["_ts"]).text
    assert hosts[0].answering() == "v1.0.0"

    # the artifact vanished after the request was shown
    mark = bot.fake.mark()
    bot.slack.command("/deploy", "prod v1.1.0", DEV)
    req = request_message(bot, mark)
    (own / "sampleapp-v1.1.0.tar.gz").unlink()
    m = bot.fake.mark()
    bot.slack.click("approve", str(deployment_id(req)), PM, req.params["_ts"])
    assert "artifact for v1.1.0 not found" in bot.fake.wait_for(lambda: ephemerals(bot, PM, m))[0]
    bot.settle()
    assert len([a for a in actions(bot) if a[1] == "deploy_started"]) == 1
    assert [a[1:] for a in actions(bot) if a[0] == PM] == [
        ("approved", "approve"),
        ("refused", "refused"),
        ("approved", "approve"),
        ("refused", "refused"),
    ]
    assert hosts[0].answering() == "v1.0.0"


def test_a_channel_that_refuses_the_bot_ends_the_retries_and_tells_the_requester(world, hosts):
    bot = world(hosts[:1], approval={"approvers": [PM]})
    bot.fake.refusing["C0DEPLOY"] = "not_in_channel"
    bot.slack.command("/deploy", "prod v1.0.0", DEV)
    told = bot.fake.wait_for(lambda: next((t for t in ephemerals(bot, DEV) if "cannot post" in t), None), 20)
    assert "not_in_channel" in told and "/invite @deploybot" in told
    tries = len([c for c in bot.fake.calls if c.method == "chat.postMessage"])
    time.sleep(5)  # the board would have retried twice by now, were it still trying
    assert len([c for c in bot.fake.calls if c.method == "chat.postMessage"]) == tries == 1
