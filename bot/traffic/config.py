"""`traffic:` in an environment of deploy.yml: the balancer in front of its hosts, for rolling deploys that take
each batch out of service before switching it (drain, switch, restart, health, restore).

    traffic: {balancer: haproxy, socket: /run/haproxy/admin.sock, backend: shop, port: 8000}
    traffic: {balancer: nginx, on: deploy@lb1, upstream_file: /etc/nginx/conf.d/shop.conf, port: 8000,
              test: sudo nginx -t, reload: sudo nginx -s reload}
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from bot.host import Host, Strict


class TrafficConfig(Strict):
    balancer: Literal["haproxy", "nginx"]
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

    @model_validator(mode="after")
    def _complete(self) -> TrafficConfig:
        if self.balancer == "haproxy" and not (self.socket and self.backend):
            raise ValueError("haproxy needs `socket` (its admin socket) and `backend`")
        if self.balancer == "nginx" and not self.upstream_file:
            raise ValueError("nginx needs `upstream_file` (the file with the app's upstream block)")
        if self.on != "local":
            Host.parse(self.on)  # `user@host[:port]`, or a clear error here rather than at the first drain
        return self

    @property
    def balancer_host(self) -> Host:
        return Host.parse(self.on) if self.on != "local" else Host(name="balancer", address="local")
