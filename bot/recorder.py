"""Writes engine events into the store as they happen, so a crash mid-deploy leaves a complete trail."""

from __future__ import annotations

from datetime import timedelta

from bot.engine.events import Event, RollbackStarted, StageFinished, StageStarted
from bot.store import Store


class StoreRecorder:
    """Subscriber: one stage row per host result, audit rows for the milestones."""

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
            self._audit(event.deployment_id, "stage_failed", outcome="failed",
                        detail={"stage": event.stage, "error": event.error})
        elif isinstance(event, RollbackStarted):
            self._audit(event.deployment_id, "auto_rollback_started", outcome="rolling_back",
                        detail={"reason": event.reason, "hosts": list(event.hosts), "to": event.to_version})

    def _audit(self, deployment_id: int, action: str, outcome: str, detail: dict) -> None:
        dep = self.store.get(deployment_id)
        self.store.audit(actor=dep.requested_by, action=action,
                         environment=dep.environment, version=dep.version, outcome=outcome,
                         deployment_id=deployment_id, detail=detail)

