"""Rolling with drain, end to end: deploybot takes each batch out of a real balancer (HAProxy's runtime API, or
nginx's upstream file and a graceful reload), waits for its requests in flight, switches, restarts, checks
health, and puts it back. Under steady load through the balancer no request fails, on success and when a batch
fails and is reverted. Real hosts, real processes, real balancers on this machine."""

from __future__ import annotations

import pytest

from bot.domain import State
from bot.traffic.base import READY, Backend, poll
from tests.balancers import Load, require, started_balancer


@pytest.mark.parametrize("kind", ["haproxy", "nginx"])
def test_rolling_with_drain_loses_no_request_deploying_reverting_or_rolling_back(
    kind, hosts, make_config, service, tmp_path
):
    require(kind)
    three = hosts[:3]
    lb, traffic = started_balancer(kind, three, tmp_path / kind)
    try:
        svc = service(
            make_config(hosts=three, strategy={"kind": "rolling", "batch_size": 1}, traffic=traffic, verify_seconds=0.5)
        )
        assert svc.deploy("prod", "v1.0.0", "cli:test").state is State.SUCCEEDED
        backends = [Backend(h.name, h.address, 8000) for h in three]
        balance = lb.traffic(backends)
        assert poll(lambda: all(s.state == READY for s in balance.stats().values()), 15), balance.stats()

        with Load(lb.url + "/", threads=4, max_requests=20_000, max_seconds=90, pause=0.005) as load:
            deployed = svc.deploy("prod", "v1.1.0", "cli:test")
        replies = load.replies
        assert deployed.state is State.SUCCEEDED, deployed.error
        assert [h.answering() for h in three] == ["v1.1.0"] * 3
        failed = [r for r in replies if not r.ok]
        assert len(replies) > 200 and failed == [], (len(replies), failed[:3])
        drains = [s.host for s in svc.store.stages(deployed.id) if s.stage == "drain"]
        assert drains == [h.name for h in three]  # one host out at a time, in batch order

        with (three[1].srv / "app" / "shared" / ".env").open("a") as f:
            f.write("UNHEALTHY_VERSIONS=v1.2.0\n")  # the second batch fails its health check
        with Load(lb.url + "/", threads=4, max_requests=20_000, max_seconds=90, pause=0.005) as load:
            reverted = svc.deploy("prod", "v1.2.0", "cli:test")
        assert reverted.state is State.ROLLED_BACK and reverted.failed_host == three[1].name
        assert [h.answering() for h in three] == ["v1.1.0"] * 3
        failed = [r for r in load.replies if not r.ok]
        assert len(load.replies) > 100 and failed == [], (len(load.replies), failed[:3])
        assert poll(lambda: all(s.state == READY for s in balance.stats().values()), 15), balance.stats()

        with Load(lb.url + "/", threads=4, max_requests=20_000, max_seconds=90, pause=0.005) as load:
            back = svc.rollback("prod", "cli:test", "v1.0.0")  # batch by batch too: never every host out at once
        assert back.state is State.SUCCEEDED and [h.answering() for h in three] == ["v1.0.0"] * 3
        assert [r for r in load.replies if not r.ok] == [] and len(load.replies) > 50
    finally:
        lb.stop()
