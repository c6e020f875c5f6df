"""Two `deploybot serve` replicas on one PostgreSQL database, both receiving Slack requests, behave as one bot:
a request shown by one is approved on the other, simultaneous clicks on both start one run, and when the replica
running a deploy is SIGKILLed the other takes it over within the lease and leaves the hosts on a known version.
Real processes, a real PostgreSQL server, real SSH hosts; only Slack's Web API is the local fake."""

from __future__ import annotations

import signal
import threading
import time
from contextlib import ExitStack

from bot.store import Store
from tests.pg import create_database, pg_url  # noqa: F401  (session fixture)
from tests.serving import deploybot_serve, free_port
from tests.slack_api import FakeSlack
from tests.slack_client import SlackClient

SECRET = "replica-signing-secret"
DEV, PM = "U0DEV", "U0PM"


def approve_button(message) -> str:
    return next(
        e["value"]
        for b in message.params["blocks"]
        if b.get("type") == "actions"
        for e in b["elements"]
        if e["action_id"] == "approve"
    )


def test_two_replicas_on_postgres_behave_as_one_bot(hosts, make_config, cli_env, tmp_path, pg_url):  # noqa: F811
    two = hosts[:2]
    config = make_config(hosts=two, approval={"approvers": [PM]}, verify_seconds=30)
    db = create_database(pg_url)
    with FakeSlack() as fake, ExitStack() as stack:
        replicas, slacks = [], []
        for _ in range(2):
            port = free_port()
            env = {
                **cli_env(config),
                "DATABASE_URL": db,
                "SLACK_BOT_TOKEN": "xoxb-test",
                "SLACK_SIGNING_SECRET": SECRET,
                "SLACK_API_URL": fake.api_url,
                "DEPLOYBOT_LEASE_TTL": "3",
                "LOG_LEVEL": "WARNING",
            }
            replicas.append(stack.enter_context(deploybot_serve(env, tmp_path, port)))
            slacks.append(SlackClient(f"http://127.0.0.1:{port}", SECRET, fake.url + "/response"))
        a, b = slacks
        fake.wait_for(lambda: _up(a) and _up(b), timeout=60)

        # shown by replica a, approved by two simultaneous clicks (one on each replica): one run
        assert a.command("/deploy", "prod v1.0.0", DEV).status_code == 200
        first = fake.wait_for(lambda: _requests(fake))[0]
        ts, dep = first.params["_ts"], approve_button(first)
        clicks = [threading.Thread(target=s.click, args=("approve", dep, PM, ts)) for s in (a, b)]
        for t in clicks:
            t.start()
        for t in clicks:
            t.join()
        fake.wait_for(lambda: "Succeeded* in" in fake.message(ts).text, timeout=90)
        with Store(db) as store:
            trail = [(e.actor, e.action) for e in store.audit_events(deployment_id=int(dep))]
            assert trail.count((DEV, "deploy_started")) == 1 and trail.count((PM, "approved")) == 1
            assert len(store.approvals(int(dep))) == 1

        # shown by a, approved on b: b runs it; b is SIGKILLed in the verification window; a takes over
        mark = fake.mark()
        assert a.command("/deploy", "prod v1.1.0", DEV).status_code == 200
        second = fake.wait_for(lambda: _requests(fake, mark))[0]
        ts2 = second.params["_ts"]
        b.click("approve", approve_button(second), PM, ts2)
        fake.wait_for(lambda: "running: verify" in fake.message(ts2).text, timeout=90)
        assert [h.current() for h in two] == ["v1.1.0"] * 2
        killed_at = time.monotonic()
        replicas[1].send_signal(signal.SIGKILL)
        final = fake.wait_for(lambda: "rolled back" in fake.message(ts2).text and fake.message(ts2), timeout=30)
        assert time.monotonic() - killed_at < 3 + 10  # the lease, then the next sweep of replica a
        assert "abort" not in final.buttons()
    assert [h.current() for h in two] == ["v1.0.0"] * 2 and [h.answering() for h in two] == ["v1.0.0"] * 2
    with Store(db) as store:
        dep2 = store.list_deployments("prod", limit=1)[0]
        assert dep2.state.value == "rolled_back" and "stopped" in dep2.error
        assert store.get_lock("prod") is None and store.verify_audit().ok
        assert [e.actor for e in store.audit_events(deployment_id=dep2.id) if e.action == "auto_rollback_started"] == [
            "deploybot"
        ]


def _up(slack: SlackClient) -> bool:
    try:
        return slack.command("/deploy", "help", DEV).status_code == 200
    except OSError:
        return False


def _requests(fake: FakeSlack, since: int = 0) -> list:
    return [c for c in fake.of("chat.postMessage", since=since) if not c.params.get("thread_ts")]
