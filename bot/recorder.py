"""Writes engine events into the store as they happen, so a crash mid-deploy leaves a complete trail."""

from __future__ import annotations

from datetime import timedelta

from bot.domain import AuditAction
from bot.engine.events import Event, StageFinished, StageStarted
from bot.store import Store


class StoreRecorder:
    """Subscriber: one stage row per host result, the current stage in the deployment's meta, an audit row per
    failed stage. (Transitions, the automatic rollback among them, are the lifecycle's to record.)"""

    def __init__(self, store: Store):
        self.store = store

    def __call__(self, event: Event) -> None:
        if isinstance(event, StageStarted) and event.host is None:
            self.store.update_meta(event.deployment_id, stage=event.stage)
        elif isinstance(event, StageFinished) and event.host is not None:
            self.store.record_stage(
                event.deployment_id, stage=event.stage, host=event.host,
                phase="revert" if event.stage == "revert" else "forward",
                started_at=event.at - timedelta(seconds=event.seconds), ended_at=event.at,
                ok=event.ok, exit_code=event.exit_code, excerpt=event.excerpt, error=event.error,
            )
        elif isinstance(event, StageFinished) and not event.ok:
            dep = self.store.get(event.deployment_id)
            self.store.audit(actor=dep.requested_by, action=AuditAction.STAGE_FAILED, environment=dep.environment,
                             version=dep.version, outcome="failed", deployment_id=dep.id,
                             detail={"stage": event.stage, "error": event.error})
