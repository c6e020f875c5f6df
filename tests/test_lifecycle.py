"""Unit tests of the lifecycle and the use cases around it, on a real SQLite file and an in-memory fleet:
states move only through the transitions table; audit rows, the lock and the final event hang off it."""

from __future__ import annotations

import pytest

from bot.config import parse_config
from bot.domain import AuditAction, Kind, State
from bot.engine.events import DeploymentFinished, EventBus, RollbackStarted
from bot.executors import Busy
from bot.service import DeployService, Refused
from bot.service.lifecycle import TRANSITIONS, Lifecycle, Transition
from bot.store import Store
from tests.memory_fleet import MemoryFleet

DEV, PM = "U0DEV", "U0PM"


@pytest.fixture
def store(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'lifecycle.db'}") as s:
        yield s


def new(store: Store, state: State, kind: Kind = Kind.DEPLOY):
    return store.create_deployment(
        app="shop", environment="prod", version="v2.0.0", kind=kind, requested_by=DEV, state=state
    )


@pytest.mark.parametrize("transition", list(Transition))
def test_a_transition_fires_only_from_its_sources(store, transition):
    rule, bus, finished = TRANSITIONS[transition], EventBus(), []
    bus.subscribe(lambda e: finished.append(e) if isinstance(e, DeploymentFinished) else None)
    lifecycle = Lifecycle(store, bus)
    for state in State:
        dep = new(store, state)
        store.acquire_lock("prod", holder=DEV, reason="test", deployment_id=dep.id)
        rows_before = len(store.audit_events())
        after = lifecycle.fire(dep, transition, DEV)
        if state not in rule.sources:
            assert after is None and store.get(dep.id).state is state
            assert len(store.audit_events()) == rows_before and store.get_lock("prod") is not None
        else:
            assert after is not None and after.state is rule.target
            assert (store.get_lock("prod") is None) == rule.target.is_final
            rows = store.audit_events()[rows_before:]
            assert len(rows) <= 1 and all(AuditAction(r.action) for r in rows)
            if rule.target.is_final and rule.sources <= {State.RUNNING, State.ROLLING_BACK}:
                assert rows and finished and finished[-1].deployment_id == dep.id
        store.release_lock("prod")
    assert all(not TRANSITIONS[t].sources & {s for s in State if s.is_final} for t in Transition)


def test_racing_transitions_have_one_winner(store):
    lifecycle = Lifecycle(store, EventBus())
    dep = new(store, State.PENDING_APPROVAL)
    assert lifecycle.fire(dep, Transition.APPROVE, PM) is not None
    assert lifecycle.fire(dep, Transition.REJECT, PM) is None and store.get(dep.id).state is State.APPROVED


@pytest.fixture
def service(tmp_path, store):
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    for v in ("v1.0.0", "v2.0.0"):
        (artifacts / f"shop-{v}.tar.gz").write_bytes(v.encode())
    config = parse_config(
        {
            "app": {"name": "shop", "artifact": str(artifacts / "shop-{version}.tar.gz")},
            "environments": {
                "prod": {
                    "hosts": ["root@10.9.0.1", "root@10.9.0.2"],
                    "path": "/srv/app",
                    "restart": "bin/restart",
                    "health": {"url": "http://{host}:8000/health", "timeout": 0.2, "interval": 0.01},
                    "approval": {"approvers": [PM]},
                }
            },
        }
    )
    fleet = MemoryFleet(config.environments["prod"].hosts)
    svc = DeployService(config, store, pool=fleet)
    svc.fleet = fleet
    return svc


def test_approval_starts_the_run_through_the_service(service):
    dep = service.requests.deploy("prod", "v1.0.0", DEV)
    assert dep.state is State.PENDING_APPROVAL
    service.requests.proceed(dep.id)  # the approval message's snapshot of the hosts
    assert service.store.get(dep.id).meta["hosts_now"] == {"10.9.0.1": None, "10.9.0.2": None}
    result = service.approvals.approve(dep.id, PM)
    assert result.started and service.store.get(dep.id).state is State.SUCCEEDED  # run inline here
    assert {h.serving for h in service.fleet.hosts.values()} == {"v1.0.0"}
    actions = [(e.actor, e.action) for e in service.store.audit_events(deployment_id=dep.id)]
    assert actions == [(DEV, "deploy_requested"), (PM, "approved"), (DEV, "deploy_started"), (DEV, "deploy_finished")]
    assert service.store.get_lock("prod") is None


def test_an_automatic_rollback_is_rolling_back_while_it_runs_never_failed(service):
    service.deploy("prod", "v1.0.0", "cli:ops")
    service.fleet["10.9.0.2"].unhealthy.add("v2.0.0")
    seen = []
    service.events.subscribe(
        lambda e: (
            seen.append(service.store.get(e.deployment_id).state)
            if isinstance(e, RollbackStarted | DeploymentFinished)
            else None
        )
    )
    dep = service.deploy("prod", "v2.0.0", "cli:ops")
    assert dep.state is State.ROLLED_BACK and seen == [State.ROLLING_BACK, State.ROLLED_BACK]
    trail = [(e.actor, e.action, e.outcome) for e in service.store.audit_events(deployment_id=dep.id)]
    assert ("deploybot", "auto_rollback_started", "rolling_back") in trail  # the bot did it, not the requester
    assert trail[-1] == ("cli:ops", "deploy_finished", "rolled_back")


def test_no_room_to_run_cancels_the_approved_deployment_and_frees_the_lock(service):
    def full(job):
        raise Busy("deploy executor is full")

    service.runs.launch = full
    dep = service.requests.deploy("prod", "v1.0.0", DEV)
    with pytest.raises(Refused, match="ask again in a minute"):
        service.approvals.approve(dep.id, PM)
    assert service.store.get(dep.id).state is State.CANCELLED and service.store.get_lock("prod") is None


def test_every_refusal_is_audited(service):
    attempts = [
        lambda: service.requests.deploy("nosuch", "v1.0.0", DEV),
        lambda: service.requests.deploy("prod", "v1.0.0;id", DEV),
        lambda: service.rollback("prod", DEV),  # nothing to roll back to
        lambda: service.locks.lock("prod", DEV, " "),
        lambda: service.approvals.abort(service.requests.deploy("prod", "v1.0.0", DEV).id, DEV),
    ]
    for attempt in attempts:
        before = len(service.store.audit_events())
        with pytest.raises(Refused):
            attempt()
        assert service.store.audit_events()[-1].outcome == "refused", service.store.audit_events()[before:]
