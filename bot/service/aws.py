"""What the use cases ask of AWS, mixed into UseCases: an environment's hosts (listed, or the running EC2 instances
its tags select, read now), what its CloudWatch alarms say about a start, and the shared/.env values its secret
gives. boto3 is imported only when an environment uses one of them, so `--help`, `status` and `history` of an
environment without AWS never load it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from bot.domain import AuditAction
from bot.redact import redact

if TYPE_CHECKING:
    from bot.aws.alarms import StartGate
    from bot.aws.secrets import SharedEnv
    from bot.config import Config, Environment, Host


class AWSParts:
    """Mixed into bot.service.base.UseCases, which gives `config` and `refuse`."""

    config: Config
    refuse: Callable[..., NoReturn]  # audited, raises Refused

    def hosts(self, env: Environment, actor: str = "system", version: str | None = None) -> list[Host]:
        """The environment's hosts: as listed in deploy.yml, or the running EC2 instances its tags select, read
        now. Refused, and audited as every refusal is, when they cannot be read or none runs."""
        if env.ec2 is None:
            return list(env.hosts)
        from bot.aws.ec2 import discover
        from bot.aws.session import AWSError

        tags = {"ec2_tags": env.ec2.describe()}
        try:
            found = discover(self.config.aws, env.ec2)
        except AWSError as exc:
            self.refuse(actor, AuditAction.REFUSED, env.name, version, f"{env.name}: {exc}", detail=tags)
        if not found:
            self.refuse(
                actor,
                AuditAction.REFUSED,
                env.name,
                version,
                f"{env.name}: no running EC2 instance tagged {env.ec2.describe()} (with a {env.ec2.address} address)",
                detail=tags,
            )
        return found

    def alarm_gate(self, env: Environment, override: str = "") -> StartGate | None:
        """What the environment's CloudWatch alarms say about starting a deploy now (None: it has none)."""
        if env.alarms is None:
            return None
        from bot.aws.alarms import StartGate

        return StartGate(self.config.aws, env.alarms, redact(override))

    def shared_env(self, env: Environment) -> SharedEnv | None:
        """The shared/.env values its secret gives, held for this deployment's preflight (None: no secret)."""
        if env.secrets_manager is None:
            return None
        from bot.aws.secrets import shared_env
        from bot.aws.session import AWSError
        from bot.service.base import Refused

        try:
            return shared_env(self.config.aws, env.secrets_manager)
        except AWSError as exc:
            raise Refused(redact(str(exc))) from None
