"""Recovery: a deployment whose process stopped (its lease expired) is taken over and left on a known version.

Only a process about to change something recovers (`deploybot serve` on its sweep, and the CLI's deploy, rollback,
lock and unlock); reading never does. The take-over is itself taken under the lock: one UPDATE guarded by the
lease's expiry, so of two recoverers exactly one proceeds. The policy is to revert, as an automatic rollback would:
every host that had switched to the new release is published again with the release it ran before (read from
that host's preflight record), the lock is released, the audit trail and the Slack message say what happened.
A deployment that never started is cancelled; a rollback is not reverted (that would bring back the release it
was undoing): it ends `interrupted` with what each host runs now, for someone to run /rollback again.
"""

from __future__ import annotations

import logging

from bot.domain import DeploymentRecord, Kind, Stage, State
from bot.engine import commands
from bot.service.base import UseCases
from bot.service.lifecycle import BOT, Transition

log = logging.getLogger(__name__)
STOPPED = "the bot running this deployment stopped"


class Recovery(UseCases):
    def __init__(self, ctx, environments, plan_for):
        super().__init__(ctx)
        self.environments, self.plan_for = environments, plan_for

    def orphans(self) -> list[DeploymentRecord]:
        """Take over every deployment whose lease expired; what each ended as."""
        done = []
        for lock in self.store.expired_leases():
            if lock.deployment_id is None or not self.store.take_over_lease(
                lock.environment, lock.deployment_id, self.leases.owner, self.leases.ttl
            ):
                continue  # renewed meanwhile, or another process won the take-over
            self.leases.holding(lock.deployment_id)
            try:
                done.append(self._take_over(self.deployment(lock.deployment_id)))
            except Exception:  # noqa: BLE001 - the lease lapses again and the next sweep retries
                log.exception("take-over of deployment #%s failed", lock.deployment_id)
            finally:
                self.leases.released(lock.deployment_id)
        return done

    def _take_over(self, dep: DeploymentRecord) -> DeploymentRecord:
        log.warning("deployment #%s (%s) lost its process; taking it over", dep.id, dep.state)
        if dep.state is State.APPROVED:
            self.lifecycle.fire(
                dep,
                Transition.CANCEL,
                BOT,
                error=f"{STOPPED} before it started",
                detail={"reason": f"{STOPPED} before it started"},
            )
            return self.deployment(dep.id)
        if not dep.state.is_active or dep.environment not in self.config.environments:
            self.store.release_lock(dep.environment, deployment_id=dep.id)
            return dep
        self._stop_leftovers(dep)
        now = {h.name: h.release for h in self.environments.live_hosts(dep.environment)}
        before = self._previous_releases(dep)
        switched = {
            h: before[h]
            for h, release in now.items()
            if dep.kind is Kind.DEPLOY and release == dep.version and before.get(h) not in (None, dep.version)
        }
        stuck = [
            h
            for h, release in now.items()
            if dep.kind is Kind.DEPLOY and release == dep.version and h not in switched and before.get(h) != dep.version
        ]
        if not switched and not stuck:
            self.lifecycle.fire(
                dep, Transition.INTERRUPT, BOT, error=STOPPED, detail={"hosts_now": now, "stage": dep.meta.get("stage")}
            )
            return self.deployment(dep.id)
        from bot.engine.pipeline import Pipeline

        reason = f"{STOPPED}; reverting {', '.join(sorted(switched)) or 'nothing'} to their previous release"
        if dep.state is State.RUNNING:
            self.lifecycle.fire(dep, Transition.REVERT, BOT, detail={"reason": reason, "hosts": sorted(switched)})
        said, reverted = [], True
        if switched:
            outcome = Pipeline(self.plan_for(dep), self.ctx.pool, self.events).revert(switched, reason)
            reverted = outcome.state is State.ROLLED_BACK
            to = ", ".join(sorted(set(switched.values())))
            said.append(
                f"hosts {', '.join(sorted(switched))} were reverted to {to}"
                if reverted
                else f"the revert failed: {outcome.error}"
            )
        if stuck:
            said.append(f"no previous release known for {', '.join(sorted(stuck))}: they stay on {dep.version}")
        error = f"{STOPPED}; " + "; ".join(said)
        ok = reverted and not stuck
        self.lifecycle.fire(
            self.deployment(dep.id),
            Transition.REVERTED if ok else Transition.REVERT_FAILED,
            BOT,
            error=error,
            detail={"hosts_before": now, "reverted": switched, "error": error},
        )
        return self.deployment(dep.id)

    def _stop_leftovers(self, dep: DeploymentRecord) -> None:
        """Nothing the stopped bot started may finish after the take-over reads the hosts: a restart halfway
        would otherwise bring the new release back once the revert is done."""
        from bot.targets.pool import on_hosts

        env = self.config.environments[dep.environment]
        on_hosts(env.hosts, lambda h: self.ctx.pool.get(env, h).run(commands.stop_leftovers(dep.id)), env.ssh.parallel)

    def _previous_releases(self, dep: DeploymentRecord) -> dict[str, str | None]:
        """What each host ran before this deployment touched it: its preflight read `current`."""
        return {
            s.host: commands.parse_current(s.excerpt)
            for s in self.store.stages(dep.id)
            if s.stage == Stage.PREFLIGHT and s.ok and s.host
        }
