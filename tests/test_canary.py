"""Canary and gates, end to end over real SSH hosts and a real balancer (HAProxy's runtime API and stats, nginx's
upstream file and access log): the canary host serves alone under the gates while load goes through the
balancer; a version whose pages answer 500 (its /health fine) trips the balancer gate and only the canary is
reverted; a good version goes on to every host; the same gates end the verification window of a plain rolling
deploy; a failing smoke command reverts too."""

from __future__ import annotations

import json

import pytest

from bot.domain import State
from bot.traffic.base import READY, Backend, poll
from tests.balancers import Load, require, started_balancer

GATES = {"max_5xx": 0, "max_error_rate": 0.01, "interval": 0.2}


def erroring(host, version: str) -> None:
    """From now on `version` answers 500 on every page but /health on this host (sampleapp ERRORING_VERSIONS)."""
    with (host.srv / "app" / "shared" / ".env").open("a") as f:
        f.write(f"ERRORING_VERSIONS={version}\n")


def started_versions(host) -> str:
    """What the app's log says was started on the host (every start writes `sampleapp VERSION (...) pid`)."""
    log = host.srv / "app" / "shared" / "app.log"
    return log.read_text() if log.exists() else ""


def all_ready(lb, hosts) -> bool:
    stats = lb.traffic([Backend(h.name, h.address, 8000) for h in hosts]).stats()
    return all(stats[h.name].state == READY for h in hosts)


@pytest.mark.parametrize("kind", ["haproxy", "nginx"])
def test_a_canary_that_trips_a_gate_is_reverted_alone_and_a_good_one_goes_everywhere(
    kind, hosts, make_config, service, tmp_path
):
    require(kind)
    three = hosts[:3]
    lb, traffic = started_balancer(kind, three, tmp_path / kind)
    try:
        strategy = {"kind": "canary", "canary_hosts": 1, "canary_seconds": 2, "batch_size": 1}
        svc = service(make_config(hosts=three, strategy=strategy, traffic=traffic, gates=GATES, verify_seconds=0.3))
        assert svc.deploy("prod", "v1.0.0", "cli:test").state is State.SUCCEEDED
        assert poll(lambda: all_ready(lb, three), 15)

        erroring(three[0], "v1.1.0")  # the canary host: its pages fail under v1.1.0, its health does not
        with Load(lb.url + "/", threads=4, max_requests=5_000, max_seconds=60, pause=0.01):
            bad = svc.deploy("prod", "v1.1.0", "cli:test")
        assert bad.state is State.ROLLED_BACK and bad.failed_stage == "canary", (bad.state, bad.error)
        assert "failed during the canary window: balancer gate:" in bad.error and "gates.max_5xx: 0" in bad.error
        assert [h.answering() for h in three] == ["v1.0.0"] * 3
        switched = sorted({s.host for s in svc.store.stages(bad.id) if s.stage == "switch" and s.host})
        assert switched == [three[0].name]  # the rest were never touched
        assert "sampleapp v1.1.0" in started_versions(three[0])
        assert all("sampleapp v1.1.0" not in started_versions(h) for h in three[1:])
        assert poll(lambda: all_ready(lb, three), 15)  # the canary is back in service
        finished = [r for r in svc.store.audit_events(deployment_id=bad.id) if r.action == "deploy_finished"][0]
        assert finished.detail["gate"]["name"] == "balancer" and finished.detail["hosts"] == [three[0].name]
        assert finished.detail["errors_5xx"] >= 1

        with Load(lb.url + "/", threads=4, max_requests=5_000, max_seconds=60, pause=0.01) as load:
            good = svc.deploy("prod", "v1.2.0", "cli:test")
        assert good.state is State.SUCCEEDED, good.error
        assert [h.answering() for h in three] == ["v1.2.0"] * 3
        assert [r for r in load.replies if not r.ok] == [] and len(load.replies) > 50
        canary = [s.host for s in svc.store.stages(good.id) if s.stage == "canary" and s.host]
        assert canary == [three[0].name]
    finally:
        lb.stop()


def test_a_gate_tripping_in_the_verification_window_of_a_rolling_deploy_reverts(hosts, make_config, service, tmp_path):
    require("haproxy")
    three = hosts[:3]
    lb, traffic = started_balancer("haproxy", three, tmp_path / "haproxy")
    try:
        svc = service(
            make_config(
                hosts=three,
                strategy={"kind": "rolling", "batch_size": 1},
                traffic=traffic,
                gates=GATES,
                verify_seconds=2,
            )
        )
        assert svc.deploy("prod", "v1.0.0", "cli:test").state is State.SUCCEEDED
        assert poll(lambda: all_ready(lb, three), 15)
        erroring(three[1], "v1.1.0")
        with Load(lb.url + "/", threads=4, max_requests=5_000, max_seconds=60, pause=0.01):
            dep = svc.deploy("prod", "v1.1.0", "cli:test")
        assert dep.state is State.ROLLED_BACK and dep.failed_stage == "verify", (dep.state, dep.error)
        assert "failed during the verification window: balancer gate:" in dep.error
        assert [h.answering() for h in three] == ["v1.0.0"] * 3
        assert poll(lambda: all_ready(lb, three), 15)
    finally:
        lb.stop()


def test_a_failing_gate_command_reverts_every_host(hosts, make_config, service):
    two = hosts[:2]
    # run on each host, in the new release with shared/.env exported; what it prints must not leak the secret
    smoke = 'echo "smoke against $DATABASE_URL" >&2; curl -fsS -o /dev/null "http://127.0.0.1:$PORT/"'
    svc = service(make_config(hosts=two, gates={"command": smoke}, verify_seconds=1))
    assert svc.deploy("prod", "v1.0.0", "cli:test").state is State.SUCCEEDED
    erroring(two[1], "v1.1.0")
    dep = svc.deploy("prod", "v1.1.0", "cli:test")
    assert dep.state is State.ROLLED_BACK and dep.failed_stage == "verify" and dep.failed_host == two[1].name
    assert "gates.command failed" in dep.error and "500" in dep.error, dep.error
    assert [h.answering() for h in two] == ["v1.0.0"] * 2
    finished = [r for r in svc.store.audit_events(deployment_id=dep.id) if r.action == "deploy_finished"][0]
    assert finished.detail["gate"]["name"] == "command" and "500" in finished.detail["gate"]["reason"]
    trail = json.dumps([r.detail for r in svc.store.audit_events()]) + dep.error
    assert "s3cr3t" not in trail and "demo:***@db" in trail
