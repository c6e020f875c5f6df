"""Runs: an approved deployment executed to its end through the lifecycle, launched where the front end says
(the Slack bot's deploy executor, or inline for the CLI), stopping at a stage boundary when asked."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from bot.domain import DeploymentRecord, Kind, State
from bot.engine import slots
from bot.engine.events import Event, RollbackStarted
from bot.engine.plan import Plan
from bot.executors import Busy
from bot.redact import redact
from bot.service.base import Refused, UseCases
from bot.service.lifecycle import BOT, Transition

log = logging.getLogger(__name__)
Launcher = Callable[[Callable[[], None]], object]  # e.g. an executor's submit; raises Busy when full
RESTARTING = "deploybot is restarting; ask again in a minute"
ENDING = {State.SUCCEEDED: Transition.SUCCEED, State.FAILED: Transition.FAIL, State.CANCELLED: Transition.STOP}


def inline(job: Callable[[], None]) -> None:
    job()


class Runs(UseCases):
    def __init__(self, ctx, plan_deploy: Callable[..., Plan]):
        super().__init__(ctx)
        self.plan_deploy = plan_deploy
        self.launch: Launcher = inline
        self.stopping = threading.Event()  # shutting down: every run stops at its next stage boundary
        self._running: set[int] = set()
        self.events.subscribe(self._on_event)

    def start(self, deployment_id: int) -> None:
        """Run an approved deployment where the front end runs deployments. When there is no room, the deployment
        is cancelled (its lock released) and the requester is told to ask again."""

        def job() -> None:
            try:
                self.run(deployment_id)
            except Refused as exc:
                log.info("deployment #%s not run: %s", deployment_id, exc)
            except Exception:
                log.exception("deployment #%s crashed", deployment_id)

        try:
            self.launch(job)
        except Busy:
            dep = self.deployment(deployment_id)
            message = "deploybot is running as many deployments as it can; ask again in a minute"
            self.lifecycle.fire(dep, Transition.CANCEL, BOT, error=message, detail={"reason": message})
            raise Refused(message) from None

    def run(self, deployment_id: int) -> DeploymentRecord:
        """Execute an approved deployment to its end; the lifecycle releases the lock on every path."""
        from bot.engine.artifact import release_artifact
        from bot.engine.pipeline import Outcome, Pipeline

        dep = self.deployment(deployment_id)
        if self.stopping.is_set():  # shutting down: a deployment that has not started does not start now
            self.lifecycle.fire(dep, Transition.CANCEL, BOT, error=RESTARTING, detail={"reason": RESTARTING})
            raise Refused(RESTARTING)
        # the alarms are read again as the run starts: one may have fired since the request
        gate = (
            self.alarm_gate(self.config.environments[dep.environment], dep.meta.get("override_alarms", ""))
            if dep.kind is Kind.DEPLOY and dep.environment in self.config.environments
            else None
        )
        if gate and gate.refused:
            self.lifecycle.fire(
                dep, Transition.CANCEL, BOT, error=gate.refusal, detail={"reason": gate.refusal, **gate.detail}
            )
            raise Refused(gate.refusal)
        running = self.lifecycle.fire(dep, Transition.START, dep.requested_by, detail=gate.detail if gate else None)
        if running is None:
            raise Refused(f"deployment #{dep.id} is {self.deployment(dep.id).state.words}, not approved")
        self.store.update_meta(dep.id, owner=self.leases.owner)
        self._running.add(dep.id)
        outcome, plan, fleet = Outcome(State.FAILED, error="internal error"), None, self.ctx.pool
        try:
            plan = self.plan_for(running)
            fleet = self._offsite(plan, running)
            pipeline = Pipeline(plan, fleet, self.events, cancel_requested=self._abort_flag(dep.id))
            pipeline.windows.add(*self._alarm_gates(dep, gate))
            outcome = pipeline.run()
        except Refused as exc:
            outcome = Outcome(State.FAILED, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - record, never lose the deployment
            outcome = Outcome(State.FAILED, error=redact(f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            self._running.discard(dep.id)
            self._finish(running, outcome, {**outcome.gate, **self._offsite_records(dep.id, fleet)})
            self.leases.released(dep.id)
            release_artifact(plan.artifact if plan else None)
            if plan and plan.shared_env:
                plan.shared_env.close()
        return self.deployment(dep.id)

    def _offsite(self, plan: Plan, dep: DeploymentRecord):
        """With S3 backups or RDS snapshots, the fleet that carries them out from the bot; else the pool."""
        if plan.env.backup.s3 is None and plan.env.backup.rds_snapshot is None:
            return self.ctx.pool
        from bot.engine.offsite_fleet import OffsiteFleet

        restore = dep.meta.get("restore_snapshot")
        return OffsiteFleet(self.ctx.pool, plan, self.config.aws, restore, self.stopping.is_set)

    def _offsite_records(self, deployment_id: int, fleet) -> dict:
        """The S3 keys and RDS snapshot a run made, for its audit row and (the snapshot) a later rollback."""
        records = dict(getattr(getattr(fleet, "records", None), "data", {}))
        if records:
            try:
                self.store.update_meta(deployment_id, **records)
            except Exception:  # noqa: BLE001 - the audit row still names them
                log.warning("recording the backups of #%s in its meta failed", deployment_id, exc_info=True)
        return records

    def _alarm_gates(self, dep: DeploymentRecord, gate) -> list:
        """The CloudWatch alarms as one more gate of every gated window (canary, verification), for deploys with
        alarms; those overridden at the start do not trip it."""
        from bot.engine.gates import AlarmGate

        return [AlarmGate(gate.watch())] if gate is not None and dep.kind is Kind.DEPLOY else []

    def _on_event(self, event: Event) -> None:
        """The engine reports an automatic rollback once, as an event; the lifecycle records it."""
        if isinstance(event, RollbackStarted) and event.deployment_id in self._running:
            self.lifecycle.fire(
                self.deployment(event.deployment_id),
                Transition.REVERT,
                BOT,
                detail={"reason": event.reason, "hosts": list(event.hosts), "to": event.to_version},
            )

    def plan_for(self, dep: DeploymentRecord) -> Plan:
        if dep.kind is Kind.ROLLBACK:
            env = self.config.environments[dep.environment]
            hosts = tuple(self.hosts(env, dep.requested_by, dep.version))
            # blue-green: slots still running the release (kept warm) make the rollback only a flip
            blue_green = slots.is_blue_green(env) and not dep.restore_db
            warm = slots.warm(env, hosts, dep.version, self.ctx.pool) if blue_green else None
            return Plan(
                dep.id,
                self.config.app.name,
                env,
                dep.version,
                Kind.ROLLBACK,
                restore_db_from=dep.version if dep.restore_db else None,
                hosts=hosts,
                shared_env=None if warm else self.shared_env(env),
                warm_slots=warm,
            )
        return self.plan_deploy(dep.environment, dep.version, dep.requested_by, deployment_id=dep.id)

    def _finish(self, dep: DeploymentRecord, outcome, extra: dict | None = None, patience: float = 60.0) -> None:
        """Record the end. The store may be restarting: try again for `patience` seconds before giving up (the
        lease then lapses, and whoever takes the deployment over finds the hosts as this run left them)."""
        deadline = time.monotonic() + patience
        while True:
            try:
                return self._record_end(dep, outcome, extra or {})
            except Exception:
                if time.monotonic() > deadline:
                    raise
                log.warning("recording the end of #%s failed; the store may be restarting", dep.id, exc_info=True)
                time.sleep(1.0)

    def _record_end(self, dep: DeploymentRecord, outcome, extra: dict) -> None:
        fields = {"error": outcome.error, "failed_stage": outcome.failed_stage, "failed_host": outcome.failed_host}
        if outcome.previous_version and dep.kind is Kind.DEPLOY:
            fields["previous_version"] = outcome.previous_version
        current = self.deployment(dep.id)
        reverted = outcome.state in (State.ROLLED_BACK, State.ROLLBACK_FAILED)
        if reverted and current.state is State.RUNNING:  # the revert's own transition was lost (store down)
            current = self.lifecycle.fire(
                current, Transition.REVERT, BOT, detail={"reason": outcome.error, "hosts": outcome.reverted_hosts}
            ) or self.deployment(dep.id)
        if current.state is State.ROLLING_BACK:
            transition = Transition.REVERTED if outcome.state is State.ROLLED_BACK else Transition.REVERT_FAILED
        else:
            transition = ENDING.get(outcome.state, Transition.FAIL)
        self.lifecycle.fire(
            current,
            transition,
            dep.requested_by,
            seconds=outcome.seconds,
            detail={
                "seconds": round(outcome.seconds, 3),
                "failed_stage": outcome.failed_stage,
                "failed_host": outcome.failed_host,
                "error": redact(outcome.error)[:2000],
                "reverted_hosts": outcome.reverted_hosts,
                **extra,
            },
            **fields,
        )

    def _abort_flag(self, deployment_id: int, every: float = 0.5) -> Callable[[], bool]:
        """Whether the run must stop at the next boundary: this process is shutting down, another one took the
        lease over, or someone asked to abort (read from the store, since any replica may have taken the click, at
        most every `every` seconds: the verification window asks once per probe per host)."""
        guard, seen = threading.Lock(), {"at": float("-inf"), "abort": False}

        def requested() -> bool:
            if self.stopping.is_set() or self.leases.lost(deployment_id):
                return True
            with guard:
                if not seen["abort"] and time.monotonic() - seen["at"] >= every:
                    seen["at"] = time.monotonic()
                    try:
                        seen["abort"] = bool(self.store.get(deployment_id).meta.get("abort_requested_by"))
                    except Exception as exc:  # noqa: BLE001 - the store restarting is no reason to stop a deploy
                        log.warning("abort flag of #%s unreadable (%s); asking again later", deployment_id, exc)
                return seen["abort"]

        return requested
