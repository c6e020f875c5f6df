"""App Home end to end: signed events, clicks and form submissions into the real WSGI app, the fake Slack Web API
recording what each user sees, real deploys over SSH to the namespace hosts. The Home's buttons must do exactly
what the slash commands do: the same checks, the same refusals, the same audit trail."""

from __future__ import annotations

import itertools
import json
import time

from tests.slack_client import TEAM, selected, text_input
from tests.test_slack_flow import DEV, EVE, PM, actions, deployment_id, ephemerals, request_message, wait_final, world

__all__ = ["world"]  # the fixture, shared with the Slack flow tests
_n = itertools.count(1)


# ---- what a user does on the Home tab, shaped as Slack sends it --------------------------------------------------
def open_home(bot, user: str) -> dict:
    """Open the tab; the view the bot publishes for `user`."""
    mark = bot.fake.mark()
    assert bot.slack.home_opened(user).status_code == 200
    return latest_home(bot, user, mark)


def latest_home(bot, user: str, since: int = 0) -> dict:
    def published() -> list:
        return [c for c in bot.fake.of("views.publish", since=since) if c.params["user_id"] == user]

    bot.fake.wait_for(published)
    bot.settle()  # and anything the action still redraws
    return published()[-1].params["view"]


def home_text(view: dict) -> str:
    out = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "text" and isinstance(value, str):
                    out.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(view["blocks"])
    return "\n".join(out)


def buttons(view: dict, env: str = "prod") -> list[str]:
    return [
        e["action_id"]
        for b in view["blocks"]
        if b.get("type") == "actions" and b.get("block_id") == f"home-{env}"
        for e in b["elements"]
    ]


