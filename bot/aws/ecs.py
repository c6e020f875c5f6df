"""An ECS service through boto3: what it runs now, a new task definition revision with another image, the service
moved to a revision, and whether it is stable. bot/targets/ecs.py turns the engine's Commands into these calls.

Task definitions never change once registered, so each one is read from AWS once and kept."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from bot.aws.config import ECSService
from bot.aws.session import AWSError, asking, client

MAX_REVISIONS = 100  # how far back, newest first, a version's revision is looked for


@dataclass(frozen=True)
class ServiceState:
    """One reading of describe_services."""

    status: str  # ACTIVE, DRAINING, INACTIVE
    task_definition: str  # the ARN the service runs
    desired: int
    running: int
    deployments: tuple[dict, ...]

    def stable_on(self, arn: str) -> bool:
        """As AWS's services_stable waiter, and on the asked revision: one deployment (PRIMARY), all tasks running."""
        return (
            self.task_definition == arn
            and len(self.deployments) == 1
            and self.deployments[0].get("status") == "PRIMARY"
            and self.running == self.desired
        )

    def failed_rollout(self) -> str | None:
        """The reason ECS gave up on the newest deployment (its circuit breaker), if it did."""
        primary = next((d for d in self.deployments if d.get("status") == "PRIMARY"), {})
        if primary.get("rolloutState") == "FAILED":
            return primary.get("rolloutStateReason") or "the deployment failed"
        return None

    def describe(self) -> str:
        rollouts = ", ".join(f"{d.get('status')} {d.get('rolloutState', '')}".strip() for d in self.deployments)
        return f"{self.running} of {self.desired} tasks running, deployments: {rollouts or 'none'}"


def short(arn: str) -> str:
    """`arn:aws:ecs:...:task-definition/shop:7` -> `shop:7`."""
    return arn.rsplit("/", 1)[-1]


class ECSServiceClient:
    """The boto3 calls for one configured service; safe to share between threads."""

    def __init__(self, spec: ECSService):
        self.spec = spec
        self.where = f"service {spec.service} in cluster {spec.cluster}"
        self._definitions: dict[str, dict] = {}
        self._lock = threading.Lock()

    @property
    def _ecs(self):
        return client("ecs", self.spec.aws)

    def state(self) -> ServiceState:
        with asking(f"describing {self.where}"):
            found = self._ecs.describe_services(cluster=self.spec.cluster, services=[self.spec.service])
        if not found.get("services"):
            reasons = ", ".join(f.get("reason", "?") for f in found.get("failures", [])) or "not found"
            raise AWSError(f"{self.where}: {reasons}")
        svc = found["services"][0]
        return ServiceState(
            svc.get("status", ""),
            svc.get("taskDefinition", ""),
            int(svc.get("desiredCount", 0)),
            int(svc.get("runningCount", 0)),
            tuple(svc.get("deployments", [])),
        )

    def definition(self, arn: str) -> dict:
        """The task definition (with its tags under `tags`), read once."""
        with self._lock:
            if arn in self._definitions:
                return self._definitions[arn]
        with asking(f"reading task definition {short(arn)}"):
            answer = self._ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"])
        made = {**answer["taskDefinition"], "tags": answer.get("tags") or []}
        with self._lock:
            self._definitions[arn] = made
        return made

    def image(self, arn: str) -> str:
        """The image of the configured container in that task definition."""
        definition = self.definition(arn)
        containers = definition.get("containerDefinitions", [])
        found = next((c for c in containers if c.get("name") == self.spec.container), None)
        if found is None:
            names = ", ".join(c.get("name", "?") for c in containers)
            raise AWSError(f"task definition {short(arn)} has no container {self.spec.container} (it has: {names})")
        return found.get("image", "")

    def register(self, base_arn: str, image: str) -> str:
        """A new revision of `base_arn`'s family: the same definition, the configured container's image replaced."""
        self.image(base_arn)  # the container is there
        definition = self.definition(base_arn)
        accepted = self._ecs.meta.service_model.operation_model("RegisterTaskDefinition").input_shape.members
        asked = {k: v for k, v in definition.items() if k in accepted and v not in (None, "", [], {})}
        asked["containerDefinitions"] = [
            {**c, "image": image} if c.get("name") == self.spec.container else c
            for c in definition["containerDefinitions"]
        ]
        with asking(f"registering a revision of {definition.get('family')} with image {image}"):
            made = self._ecs.register_task_definition(**asked)["taskDefinition"]
        return made["taskDefinitionArn"]

    def update(self, arn: str) -> None:
        with asking(f"updating {self.where} to {short(arn)}"):
            self._ecs.update_service(cluster=self.spec.cluster, service=self.spec.service, taskDefinition=arn)

    def revision_with(self, family: str, image: str) -> str | None:
        """The newest active revision of `family` whose container runs `image` (None: there is none)."""
        arns: list[str] = []
        with asking(f"listing the revisions of task definition {family}"):
            pages = self._ecs.get_paginator("list_task_definitions")
            for page in pages.paginate(familyPrefix=family, status="ACTIVE", sort="DESC"):
                arns += [a for a in page.get("taskDefinitionArns", []) if short(a).rpartition(":")[0] == family]
        arns.sort(key=lambda a: int(short(a).rpartition(":")[2]), reverse=True)
        return next((a for a in arns[:MAX_REVISIONS] if self.image(a) == image), None)
