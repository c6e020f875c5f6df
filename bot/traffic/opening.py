"""Opening the balancer an environment names in `traffic:`, reached from here, through a target, or (a target
group) through AWS's API."""

from __future__ import annotations

from bot.traffic.base import Backend, Traffic
from bot.traffic.config import TrafficConfig


def open_traffic(cfg: TrafficConfig, env, pool) -> Traffic:
    """The balancer of `env`, reached from here or through the pool's target for `cfg.on` (warm SSH reused)."""
    if cfg.balancer == "target-group":
        from bot.traffic.target_group import open_target_group

        return open_target_group(cfg, env)
    hosts = [Backend(h.name, h.address, cfg.port) for h in env.hosts]
    target = pool.get(env, cfg.balancer_host)
    if cfg.balancer == "haproxy":
        from bot.traffic.haproxy import HAProxyTraffic, RemoteAdminSocket

        where = cfg.socket if cfg.on == "local" else RemoteAdminSocket(target, cfg.socket)
        return HAProxyTraffic(where, cfg.backend, hosts, drain_state=cfg.drain_state)
    from bot.traffic.nginx import NginxTraffic

    return NginxTraffic(
        target,
        cfg.upstream_file,
        pid_file=cfg.pid_file,
        access_log=cfg.access_log,
        hosts=hosts,
        test_command=cfg.test,
        reload_command=cfg.reload,
    )
