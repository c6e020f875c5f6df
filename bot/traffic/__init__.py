"""The load balancer in front of the hosts, as deploys that publish without dropping requests use it: drain,
wait until drained, restore, count. See docs/traffic.md."""

from bot.traffic.base import Backend, BackendStats, Traffic, TrafficError

__all__ = ["Backend", "BackendStats", "Traffic", "TrafficError"]
