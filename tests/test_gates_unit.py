"""Unit tests of canary and gates on the in-memory fleet (tests/memory_fleet.py): the canary batch serves alone
under the gates before the rest, a tripped gate reverts only what switched, the same gates run in the
verification window of a plain rolling deploy, and the config refuses gates it cannot read. No root: seconds.
The same behaviours over real SSH and real balancers are in test_canary.py."""

from __future__ import annotations

import pytest

from bot.config import ConfigError, parse_config
from bot.domain import State
from bot.engine.events import EventBus, StageFinished, StageStarted
from bot.engine.pipeline import Pipeline
from bot.traffic.base import READY, BackendStats
from tests.memory_fleet import MemoryBalancer, MemoryFleet
from tests.test_pipeline_unit import HOSTS, deploy_plan, environment

TG = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/shop/0123456789abcdef"
TRAFFIC = {"balancer": "haproxy", "socket": "/run/haproxy.sock", "backend": "shop", "port": 8000}


class CountingBalancer(MemoryBalancer):
    """MemoryBalancer with stats(): every reading, each host in service has served 10 more requests, all of them
    5xx while it serves a version listed in `failing` (what HAProxy's hrsp_5xx would count)."""

    def __init__(self, fleet: MemoryFleet, failing: set[str] = frozenset(), **kw):
        super().__init__(**kw)
        self.fleet, self.failing = fleet, set(failing)
        self.counts: dict[str, list[int]] = {}

    def stats(self) -> dict[str, BackendStats]:
        out = {}
        for host in self.fleet.hosts.values():
            requests, errors = self.counts.setdefault(host.name, [0, 0])
            if host.name not in self.out:
                requests += 10
                errors += 10 if host.serving in self.failing else 0
            self.counts[host.name] = [requests, errors]
            out[host.name] = BackendStats(host.name, READY, 0, requests, errors)
        return out


def canary_env(**overrides):
    settings = {
        "strategy": {"kind": "canary", "canary_hosts": 1, "canary_seconds": 0.3, "batch_size": 2},
        "traffic": TRAFFIC,
        "gates": {"max_5xx": 0, "interval": 0.02},
    }
    return environment(**{**settings, **overrides})


def run(env, fleet, balancer):
    bus, seen = EventBus(), []
    bus.subscribe(seen.append)
    pipeline = Pipeline(deploy_plan(env), fleet, bus)
    pipeline.balancer.traffic = balancer
    return pipeline.run(), seen


def switched(fleet: MemoryFleet) -> list[str]:
    return sorted(h.name for h in fleet.hosts.values() if "switch" in h.ops())


def test_the_canary_serves_alone_under_the_gates_then_the_rest_follow_in_batches():
    env = canary_env()
    fleet = MemoryFleet(env.hosts, current="v1.0.0")
    balancer = CountingBalancer(fleet)
    outcome, events = run(env, fleet, balancer)
    assert outcome.state is State.SUCCEEDED, outcome.error
    assert {h.serving for h in fleet.hosts.values()} == {"v2.0.0"}
    assert [[h.name for h in b] for b in deploy_plan(env).batches()] == [
        ["10.9.0.1"],
        ["10.9.0.2", "10.9.0.3"],
        ["10.9.0.4"],
    ]
    canary = [(e.stage, e.host) for e in events if isinstance(e, StageFinished) and e.stage == "canary"]
    assert canary == [("canary", "10.9.0.1"), ("canary", None)]  # the first batch only, once
    # the canary's window ended before any other host left the balancer
    started = [(e.stage, e.host) for e in events if isinstance(e, StageStarted) and e.host]
    assert started.index(("canary", "10.9.0.1")) < started.index(("drain", "10.9.0.2"))
    assert "canary" in deploy_plan(env).stages


def test_a_tripped_canary_gate_reverts_the_canary_and_touches_no_other_host():
    env = canary_env()
    fleet = MemoryFleet(env.hosts, current="v1.0.0")
    balancer = CountingBalancer(fleet, failing={"v2.0.0"})
    outcome, _ = run(env, fleet, balancer)
    assert outcome.state is State.ROLLED_BACK and outcome.failed_stage == "canary"
    assert "balancer gate: 10 5xx answers from 10.9.0.1" in outcome.error and "gates.max_5xx: 0" in outcome.error
    assert switched(fleet) == ["10.9.0.1"] and outcome.reverted_hosts == ["10.9.0.1"]
    assert {h.serving for h in fleet.hosts.values()} == {"v1.0.0"} and balancer.out == set()
    assert outcome.gate["gate"]["name"] == "balancer" and outcome.gate["errors_5xx"] == 10


