"""`gates:` in an environment of deploy.yml, and the checks that tie them (and a canary) to the hosts and the
balancer. Kept beside bot/config.py, as bot/traffic/config.py is, so the environment model stays short.

    gates: {max_5xx: 0, max_error_rate: 0.01, command: bin/smoke, interval: 1}
"""

from __future__ import annotations

from pydantic import Field

from bot.host import Strict


class Gates(Strict):
    """What must stay true while a new release serves (a canary, and every verification window), besides each
    host's health answering the version: the balancer's counts since the window began, a smoke command, alarms."""

    max_5xx: int | None = Field(default=None, ge=0)  # 5xx answers from the hosts under watch (needs traffic:)
    max_error_rate: float | None = Field(default=None, ge=0, le=1)  # 5xx / requests of those hosts (traffic:)
    command: str | None = None  # run once on each host at the start of its window, in the new release
    interval: float = Field(default=1.0, gt=0, le=60)  # seconds between readings of the balancer

    @property
    def reads_balancer(self) -> bool:
        return self.max_5xx is not None or self.max_error_rate is not None


def check_gates(gates: Gates, strategy, traffic, hosts: list) -> None:
    """Gates that read a balancer need one that counts; a canary must leave hosts for after it."""
    if gates.reads_balancer and traffic is None:
        raise ValueError("gates.max_5xx and gates.max_error_rate read the balancer's counts: they need traffic:")
    if gates.reads_balancer and traffic.balancer == "target-group":
        raise ValueError(
            "a target group has no counts per target for gates.max_5xx / max_error_rate: use a CloudWatch alarm on "
            "its HTTPCode_Target_5XX_Count (alarms:)"
        )
    if gates.reads_balancer and traffic.balancer == "nginx" and not traffic.access_log:
        raise ValueError("gates.max_5xx and gates.max_error_rate count nginx's access log: set traffic.access_log")
    if strategy.kind == "canary" and hosts and strategy.canary_hosts >= len(hosts):
        raise ValueError(
            f"strategy.canary_hosts ({strategy.canary_hosts}) must leave some of the {len(hosts)} hosts for after "
            "the canary"
        )
