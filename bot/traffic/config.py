"""`traffic:` in an environment of deploy.yml: the balancer in front of its hosts, for rolling deploys that take
each batch out of service before switching it (drain, switch, restart, health, restore).

    traffic: {balancer: haproxy, socket: /run/haproxy/admin.sock, backend: shop, port: 8000}
    traffic: {balancer: nginx, on: deploy@lb1, upstream_file: /etc/nginx/conf.d/shop.conf, port: 8000,
              test: sudo nginx -t, reload: sudo nginx -s reload}
    traffic: {balancer: target-group, port: 8000, target_group_arn: arn:aws:elasticloadbalancing:...:targetgroup/...}

Also `strategy:` itself (Strategy: in-place, rolling, canary, blue-green), the blue-green strategy's `proxy:` (each
host's own nginx in front of its two slots) and what that strategy needs (check_slots): how a deploy moves
traffic, kept together, and bot/config.py stays under a screenful.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, PrivateAttr, model_validator

from bot.aws.config import AWSSettings
from bot.host import Host, Strict

# arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID (an ALB's or NLB's target group)
TARGET_GROUP_ARN = (
    r"^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:targetgroup/[A-Za-z0-9-]{1,32}/[0-9a-f]{1,32}$"
)


class TrafficConfig(Strict):
    balancer: Literal["haproxy", "nginx", "target-group"]
    port: int = Field(ge=1, le=65535)  # where each host's app listens, as the balancer addresses it
    on: str = "local"  # the balancer's host (`user@host[:port]`, reached over SSH like the hosts), or this machine
    drain_timeout: float = Field(default=30.0, gt=0, le=3600)  # in-flight requests get this long to finish
    socket: str | None = None  # haproxy: its admin socket (a path, or host:port), on `on`
    backend: str | None = None  # haproxy: the backend holding the hosts as servers
    drain_state: Literal["drain", "maint"] = "drain"
    upstream_file: str | None = None  # nginx: the file holding the app's upstream block, on `on`
    test: str = "nginx -t"
    reload: str = "nginx -s reload"
    pid_file: str = "/run/nginx.pid"
    access_log: str | None = None  # nginx: a log written with bot.traffic.nginx.LOG_FORMAT, for stats
    target_group_arn: str | None = None  # target-group: the ALB's or NLB's target group holding the hosts
    # target-group: register a host by its EC2 instance id (hosts found by tags, or vars.instance_id) or by address
    register_by: Literal["auto", "instance", "ip"] = "auto"  # auto: the instance id where known, else the address
    healthy_timeout: float = Field(default=300.0, gt=0, le=3600)  # target-group: restore waits for `healthy`
    _aws: AWSSettings = PrivateAttr(default_factory=AWSSettings)  # the config's `aws:`, set by Config

    @model_validator(mode="after")
    def _complete(self) -> TrafficConfig:
        if self.balancer == "haproxy" and not (self.socket and self.backend):
            raise ValueError("haproxy needs `socket` (its admin socket) and `backend`")
        if self.balancer == "nginx" and not self.upstream_file:
            raise ValueError("nginx needs `upstream_file` (the file with the app's upstream block)")
        if self.balancer == "target-group" and not self.target_group_arn:
            raise ValueError("target-group needs `target_group_arn` (arn:aws:elasticloadbalancing:...:targetgroup/...)")
        if self.target_group_arn and not re.match(TARGET_GROUP_ARN, self.target_group_arn):
            raise ValueError(
                f"{self.target_group_arn[:120]!r} is not a target group ARN "
                "(arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID)"
            )
        if self.balancer == "target-group" and self.on != "local":
            raise ValueError("a target group is reached through AWS's API: `on` is for haproxy and nginx")
        if self.on != "local":
            Host.parse(self.on)  # `user@host[:port]`, or a clear error here rather than at the first drain
        return self

    @property
    def balancer_host(self) -> Host:
        return Host.parse(self.on) if self.on != "local" else Host(name="balancer", address="local")

    @property
    def aws(self) -> AWSSettings:
        return self._aws

    def use(self, settings: AWSSettings) -> None:
        """Where AWS is (deploy.yml's top-level `aws:`), for a target group; Config hands it over once parsed."""
        self._aws = settings


class SlotProxy(Strict):
    """blue-green: the reverse proxy on each host (nginx), in front of the app's two slots. deploybot owns
    `config`, a snippet that sets `$<variable>` to the live slot's address by a marker file a flip creates or
    removes (no reload); the app's nginx `server {}` includes it and proxies to it: `include <config>;` and
    `proxy_pass http://$<variable>;`. nginx is tested and reloaded only when the snippet itself changes."""

    port: int = Field(ge=1, le=65535)  # where the proxy listens on the host: the health URL's {port} outside a slot
    config: str = Field(pattern=r"^/[A-Za-z0-9_./-]+$")  # the snippet deploybot writes (at the first flip)
    variable: str = Field(default="deploybot_live", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    test: str = Field(min_length=1)  # e.g. `sudo nginx -t`: a refused snippet is put back and nothing flips
    reload: str = Field(min_length=1)  # e.g. `sudo nginx -s reload`: graceful, old workers finish their requests
    pid_file: str = "/run/nginx.pid"  # after a reload, the flip waits until the workers from before take no requests
    reload_timeout: float = Field(default=10.0, gt=0, le=300)


SLOT_NAME = r"^[a-z][a-z0-9_-]{0,15}$"


def check_slots(kind: str, slots: dict[str, int] | None, proxy: SlotProxy | None, stop: str | None, keep: bool):
    """What a blue-green strategy needs, in one sentence per gap (the strategy's own validator calls this)."""
    if kind != "blue-green":
        if slots or proxy:
            raise ValueError("slots and proxy belong to strategy kind blue-green")
        return
    if not slots or len(slots) != 2:
        raise ValueError("blue-green needs two slots with their ports, e.g. slots: {blue: 8001, green: 8002}")
    for name, port in slots.items():
        if not re.match(SLOT_NAME, name):
            raise ValueError(f"slot name {name!r}: lowercase letters, digits, `_-`, starting with a letter")
        if not 1 <= port <= 65535:
            raise ValueError(f"slot {name}: port {port} is not in 1..65535")
    if len(set(slots.values())) != 2:
        raise ValueError("the two slots need distinct ports")
    if proxy is None:
        raise ValueError("blue-green needs proxy: {port, config, test, reload} (the host's own nginx)")
    if proxy.port in slots.values():
        raise ValueError(f"proxy.port {proxy.port} is a slot's port; the proxy listens on a port of its own")
    if not keep and not (stop or "").strip():
        raise ValueError("blue-green needs `stop` (run in the old slot after the window), or keep_old_slot: true")


class Strategy(Strict):
    """`strategy:` how publishing walks the hosts and moves their traffic: in-place, rolling (drained through
    `traffic:`), canary, or blue-green (each host's own nginx in front of two slots); kept beside those models."""

    kind: Literal["in-place", "rolling", "canary", "blue-green"] = "in-place"
    batch_size: int = Field(default=1, ge=1)
    # blue-green: two slots (name: port) per host behind the host's own nginx (proxy); `stop` stops the old slot
    # after the verification window unless keep_old_slot, which keeps it warm for a rollback that only flips
    slots: dict[str, int] | None = None
    proxy: SlotProxy | None = None
    stop: str | None = None
    keep_old_slot: bool = False
    # canary: the first `canary_hosts` are published and serve alone for `canary_seconds` under the gates; a
    # tripped gate reverts them (the rest never touched), else the rest follow in batches of `batch_size`
    canary_hosts: int = Field(default=1, ge=1)
    canary_seconds: float = Field(default=60.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _slots(self) -> Strategy:
        check_slots(self.kind, self.slots, self.proxy, self.stop, self.keep_old_slot)
        return self