def click_home(bot, view: dict, action_id: str, user: str, env: str = "prod"):
    """A button on the Home tab: block_actions with a view container (no channel, no message)."""
    n = next(_n)
    assert action_id in buttons(view, env), buttons(view, env)
    return bot.slack.payload(
        {
            "type": "block_actions",
            "team": TEAM,
            "api_app_id": "A0DEPLOYBOT",
            "token": "legacy-verification-token",
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": TEAM["id"]},
            "container": {"type": "view", "view_id": f"VHOME{n}"},
            "trigger_id": f"{n}.1732270000.{'h' * 32}",
            "enterprise": None,
            "is_enterprise_install": False,
            "view": {**view, "id": f"VHOME{n}", "team_id": TEAM["id"], "state": {"values": {}}, "hash": f"{n}.home"},
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": f"home-{env}",
                    "value": env,
                    "type": "button",
                    "text": {"type": "plain_text", "text": action_id},
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
    )


def opened_form(bot, since: int) -> dict:
    return bot.fake.wait_for(lambda: bot.fake.of("views.open", since=since))[0].params["view"]


def submit(bot, view: dict, values: dict, user: str, response_urls: list[dict] | None = None):
    """A form submission; with a conversations_select marked response_url_enabled Slack adds `response_urls`."""
    n = next(_n)
    return bot.slack.payload(
        {
            "type": "view_submission",
            "team": TEAM,
            "api_app_id": "A0DEPLOYBOT",
            "token": "legacy-verification-token",
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": TEAM["id"]},
            "trigger_id": f"{n}.1732270000.{'s' * 32}",
            "is_enterprise_install": False,
            "enterprise": None,
            "view": {
                "id": f"VF{n}",
                "team_id": TEAM["id"],
                "type": "modal",
                "blocks": view["blocks"],
                "private_metadata": view.get("private_metadata", ""),
                "callback_id": view["callback_id"],
                "state": {"values": {block: {block: value} for block, value in values.items()}},
                "hash": f"{n}.form",
                "title": view.get("title"),
                "close": view.get("close"),
                "submit": view.get("submit"),
                "previous_view_id": None,
                "root_view_id": f"VF{n}",
                "app_id": "A0DEPLOYBOT",
                "external_id": "",
                "app_installed_team_id": TEAM["id"],
                "bot_id": "B0BOT",
            },
            "response_urls": response_urls or [],
        }
    )


def channel_pick(channel: str) -> dict:
    return {"type": "conversations_select", "selected_conversation": channel}


def response_url_for(bot, channel: str, name: str) -> list[dict]:
    return [
        {
            "block_id": "channel",
            "action_id": "channel",
            "channel_id": channel,
            "response_url": bot.fake.response_url(name),
        }
    ]


def within_slack_limits(view: dict) -> None:
    assert len(view["blocks"]) <= 100
    texts = home_text(view).split("\n")
    assert all(len(t) <= 3000 for t in texts)
    for block in view["blocks"]:
        if block.get("type") == "section" and "text" in block:
            assert len(block["text"]["text"]) <= 3000


# ---- the dashboard ---------------------------------------------------------------------------------------------------
def test_home_shows_each_hosts_live_version_drift_and_the_last_deployments(world, hosts):
    two = hosts[:2]
    bot = world(two)  # no approval step: a deploy starts at once
    for version in ("v1.0.0", "v1.1.0"):
        mark = bot.fake.mark()
        bot.slack.command("/deploy", f"prod {version}", DEV)
        assert "Succeeded* in" in wait_final(bot, request_message(bot, mark).params["_ts"]).text
    two[1].run("cd /srv/app && ln -sfn releases/v1.0.0 current")  # someone flips h2 by hand

    view = open_home(bot, PM)
    text = home_text(view)
    assert view["type"] == "home"
    assert "`h1` current v1.1.0, answers v1.1.0" in text  # read live from the host
    assert "`h2` current v1.0.0" in text and "*drift*" in text
    assert "Not locked, nothing running" in text
    assert f"#2 deploy *v1.1.0* succeeded, by <@{DEV}>" in text and f"#1 deploy *v1.0.0* succeeded, by <@{DEV}>" in text
    assert buttons(view) == ["home_deploy", "home_rollback", "home_lock"]
    within_slack_limits(view)


# ---- lock and unlock ----------------------------------------------------------------------------------------------
def test_lock_from_home_freezes_the_environment_and_unlock_lifts_it(world, hosts):
    bot = world(hosts[:1], approval={"approvers": [PM]}, deployers=[DEV, PM])
    view = open_home(bot, PM)

    mark = bot.fake.mark()
    assert click_home(bot, view, "home_lock", PM).status_code == 200
    form = opened_form(bot, mark)
    assert form["callback_id"] == "home_lock_submit"
    r = submit(bot, form, {"reason": text_input("release freeze")}, PM)
    assert r.status_code == 200 and not r.text.strip(), r.text
    view = latest_home(bot, PM, mark)  # redrawn after the lock
    text = home_text(view)
    assert f":lock: *Locked* by <@{PM}>" in text and "release freeze" in text and "prod* locked" in text
    assert buttons(view) == ["home_deploy", "home_rollback", "home_unlock"]
    lock = bot.service.store.get_lock("prod")
    assert lock.kind == "manual" and lock.holder == PM and lock.reason == "release freeze"
    assert (PM, "locked", "locked") in actions(bot)

    # the freeze holds for the slash command too, and a second lock (a form left open) is refused in the form
    r = bot.slack.command("/deploy", "lock prod again", DEV)
    assert "prod is frozen: held by U0PM" in r.json()["text"]
    r = submit(bot, form, {"reason": text_input("again")}, DEV)
    assert r.json()["response_action"] == "errors" and "prod is frozen: held by U0PM" in r.json()["errors"]["reason"]

    mark = bot.fake.mark()
    assert click_home(bot, view, "home_unlock", DEV).status_code == 200
    text = home_text(latest_home(bot, DEV, mark))
    assert "prod* unlocked" in text and "Locked" not in text
    assert bot.service.store.get_lock("prod") is None
    assert (DEV, "unlocked", "unlocked") in actions(bot)
    mark = bot.fake.mark()
    click_home(bot, view, "home_unlock", DEV)  # a stale button: said plainly, nothing changes
    assert "prod was not locked" in home_text(latest_home(bot, DEV, mark))


# ---- deploy from the Home -------------------------------------------------------------------------------------------
def test_deploy_from_home_posts_the_request_in_the_chosen_channel(world, hosts):
    two = hosts[:2]
    bot = world(two, approval={"approvers": [PM]})
    view = open_home(bot, DEV)
    mark = bot.fake.mark()
    click_home(bot, view, "home_deploy", DEV)
    form = opened_form(bot, mark)
    picker = next(b for b in form["blocks"] if b.get("block_id") == "channel")["element"]
    assert form["callback_id"] == "home_deploy_submit" and json.loads(form["private_metadata"]) == {"env": "prod"}
    assert picker["type"] == "conversations_select" and picker["response_url_enabled"] is True
    assert "initial_conversation" not in picker  # nothing deployed from Slack yet

    # the checks of `/deploy` answer in the form; nothing is recorded
    r = submit(bot, form, {"version": text_input("$(reboot)"), "channel": channel_pick("C0OTHER")}, DEV)
    assert r.json()["response_action"] == "errors"
    assert "does not match the version pattern" in r.json()["errors"]["version"]
    r = submit(bot, form, {"version": text_input("v1.0.0"), "channel": {"type": "conversations_select"}}, DEV)
    assert r.json()["errors"] == {"channel": "Pick the channel to post the request in."}
    assert bot.service.environments.history("prod") == []

    mark = bot.fake.mark()
    r = submit(
        bot,
        form,
        {"version": text_input("v1.0.0"), "channel": channel_pick("C0OTHER")},
        DEV,
        response_url_for(bot, "C0OTHER", "home-deploy"),
    )
    assert r.status_code == 200 and not r.text.strip(), r.text
    req = request_message(bot, mark)
    assert req.params["channel"] == "C0OTHER" and req.buttons() == ["approve", "reject"]
    for h in two:
        assert f"`{h.name}`: nothing → *v1.0.0*" in req.text  # the same request `/deploy prod v1.0.0` posts
    dep = deployment_id(req)
    assert (DEV, "deploy_requested", "pending_approval") in actions(bot)
    text = home_text(latest_home(bot, DEV, mark))
    assert f"Deployment #{dep} (v1.0.0 to *prod*) is pending approval; its message is in <#C0OTHER>" in text

    bot.slack.click("approve", str(dep), PM, req.params["_ts"], channel="C0OTHER")
    assert "Succeeded* in" in wait_final(bot, req.params["_ts"]).text
    assert [h.answering() for h in two] == ["v1.0.0"] * 2

    # the next form starts in the channel prod was last deployed from
    view = open_home(bot, DEV)
    assert f"#{dep} deploy *v1.0.0* succeeded" in home_text(view)
    mark = bot.fake.mark()
    click_home(bot, view, "home_deploy", DEV)
    form = opened_form(bot, mark)
    assert (
        next(b for b in form["blocks"] if b.get("block_id") == "channel")["element"]["initial_conversation"]
        == "C0OTHER"
    )

    # a channel deploybot is not in: told privately there, as with the slash command
    bot.fake.refusing["C0PRIVATE"] = "not_in_channel"
    mark = bot.fake.mark()
    submit(
        bot,
        form,
        {"version": text_input("v1.1.0"), "channel": channel_pick("C0PRIVATE")},
        DEV,
        response_url_for(bot, "C0PRIVATE", "home-private"),
    )
    told = bot.fake.wait_for(lambda: [c for c in bot.fake.of("response_url", since=mark) if "cannot post" in c.text])
    assert "not_in_channel" in told[0].text and "/invite @deploybot" in told[0].text


def test_rollback_from_home_opens_the_rollback_form_for_the_last_channel(world, hosts):
    bot = world(hosts[:1])
    mark = bot.fake.mark()
    view = open_home(bot, DEV)
    click_home(bot, view, "home_rollback", DEV)  # nothing to roll back to: the `/rollback` refusal, on the Home
    assert "no previous good release of prod to roll back to" in home_text(latest_home(bot, DEV, mark))
    assert not bot.fake.of("views.open", since=mark)
    for version in ("v1.0.0", "v1.1.0"):
        mark = bot.fake.mark()
        bot.slack.command("/deploy", f"prod {version}", DEV)
        wait_final(bot, request_message(bot, mark).params["_ts"])
    mark = bot.fake.mark()
    click_home(bot, open_home(bot, DEV), "home_rollback", DEV)
    form = opened_form(bot, mark)  # the `/rollback` form, posting where prod was last deployed from
    assert json.loads(form["private_metadata"]) == {"env": "prod", "channel": "C0DEPLOY"}
    select = next(b for b in form["blocks"] if b.get("block_id") == "version")["element"]
    assert select["initial_option"]["value"] == "v1.0.0"
    r = submit(bot, form, {"version": selected("v1.0.0"), "reason": text_input("  ")}, DEV)
    assert r.json()["errors"] == {"reason": "Say why: it goes into the audit trail."}  # as the command's form says
    mark = bot.fake.mark()
    r = submit(bot, form, {"version": selected("v1.0.0"), "reason": text_input("checkout slow")}, DEV)
    assert r.status_code == 200 and not r.text.strip(), r.text
    msg = request_message(bot, mark)
    assert msg.params["channel"] == "C0DEPLOY"
    assert "Succeeded* in" in wait_final(bot, msg.params["_ts"]).text and hosts[0].answering() == "v1.0.0"
    assert "#3 rollback *v1.0.0*" in home_text(latest_home(bot, DEV, mark))  # the Home redrawn
    assert (DEV, "rollback_requested", "approved") in actions(bot)


# ---- who may: the same refusal as the slash command, and nothing changes -----------------------------------------
def test_a_user_who_may_not_deploy_is_refused_as_by_the_slash_command(world, hosts):
    bot = world(hosts[:1], approval={"approvers": [PM]}, deployers=[DEV, PM])
    mark = bot.fake.mark()
    bot.slack.command("/deploy", "prod v1.0.0", EVE)
    slash = bot.fake.wait_for(lambda: ephemerals(bot, EVE, mark))[0]
    assert "you are not allowed to deploy to prod" in slash

    view = open_home(bot, EVE)
    mark = bot.fake.mark()
    click_home(bot, view, "home_deploy", EVE)
    form = opened_form(bot, mark)
    r = submit(
        bot,
        form,
        {"version": text_input("v1.0.0"), "channel": channel_pick("C0DEPLOY")},
        EVE,
        response_url_for(bot, "C0DEPLOY", "home-eve"),
    )
    assert r.json() == {"response_action": "errors", "errors": {"version": "you are not allowed to deploy to prod"}}
    assert ":no_entry: you are not allowed to deploy to prod" in slash  # the very sentence the command answers
    bot.settle()
    assert bot.service.environments.history("prod") == []
    assert bot.fake.of("chat.postMessage", since=mark) == []
    assert hosts[0].current() is None
    refused = [a for a in actions(bot) if a[0] == EVE]
    assert refused == [(EVE, "refused", "refused"), (EVE, "refused", "refused")]


def test_the_deploy_form_asks_for_the_migration_confirmation_where_the_slash_command_would(world, hosts):
    three = hosts[:3]
    canary = {"kind": "canary", "canary_hosts": 1, "canary_seconds": 0.5, "batch_size": 1}
    bot = world(three, strategy=canary, migrations="unchecked", approval={"approvers": [PM]})
    mark = bot.fake.mark()
    click_home(bot, open_home(bot, DEV), "home_deploy", DEV)
    form = opened_form(bot, mark)
    within_slack_limits(form)
    assert [b.get("block_id") for b in form["blocks"] if b["type"] == "input"] == [
        "version",
        "channel",
        "confirm_migration",  # no alarms in this environment: no override field
    ]
    values = {"version": text_input("v1.0.0"), "channel": channel_pick("C0OTHER")}
    unchecked = {"type": "checkboxes", "selected_options": []}
    r = submit(bot, form, {**values, "confirm_migration": unchecked}, DEV)
    assert r.json()["response_action"] == "errors" and "old release keeps serving" in r.json()["errors"]["version"]
    assert bot.service.environments.history("prod") == []

    checked = {"type": "checkboxes", "selected_options": [{"value": "confirmed"}]}
    mark = bot.fake.mark()
    r = submit(bot, form, {**values, "confirm_migration": checked}, DEV, response_url_for(bot, "C0OTHER", "mig"))
    assert r.status_code == 200 and not r.text.strip(), r.text
    req = request_message(bot, mark)
    assert "the requester confirmed" in req.text
    bot.slack.click("approve", str(deployment_id(req)), PM, req.params["_ts"], channel="C0OTHER")
    assert "Succeeded* in" in wait_final(bot, req.params["_ts"]).text
    assert [h.answering() for h in three] == ["v1.0.0"] * 3
