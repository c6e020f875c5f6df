"""Unit tests of the pipeline's semantics on an in-memory fleet (tests/memory_fleet.py): batches, which hosts
revert and how, a failure at each phase, cancel at a boundary, and a dry run that prints what runs.
No root, no SSH: seconds. The same behaviours are shown over real SSH in test_deploy.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import parse_config
from bot.domain import Kind, Stage, State
from bot.engine.artifact import Artifact
from bot.engine.events import EventBus, RollbackStarted, StageFinished, StageStarted
from bot.engine.pipeline import Pipeline
from bot.engine.plan import Plan
from tests.memory_fleet import MemoryBalancer, MemoryFleet

HOSTS = [f"root@10.9.0.{i}" for i in range(1, 5)]


def environment(**overrides):
    env = {
        "hosts": HOSTS,
        "path": "/srv/app",
        "restart": "bin/restart",
        "migrate": "bin/migrate",
        "health": {"url": "http://{host}:8000/health", "timeout": 0.2, "interval": 0.01},
        "verify_seconds": 0.05,
        **overrides,
    }
    return parse_config(
        {"app": {"name": "shop", "artifact": "/a/shop-{version}.tar.gz"}, "environments": {"prod": env}}
    ).environments["prod"]


def deploy_plan(env, version="v2.0.0", **kw) -> Plan:
    artifact = Artifact(f"/a/shop-{version}.tar.gz", "0" * 64, 10, Path(f"/a/shop-{version}.tar.gz"))
    return Plan(7, "shop", env, version, Kind.DEPLOY, artifact, expect_current=True, **kw)


def run(plan: Plan, fleet: MemoryFleet, cancel=lambda: False):
    bus, seen = EventBus(), []
    bus.subscribe(seen.append)
    if callable(fleet):
        bus.subscribe(fleet)
    return Pipeline(plan, fleet, bus, cancel_requested=cancel).run(), seen


def stage_order(events) -> list[str]:
    return [e.stage for e in events if isinstance(e, StageStarted) and e.host is None]


def test_a_deploy_walks_the_flow_table_in_order_on_every_host():
    env = environment()
    fleet = MemoryFleet(env.hosts, current="v1.0.0")
    outcome, events = run(deploy_plan(env), fleet)
    assert outcome.state is State.SUCCEEDED and outcome.previous_version == "v1.0.0"
    assert stage_order(events) == [
        "preflight",
        "backup",
        "upload",
        "migrate",
        "switch",
        "restart",
        "health",
        "verify",
        "cleanup",
    ]
    h1, h2 = fleet["10.9.0.1"], fleet["10.9.0.2"]
    assert h1.ops() == ["preflight", "backup", "upload", "put", "upload", "migrate", "switch", "restart", "cleanup"]
    assert "migrate" not in h2.ops()  # migrate_on: first
    assert {h.current for h in fleet.hosts.values()} == {"v2.0.0"}


def test_the_dry_run_prints_the_commands_that_run():
    env = environment()
    plan = deploy_plan(env)
    fleet = MemoryFleet(env.hosts, current="v1.0.0")
    run(plan, fleet)
    described = "\n".join(plan.describe())
    for command in fleet["10.9.0.1"].ran:
        if command.op not in ("backup", "cleanup"):  # these name the current release, unknown before preflight
            assert "\n".join("    " + line for line in command.shell.splitlines()) in described, command.op


@pytest.mark.parametrize("stage", ["preflight", "backup", "upload", "put", "migrate"])
def test_a_failure_before_publishing_changes_nothing_that_serves(stage):
    env = environment()
    fleet = MemoryFleet(env.hosts, current="v1.0.0")
    failing = "10.9.0.1" if stage == "migrate" else "10.9.0.2"  # migrations run on the first host
    fleet[failing].fail(stage)
    outcome, events = run(deploy_plan(env), fleet)
    assert outcome.state is State.FAILED and outcome.failed_host == failing
    assert outcome.failed_stage == ("upload" if stage == "put" else stage)
    assert all("switch" not in h.ops() for h in fleet.hosts.values())
    assert {h.serving for h in fleet.hosts.values()} == {"v1.0.0"}
    assert not any(isinstance(e, RollbackStarted) for e in events)


@pytest.mark.parametrize("stage", ["switch", "restart", "health", "verify"])
def test_a_failure_while_publishing_reverts_every_host_that_switched(stage):
    env = environment()
    fleet = MemoryFleet(env.hosts, current="v1.0.0")
    host = fleet["10.9.0.3"]
    if stage == "health":
        host.unhealthy.add("v2.0.0")
    elif stage in ("switch", "restart"):
        host.fail(stage, "v2.0.0")
    outcome, _ = run(deploy_plan(env), FlappingDuringVerify(fleet, host) if stage == "verify" else fleet)
    assert outcome.state is State.ROLLED_BACK and outcome.failed_stage == stage
    assert outcome.failed_host == "10.9.0.3"
    switched = {h.name for h in fleet.hosts.values() if "switch" in h.ops()}
    assert set(outcome.reverted_hosts) <= switched
    assert {h.current for h in fleet.hosts.values()} == {"v1.0.0"}
    for h in fleet.hosts.values():
        if h.name in outcome.reverted_hosts:  # the revert is publishing again, with the previous release
            tail = [(str(c.op), c.version) for c in h.ran][-3:]
            assert tail == [("switch", "v1.0.0"), ("restart", "v1.0.0"), ("health", "v1.0.0")] or tail[-2:] == [
                ("switch", "v1.0.0"),
                ("restart", "v1.0.0"),
            ]


class FlappingDuringVerify:
    """The fleet, but `host` turns unhealthy once the verification window has begun: healthy at the gate."""

    def __init__(self, fleet: MemoryFleet, host):
        self.fleet, self.host = fleet, host

    def __call__(self, event) -> None:  # subscribed to the pipeline's events
        if isinstance(event, StageStarted) and event.stage == "verify" and event.host is None:
            self.host.unhealthy.add("v2.0.0")

    def get(self, env, host):
        return self.fleet.get(env, host)

    def probe(self, url, cfg, expected, timeout=2.0):
        return self.fleet.probe(url, cfg, expected, timeout)


def test_rolling_reverts_only_the_batches_that_switched():
    env = environment(strategy={"kind": "rolling", "batch_size": 1})
    fleet = MemoryFleet(env.hosts, current="v1.0.0")
    fleet["10.9.0.2"].unhealthy.add("v2.0.0")
    outcome, events = run(deploy_plan(env), fleet)
    assert outcome.state is State.ROLLED_BACK and outcome.failed_host == "10.9.0.2"
    assert outcome.reverted_hosts == ["10.9.0.1", "10.9.0.2"]
    for name in ("10.9.0.3", "10.9.0.4"):  # the later batches were never touched after the upload
        assert "switch" not in fleet[name].ops() and "restart" not in fleet[name].ops()
    reverts = [e.host for e in events if isinstance(e, StageFinished) and e.stage == "revert" and e.host]
    assert sorted(reverts) == ["10.9.0.1", "10.9.0.2"]
    assert [e for e in events if isinstance(e, RollbackStarted)][0].to_version == "v1.0.0"


def test_cancel_at_a_boundary_before_any_switch_is_cancelled_and_touches_nothing():
    env = environment()
    fleet = MemoryFleet(env.hosts, current="v1.0.0")
    uploaded = {"n": 0}

    def after_upload() -> bool:
        uploaded["n"] = sum("upload" in h.ops() for h in fleet.hosts.values())
        return uploaded["n"] == len(fleet.hosts)

    outcome, _ = run(deploy_plan(env), fleet, cancel=after_upload)
    assert outcome.state is State.CANCELLED
    assert all("switch" not in h.ops() for h in fleet.hosts.values())


def test_cancel_between_batches_reverts_the_first_batch_only():
    env = environment(strategy={"kind": "rolling", "batch_size": 2})
    fleet = MemoryFleet(env.hosts, current="v1.0.0")
    outcome, _ = run(deploy_plan(env), fleet, cancel=lambda: fleet["10.9.0.1"].current == "v2.0.0")
    assert outcome.state is State.ROLLED_BACK and outcome.reverted_hosts == ["10.9.0.1", "10.9.0.2"]
    assert all("switch" not in fleet[n].ops() for n in ("10.9.0.3", "10.9.0.4"))
    assert {h.current for h in fleet.hosts.values()} == {"v1.0.0"}


def test_a_revert_that_fails_is_rollback_failed_and_names_the_host():
    env = environment()
    fleet = MemoryFleet(env.hosts, current="v1.0.0")
    fleet["10.9.0.1"].unhealthy.add("v2.0.0")
    fleet["10.9.0.4"].fail("switch", "v1.0.0")  # it can go forward but not back
    outcome, events = run(deploy_plan(env), fleet)
    assert outcome.state is State.ROLLBACK_FAILED
    failed = [e for e in events if isinstance(e, StageFinished) and e.stage == "revert" and e.host and not e.ok]
    assert [e.host for e in failed] == ["10.9.0.4"]
    assert fleet["10.9.0.4"].current == "v2.0.0" and fleet["10.9.0.1"].current == "v1.0.0"


def test_a_host_with_no_previous_release_cannot_be_reverted():
    env = environment()
    fleet = MemoryFleet(env.hosts)  # a first deploy: nothing to go back to
    fleet["10.9.0.1"].unhealthy.add("v2.0.0")
    outcome, _ = run(deploy_plan(env), fleet)
    assert outcome.state is State.ROLLBACK_FAILED


def test_a_rollback_is_the_same_flow_with_reverting_in_place_of_updating():
    env = environment(backup={"restore_commands": ["restore"]})
    fleet = MemoryFleet(env.hosts, current="v2.0.0")
    for h in fleet.hosts.values():
        h.releases.add("v1.0.0")
    plan = Plan(8, "shop", env, "v1.0.0", Kind.ROLLBACK, restore_db_from="v1.0.0")
    assert [line for line in plan.describe() if line.startswith("phases:")] == [
        "phases: starting -> reverting -> publishing"
    ]
    outcome, events = run(plan, fleet)
    assert outcome.state is State.SUCCEEDED
    assert stage_order(events) == ["preflight", "restore_db", "switch", "restart", "health"]
    assert fleet["10.9.0.1"].ops().count("restore_db") == 1 and "restore_db" not in fleet["10.9.0.2"].ops()
    assert {h.serving for h in fleet.hosts.values()} == {"v1.0.0"}


def test_a_rollback_to_a_release_a_host_lacks_fails_in_preflight():
    env = environment()
    fleet = MemoryFleet(env.hosts, current="v2.0.0")
    outcome, _ = run(Plan(8, "shop", env, "v1.0.0", Kind.ROLLBACK), fleet)
    assert outcome.state is State.FAILED and outcome.failed_stage == Stage.PREFLIGHT
    assert all("switch" not in h.ops() for h in fleet.hosts.values())


def test_a_failed_cleanup_does_not_fail_the_deploy():
    env = environment()
    fleet = MemoryFleet(env.hosts, current="v1.0.0")
    fleet["10.9.0.1"].fail("cleanup")
    outcome, _ = run(deploy_plan(env), fleet)
    assert outcome.state is State.SUCCEEDED


# ---- rolling with drain: a balancer in front of the hosts ---------------------------------------------------------
def balanced(strategy_batch: int = 1, **overrides):
    return environment(
        strategy={"kind": "rolling", "batch_size": strategy_batch},
        traffic={"balancer": "haproxy", "socket": "/run/haproxy.sock", "backend": "shop", "port": 8000},
        **overrides,
    )


def run_balanced(plan: Plan, fleet: MemoryFleet, balancer: MemoryBalancer):
    bus, seen = EventBus(), []
    bus.subscribe(seen.append)
    pipeline = Pipeline(plan, fleet, bus)
    pipeline.balancer.traffic = balancer  # the run's balancer, already open
    return pipeline.run(), seen


def test_each_batch_leaves_the_balancer_before_its_switch_and_returns_once_healthy():
    env = balanced()
    fleet, balancer = MemoryFleet(env.hosts, current="v1.0.0"), MemoryBalancer()
    outcome, events = run_balanced(deploy_plan(env), fleet, balancer)
    assert outcome.state is State.SUCCEEDED and balancer.out == set()
    order = [(e.stage, e.host) for e in events if isinstance(e, StageFinished) and e.host]
    for h in (f"10.9.0.{i}" for i in range(1, 5)):
        mine = [stage for stage, host in order if host == h and stage in ("drain", "switch", "health", "restore")]
        assert mine == ["drain", "switch", "health", "restore"], (h, mine)
    drains = [n for op, n in balancer.calls if op == "drain"]
    restores = [n for op, n in balancer.calls if op == "restore"]
    assert drains == restores == [f"10.9.0.{i}" for i in range(1, 5)]  # one host out at a time, in batch order
    assert "[drain]" in "\n".join(deploy_plan(env).describe())


def test_a_failing_batch_is_reverted_then_put_back_and_later_batches_never_leave():
    env = balanced()
    fleet, balancer = MemoryFleet(env.hosts, current="v1.0.0"), MemoryBalancer()
    fleet["10.9.0.2"].unhealthy.add("v2.0.0")
    outcome, _ = run_balanced(deploy_plan(env), fleet, balancer)
    assert outcome.state is State.ROLLED_BACK and outcome.reverted_hosts == ["10.9.0.1", "10.9.0.2"]
    assert balancer.out == set() and {h.serving for h in fleet.hosts.values()} == {"v1.0.0"}
    assert not any(n in ("10.9.0.3", "10.9.0.4") for _, n in balancer.calls)


def test_a_host_the_balancer_cannot_drain_fails_before_any_switch_and_the_drained_return():
    env = balanced(strategy_batch=2)
    fleet, balancer = MemoryFleet(env.hosts, current="v1.0.0"), MemoryBalancer(refuse="10.9.0.2")
    outcome, _ = run_balanced(deploy_plan(env), fleet, balancer)
    assert outcome.state is State.FAILED and outcome.failed_stage == "drain" and "refused" in outcome.error
    assert all("switch" not in h.ops() for h in fleet.hosts.values())
    assert balancer.out == set()  # 10.9.0.1 had left: it is back in service


def test_when_the_last_batch_fails_the_revert_walks_the_hosts_in_batches_too():
    env = balanced()
    fleet, balancer = MemoryFleet(env.hosts, current="v1.0.0"), MemoryBalancer()
    fleet["10.9.0.4"].unhealthy.add("v2.0.0")
    outcome, _ = run_balanced(deploy_plan(env), fleet, balancer)
    assert outcome.state is State.ROLLED_BACK and len(outcome.reverted_hosts) == 4
    assert balancer.out == set() and balancer.most_out == 1
    assert {h.serving for h in fleet.hosts.values()} == {"v1.0.0"}


def test_a_rollback_behind_a_balancer_goes_batch_by_batch():
    env = balanced()
    fleet, balancer = MemoryFleet(env.hosts, current="v2.0.0"), MemoryBalancer()
    for h in fleet.hosts.values():
        h.releases.add("v1.0.0")
    outcome, _ = run_balanced(Plan(8, "shop", env, "v1.0.0", Kind.ROLLBACK), fleet, balancer)
    assert outcome.state is State.SUCCEEDED and balancer.most_out == 1 and balancer.out == set()
    assert {h.serving for h in fleet.hosts.values()} == {"v1.0.0"}
