"""Writes engine events into the store as they happen, so a crash mid-deploy leaves a complete trail."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from bot.domain import AuditAction
from bot.engine.events import Event, StageFinished, StageStarted

if TYPE_CHECKING:
    from bot.store import Store


log = logging.getLogger("bot.stages")


class StoreRecorder:
    """Subscriber: one stage row per host result, the current stage in the deployment's meta, an audit row per
    failed stage. (Transitions, the automatic rollback among them, are the lifecycle's to record.)"""

    def __init__(self, store: Store):
        self.store = store

    def __call__(self, event: Event) -> None:
        if isinstance(event, StageStarted) and event.host is None:
            self.store.update_meta(event.deployment_id, stage=event.stage)
        elif isinstance(event, StageFinished) and event.host is not None:
            log.log(
                logging.INFO if event.ok else logging.WARNING,
                "#%s %s on %s: %s",
                event.deployment_id,
                event.stage,
                event.host,
                "ok" if event.ok else event.error,
                extra={
                    "deployment": event.deployment_id,
                    "stage": event.stage,
                    "host": event.host,
                    "ok": event.ok,
                    "seconds": round(event.seconds, 3),
                },
            )
            self.store.record_stage(
                event.deployment_id,
                stage=event.stage,
                host=event.host,
                phase="revert" if event.stage == "revert" else "forward",
                started_at=event.at - timedelta(seconds=event.seconds),
                ended_at=event.at,
                ok=event.ok,
                exit_code=event.exit_code,
                excerpt=event.excerpt,
                error=event.error,
                output=event.output,
            )
        elif isinstance(event, StageFinished) and not event.ok:
            dep = self.store.get(event.deployment_id)
            self.store.audit(
                actor=dep.requested_by,
                action=AuditAction.STAGE_FAILED,
                environment=dep.environment,
                version=dep.version,
                outcome="failed",
                deployment_id=dep.id,
                detail={"stage": event.stage, "error": event.error},
            )
