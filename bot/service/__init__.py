"""Use cases, one module per business noun: what the CLI, the Slack handlers and the demo may ask of deploybot.

requests      /deploy and /rollback checked and recorded, the dry run, what follows a request
approvals     approve, reject, cancel, abort, expiry; the quorum starts the run
locks         one active deployment per environment, manual freezes
runs          an approved deployment executed through the lifecycle, stopped at a boundary when asked
leases        a process holds its deployments' locks through leases it renews
recovery      a deployment whose process stopped is taken over and left on a known version
environments  what runs where (read live), history, locks, approvals
backups       the backup sets on the hosts and in S3, the RDS snapshot a rollback restores
lifecycle     the one table of state transitions, and what hangs off them (audit, lock, final event)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.config import Config
from bot.domain import DeploymentRecord
from bot.engine.events import EventBus
from bot.executors import Busy
from bot.recorder import StoreRecorder
from bot.service.approvals import ApprovalResult, Approvals
from bot.service.backups import Backups
from bot.service.base import Context, Refused
from bot.service.environments import Environments, EnvironmentStatus, HostStatus
from bot.service.leases import Leases
from bot.service.lifecycle import Lifecycle
from bot.service.locks import Locks
from bot.service.recovery import Recovery
from bot.service.requests import Requests, RollbackOptions
from bot.service.runs import Runs

if TYPE_CHECKING:
    from bot.store import Store


class DeployService:
    """The use cases over one config and store, wired once; front ends reach them by noun
    (`service.requests.deploy(...)`, `service.approvals.approve(...)`, `service.environments.status(...)`)."""

    def __init__(
        self, config: Config, store: Store, pool=None, events: EventBus | None = None, leases: Leases | None = None
    ):
        if pool is None:
            from bot.targets.pool import TargetPool

            pool = TargetPool()
        self.config, self.store, self.pool = config, store, pool
        self.events = events or EventBus()
        self.events.subscribe(StoreRecorder(store))
        if config.aws.metrics is not None:  # each deployment's duration and outcome, to CloudWatch
            from bot.service.cloudwatch import CloudWatchPublisher

            self.events.subscribe(CloudWatchPublisher(store, config.aws))
        self.leases = leases or Leases(store)
        ctx = Context(config, store, pool, self.events, Lifecycle(store, self.events), self.leases)
        self.environments = Environments(ctx)
        self.locks = Locks(ctx)
        self.runs = Runs(ctx, plan_deploy=lambda *a, **kw: self.requests.plan(*a, **kw))
        self.requests = Requests(ctx, self.locks, self.environments, self.runs)
        self.approvals = Approvals(ctx, self.locks, self.requests, self.runs)
        self.recovery = Recovery(ctx, self.environments, plan_for=self.runs.plan_for)
        self.backups = Backups(ctx)

    def deploy(
        self, env_name: str, version: str, actor: str, override_alarms: str = "", confirm_migration: bool = False
    ) -> DeploymentRecord:
        """The operator path (CLI, scripts): recorded as asked by `actor`, the approval step skipped, run here."""
        dep = self.requests.deploy(
            env_name,
            version,
            actor,
            skip_approval=True,
            meta={"via": "cli"},
            override_alarms=override_alarms,
            confirm_migration=confirm_migration,
        )
        return self.runs.run(dep.id)

    def rollback(
        self, env_name: str, actor: str, version: str | None = None, *, reason: str = "", restore_db: bool = False
    ) -> DeploymentRecord:
        dep = self.requests.rollback(
            env_name, actor, version, reason=reason, restore_db=restore_db, skip_approval=True, meta={"via": "cli"}
        )
        return self.runs.run(dep.id)


__all__ = ["DeployService", "Refused", "Busy", "ApprovalResult", "EnvironmentStatus", "HostStatus", "RollbackOptions"]
