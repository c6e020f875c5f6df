"""A DeploymentFinished subscriber publishing each deployment's duration and outcome to CloudWatch, when
`aws.metrics` is configured (bot.aws.metrics says what is published). Wired by DeployService beside the store
recorder, so CLI and Slack deployments alike are counted."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bot.aws.config import AWSSettings
from bot.engine.events import DeploymentFinished, Event

if TYPE_CHECKING:
    from bot.store import Store

log = logging.getLogger(__name__)


class CloudWatchPublisher:
    """Publishes when a run ends (the lifecycle emits DeploymentFinished once the store holds the end). A failure
    is logged and changes nothing: a deployment never fails because its metrics could not be sent."""

    def __init__(self, store: Store, settings: AWSSettings):
        assert settings.metrics is not None, "only wired when aws.metrics is configured"
        self.store, self.settings, self.namespace = store, settings, settings.metrics.namespace

    def __call__(self, event: Event) -> None:
        if not isinstance(event, DeploymentFinished):
            return
        from bot.aws.metrics import publish_deployment
        from bot.aws.session import AWSError

        dep = self.store.get(event.deployment_id)
        try:
            publish_deployment(
                self.settings, self.namespace, dep.environment, dep.kind.value, event.state, event.seconds
            )
        except AWSError as exc:
            log.warning("#%s: %s", dep.id, exc, extra={"deployment": dep.id, "environment": dep.environment})