def test_the_error_rate_gate_counts_only_the_watched_hosts():
    env = canary_env(gates={"max_error_rate": 0.5, "interval": 0.02})
    fleet = MemoryFleet(env.hosts, current="v1.0.0")
    balancer = CountingBalancer(fleet, failing={"v1.0.0"})  # the old release errs elsewhere: not the canary's
    outcome, _ = run(env, fleet, balancer)
    assert outcome.state is State.SUCCEEDED, outcome.error


def test_the_gates_also_run_in_the_verification_window_of_a_rolling_deploy():
    env = environment(
        strategy={"kind": "rolling", "batch_size": 1},
        traffic=TRAFFIC,
        gates={"max_error_rate": 0.01, "interval": 0.02},
        verify_seconds=0.3,
    )
    fleet = MemoryFleet(env.hosts, current="v1.0.0")
    balancer = CountingBalancer(fleet, failing={"v2.0.0"})
    outcome, _ = run(env, fleet, balancer)
    assert outcome.state is State.ROLLED_BACK and outcome.failed_stage == "verify"
    assert "failed during the verification window: balancer gate: error rate 100.0%" in outcome.error
    assert {h.serving for h in fleet.hosts.values()} == {"v1.0.0"} and balancer.out == set()


def test_a_failing_gate_command_reverts_and_says_so():
    env = environment(gates={"command": "bin/smoke"}, verify_seconds=0.2)
    fleet = MemoryFleet(env.hosts, current="v1.0.0")
    fleet["10.9.0.3"].fail("gate_command")
    bus = EventBus()
    outcome = Pipeline(deploy_plan(env), fleet, bus).run()
    assert outcome.state is State.ROLLED_BACK and outcome.failed_stage == "verify"
    assert outcome.failed_host == "10.9.0.3" and "gates.command failed" in outcome.error
    assert outcome.gate["gate"]["name"] == "command"
    assert {h.serving for h in fleet.hosts.values()} == {"v1.0.0"}
    assert all([c.op for c in h.ran].count("gate_command") == 1 for h in fleet.hosts.values())


def test_the_dry_run_shows_the_canary_and_every_gate():
    env = canary_env(gates={"max_5xx": 0, "max_error_rate": 0.01, "command": "bin/smoke; rm -rf x"})
    text = "\n".join(deploy_plan(env).describe())
    assert "batch 1 (canary: serves alone for 0.3s under the gates): 10.9.0.1" in text
    assert "[canary]  (the first batch only)" in text
    assert "at most 0 5xx answers; an error rate of at most 0.01 from the balancer" in text
    assert "bin/smoke; rm -rf x" in text and "cd /srv/app/releases/v2.0.0" in text  # run in the new release


@pytest.mark.parametrize(
    "env, message",
    [
        ({"gates": {"max_5xx": 0}}, "need traffic:"),
        ({"gates": {"max_error_rate": 2}}, "less than or equal to 1"),
        ({"strategy": {"kind": "canary", "canary_hosts": 4}}, "must leave some of the 4 hosts"),
        ({"strategy": {"kind": "canary", "canary_seconds": 0}}, "greater than 0"),
        ({"migrations": "yes"}, "expand-contract"),
        (
            {"traffic": {"balancer": "nginx", "upstream_file": "/u.conf", "port": 8000}, "gates": {"max_5xx": 0}},
            "set traffic.access_log",
        ),
        (
            {
                "traffic": {"balancer": "target-group", "port": 8000, "target_group_arn": TG},
                "gates": {"max_error_rate": 0.1},
            },
            "HTTPCode_Target_5XX_Count",
        ),
    ],
)
def test_gates_and_canary_config_is_checked(env, message):
    with pytest.raises(ConfigError) as err:
        parse_config(
            {
                "app": {"name": "shop", "artifact": "/a/shop-{version}.tar.gz"},
                "environments": {
                    "prod": {
                        "hosts": HOSTS,
                        "path": "/srv/app",
                        "restart": "bin/restart",
                        "health": {"url": "http://{host}:8000/health"},
                        **env,
                    }
                },
            }
        )
    assert message in str(err.value)
