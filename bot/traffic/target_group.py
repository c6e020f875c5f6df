"""An ALB's or NLB's target group as the balancer (`traffic: {balancer: target-group, target_group_arn: ...}`),
through boto3's elbv2 API: drain is DeregisterTargets, restore is RegisterTargets, and both wait on what
DescribeTargetHealth says (`draining` until the group's deregistration delay ends; `healthy` once its health
checks pass).

A host is registered by its EC2 instance id where one is known (hosts found by EC2 tags carry it; a listed host
may set `vars: {instance_id: ...}`), else by its address, on `traffic.port`. The group cannot count requests or
5xx answers per target (CloudWatch does, per group), so `stats()` reports states and leaves those counts None.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from bot.aws.config import AWSSettings
from bot.aws.session import AWSError, asking, client
from bot.host import Host
from bot.traffic.base import DOWN, DRAIN, MAINT, READY, Backend, BackendStats, TrafficError, names, poll

SERVING = ("healthy", "initial", "unhealthy", "unavailable")  # registered: the group may send it requests
DRAINING = ("draining", "unhealthy.draining")
STATES = {"healthy": READY, "draining": DRAIN, "unhealthy.draining": DRAIN, "unused": MAINT}
DEFAULT_DELAY = 300  # the group's deregistration_delay.timeout_seconds when AWS does not say
SLACK = 10.0  # how long past the deregistration delay a target may still read `draining` (AWS updates lag)
Target = tuple[str, int]  # (Id, Port) as the group knows it


class TargetGroupTraffic:
    """One target group in front of `hosts` (drain, wait_drained, restore, stats; see bot.traffic.base)."""

    def __init__(
        self,
        settings: AWSSettings,
        arn: str,
        port: int,
        hosts: Sequence[Host] = (),
        *,
        register_by: str = "auto",
        discover: Callable[[], list[Host]] | None = None,
        healthy_timeout: float = 300.0,
        interval: float = 2.0,
    ):
        region = arn.split(":")[3]  # the group's own region, unless `aws.region` says otherwise
        self.settings = settings if settings.region else settings.model_copy(update={"region": region})
        self.arn, self.port, self.register_by = arn, port, register_by
        self.name = arn.split("/")[-2]
        self.hosts = {h.name: h for h in hosts}
        self.discover, self.healthy_timeout, self.interval = discover, healthy_timeout, interval

    # ---- the Traffic protocol ------------------------------------------------------------------------------
    def drain(self, hosts: Sequence[Backend]) -> None:
        """Deregister the hosts; a host not registered is already out. Refused when no other target is healthy."""
        targets = self._targets(hosts)
        registered = self._health()
        for backend, target in zip(hosts, targets, strict=True):
            ports = sorted(p for i, p in registered if i == target[0] and p != target[1])
            if target not in registered and ports:
                raise TrafficError(
                    f"target group {self.name}: {backend.name} ({target[0]}) is registered on port "
                    f"{', '.join(map(str, ports))}, not {target[1]} (traffic.port)"
                )
        out = [t for t in targets if t in registered and _serving(*registered[t])]
        if not out:
            return  # already out (a revert drains a failed batch again)
        if not any(state == "healthy" for t, (state, _) in registered.items() if t not in targets):
            raise TrafficError(
                f"target group {self.name}: refusing to drain {names(hosts)}: no other target is healthy "
                f"({self._describe(registered)})"
            )
        with self._asking(f"deregistering {names(hosts)}"):
            self._elb().deregister_targets(TargetGroupArn=self.arn, Targets=_ids(out))

    def wait_drained(self, hosts: Sequence[Backend], timeout: float) -> bool:
        """Until none of them reads `draining`: at most `timeout`, and no longer than the group's deregistration
        delay (plus a little), after which AWS has cut their connections anyway."""
        targets = self._targets(hosts)
        states = self._health(targets)
        serving = [f"{b.name} ({states[t][0]})" for b, t in zip(hosts, targets, strict=True) if _serving(*states[t])]
        if serving:
            raise TrafficError(f"target group {self.name}: {', '.join(serving)} not drained: nothing to wait for")
        bound = min(timeout, self._delay() + SLACK)
        return poll(lambda: not any(s in DRAINING for s, _ in self._health(targets).values()), bound, self.interval)

    def restore(self, hosts: Sequence[Backend]) -> None:
        """Register the hosts, then wait until the group's health checks call them healthy (healthy_timeout)."""
        targets = self._targets(hosts)
        with self._asking(f"registering {names(hosts)}"):
            self._elb().register_targets(TargetGroupArn=self.arn, Targets=_ids(targets))

        def healthy() -> bool:
            states = self._health(targets)
            return all(s == "healthy" or r == "Target.NotInUse" for s, r in states.values())

        if not poll(healthy, self.healthy_timeout, self.interval):
            states = self._health(targets)
            late = [
                f"{b.name} {_words(*states[t])}"
                for b, t in zip(hosts, targets, strict=True)
                if states[t][0] != "healthy"
            ]
            raise TrafficError(
                f"target group {self.name}: registered again, but not healthy after {self.healthy_timeout:g}s "
                f"(traffic.healthy_timeout): {'; '.join(late)}"
            )

    def stats(self) -> dict[str, BackendStats]:
        """Each registered (or draining) target's state, keyed by host name; request and 5xx counts are None."""
        known = {self._target(h): h.name for h in self._known().values() if self._resolvable(h)}
        out = {}
        for target, (state, reason) in self._health().items():
            name = known.get(target, f"{target[0]}:{target[1]}")
            out[name] = BackendStats(name, STATES.get(state, DOWN), None, None, None, _words(state, reason))
        return out

    # ---- targets --------------------------------------------------------------------------------------------
    def _targets(self, hosts: Sequence[Backend]) -> list[Target]:
        return [self._target(self._host(b)) for b in hosts]

    def _host(self, backend: Backend) -> Host:
        """The deploy.yml host behind a backend (with its vars), read again from EC2 when it is a new one."""
        found = self._known().get(backend.name)
        if found is None and self.discover is not None:
            self.hosts |= {h.name: h for h in self.discover()}
            found = self.hosts.get(backend.name)
        return found or Host.model_construct(name=backend.name, address=backend.address, port=22, vars={})

    def _known(self) -> dict[str, Host]:
        if not self.hosts and self.discover is not None:
            self.hosts = {h.name: h for h in self.discover()}
        return self.hosts

    def _resolvable(self, host: Host) -> bool:
        return self.register_by != "instance" or bool(host.vars.get("instance_id"))

    def _target(self, host: Host) -> Target:
        instance = str(host.vars.get("instance_id") or "")
        if self.register_by == "ip" or (self.register_by == "auto" and not instance):
            return (host.address, self.port)
        if not instance:
            raise TrafficError(
                f"target group {self.name}: {host.name} has no EC2 instance id (traffic.register_by: instance); "
                "hosts found by EC2 tags carry one, a listed host can set vars: {instance_id: i-...}"
            )
        return (instance, self.port)

    # ---- AWS --------------------------------------------------------------------------------------------------
    def _elb(self):
        return client("elbv2", self.settings)

    @contextmanager
    def _asking(self, what: str) -> Iterator[None]:
        try:
            with asking(f"target group {self.name}: {what}"):
                yield
        except AWSError as exc:
            raise TrafficError(str(exc)) from None

    def _health(self, targets: list[Target] | None = None) -> dict[Target, tuple[str, str]]:
        """(state, reason) per target: the ones asked for, else every target the group has (draining ones too)."""
        ask = {"Targets": _ids(targets)} if targets else {}
        with self._asking("reading the targets' health"):
            found = self._elb().describe_target_health(TargetGroupArn=self.arn, **ask)["TargetHealthDescriptions"]
        out = {}
        for row in found:
            health = row.get("TargetHealth", {})
            out[(row["Target"]["Id"], int(row["Target"].get("Port", self.port)))] = (
                health.get("State", ""),
                health.get("Reason", ""),
            )
        return out

    def _delay(self) -> float:
        with self._asking("reading its deregistration delay"):
            rows = self._elb().describe_target_group_attributes(TargetGroupArn=self.arn)["Attributes"]
        value = next((a["Value"] for a in rows if a["Key"] == "deregistration_delay.timeout_seconds"), None)
        return float(value) if value not in (None, "") else DEFAULT_DELAY

    def _describe(self, health: dict[Target, tuple[str, str]]) -> str:
        return ", ".join(f"{i}:{p} {_words(*s)}" for (i, p), s in sorted(health.items())) or "it has no target"


def _ids(targets: list[Target]) -> list[dict]:
    return [{"Id": i, "Port": p} for i, p in targets]


def _serving(state: str, reason: str) -> bool:
    """Registered and not on its way out: the group may send it new requests."""
    return state in SERVING and reason != "Target.NotRegistered"


def _words(state: str, reason: str) -> str:
    return f"{state} ({reason})" if reason else state


def open_target_group(cfg, env) -> TargetGroupTraffic:
    """The environment's target group; hosts found by EC2 tags are read again when a drain names a new one."""
    discover = None
    if getattr(env, "ec2", None) is not None:
        from bot.aws.ec2 import discover as read

        def discover() -> list[Host]:
            try:
                return read(cfg.aws, env.ec2)
            except AWSError as exc:
                raise TrafficError(f"target group: the EC2 hosts could not be read: {exc}") from None

    return TargetGroupTraffic(
        cfg.aws,
        cfg.target_group_arn,
        cfg.port,
        env.hosts,
        register_by=cfg.register_by,
        discover=discover,
        healthy_timeout=cfg.healthy_timeout,
    )
