"""What every use case shares: the config, the store, the hosts, the event bus, the lifecycle, and one way to
refuse. Every refusal raises Refused with a sentence fit for the person who asked, is audited, and changes
nothing. Identity is a plain string (a Slack user ID, `cli:alice`); approver groups are resolved by the caller.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

from bot.config import Config, Environment, InvalidVersion
from bot.domain import AuditAction, DeploymentRecord
from bot.engine.events import EventBus
from bot.redact import redact
from bot.service.aws import AWSParts
from bot.service.leases import Leases
from bot.service.lifecycle import Lifecycle

if TYPE_CHECKING:
    from bot.store import Store


log = logging.getLogger(__name__)


class Refused(Exception):
    """A request that was checked and turned down; the message is for the requester."""


@dataclass
class Context:
    config: Config
    store: Store
    pool: object  # bot.targets.pool.TargetPool, imported only when a host is first reached
    events: EventBus
    lifecycle: Lifecycle
    leases: Leases


class UseCases(AWSParts):
    """Every use case: the context, the checks they share, and refusing; the AWS parts (hosts, alarm gate,
    secret values) come from bot.service.aws."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.config, self.store, self.events, self.lifecycle = ctx.config, ctx.store, ctx.events, ctx.lifecycle
        self.leases = ctx.leases

    def environment(self, name: str, actor: str = "system") -> Environment:
        if name not in self.config.environments:
            known = ", ".join(sorted(self.config.environments))
            self.refuse(actor, AuditAction.REFUSED, name, None, f"unknown environment {name!r} (known: {known})")
        return self.config.environments[name]

    def check_version(self, env: str, version: str, actor: str) -> str:
        try:
            return self.config.check_version(version)
        except InvalidVersion as exc:
            self.refuse(
                actor, AuditAction.REFUSED, env, None, f"invalid version: {exc}", detail={"version": version[:80]}
            )

    def deployment(self, deployment_id: int) -> DeploymentRecord:
        try:
            return self.store.get(deployment_id)
        except KeyError:
            raise Refused(f"no deployment #{deployment_id}") from None

    def refuse(
        self,
        actor: str,
        action: AuditAction,
        env: str | None,
        version: str | None,
        message: str,
        deployment_id: int | None = None,
        detail: dict | None = None,
    ) -> NoReturn:
        self.store.audit(
            actor=actor,
            action=action,
            environment=env,
            version=version,
            outcome="refused",
            deployment_id=deployment_id,
            detail={"reason": redact(message), **(detail or {})},
        )
        log.info(
            "refused %s: %s",
            actor,
            message,
            extra={"deployment": deployment_id, "environment": env, "actor": actor, "action": str(action)},
        )
        raise Refused(redact(message))  # it reaches Slack and the terminal
