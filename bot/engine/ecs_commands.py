"""What each step does to an ECS service (`kind: ecs`): the flow table's phases, with ECS operations in place of
shell. The pseudo-host's target (bot/targets/ecs.py) runs them; the dry run prints them.

starting: preflight    updating: upload (a new task definition revision)
publishing: switch (update the service), restart (wait until it is stable), health    verifying: verify
No backup, migrate or cleanup: the previous revision stays registered, which is what a revert returns to."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.domain import Kind, Stage
from bot.targets import ecs
from bot.targets.base import Command

if TYPE_CHECKING:
    from bot.engine.plan import Plan

STAGES = frozenset({Stage.PREFLIGHT, Stage.UPLOAD, Stage.SWITCH, Stage.RESTART, Stage.HEALTH, Stage.VERIFY})
OWN = frozenset({Stage.PREFLIGHT, Stage.UPLOAD, Stage.SWITCH, Stage.RESTART})  # health and verify: as for hosts


def commands_for(stage: Stage, plan: Plan, *, current: str | None, version: str) -> list[Command]:
    """`current`: the version the service ran before (read by preflight); `version`: the one to publish."""
    spec = plan.env.ecs
    assert spec is not None, "an ECS plan has an ecs: block"
    where = f"service {spec.service} in cluster {spec.cluster}"
    image = spec.image_for(version)
    if stage is Stage.PREFLIGHT:
        rollback = plan.kind is Kind.ROLLBACK
        need = f"; a revision of its task definition runs {image}" if rollback else ""
        return [
            Command(
                ecs.DESCRIBE,
                f"describe {where}: it exists and is ACTIVE{'' if rollback else ', with one deployment'}; the tag "
                f"of container {spec.container}'s image in its task definition is the current version{need}",
                version if rollback else None,
            )
        ]
    if stage is Stage.UPLOAD:
        return [
            Command(
                ecs.REGISTER,
                f"register a new revision of the task definition that {where} runs now "
                f"({spec.image_for(current or '<current>')}), with container {spec.container}'s image set to {image}",
                version,
            )
        ]
    if stage is Stage.SWITCH:
        return [
            Command(
                ecs.UPDATE,
                f"update {where} to the revision running {image} (the one registered, or the one it ran before)",
                version,
            )
        ]
    if stage is Stage.RESTART:
        return [
            Command(
                ecs.WAIT_STABLE,
                f"wait until {where} is stable on that revision: one PRIMARY deployment, runningCount == "
                f"desiredCount (read every {spec.poll:g}s, at most {spec.stable_timeout:g}s)",
                version,
                timeout=spec.stable_timeout,
            )
        ]
    raise ValueError(f"no ECS commands for stage {stage}")
