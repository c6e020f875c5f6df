"""Prometheus metrics: counted from engine events as they happen, and read from the store at scrape time
for what is a state rather than an event (approvals waiting, locks), so a restart never shows stale gauges.

Each Metrics owns its registry: two bots in one process (tests) never collide on metric names. `deploybot serve`
serves them on their own address (DEPLOYBOT_METRICS_ADDRESS, default 127.0.0.1:9102), not on the port Slack
reaches: environment names and lock states are for the operator's scraper, not for the internet.
"""

from __future__ import annotations

import platform
import threading
from importlib import metadata

from prometheus_client import CollectorRegistry, Counter, Histogram, Info, ProcessCollector, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from bot.engine.events import DeploymentFinished, DeploymentStarted, Event, StageFinished
from bot.service import DeployService

STAGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 3)


class _StateCollector(Collector):
    def __init__(self, service: DeployService):
        self.service = service

    def collect(self):
        waiting = GaugeMetricFamily(
            "deploybot_approvals_waiting", "Deployments waiting for approval", labels=["environment"]
        )
        locked = GaugeMetricFamily(
            "deploybot_environment_locked", "1 when the environment is locked", labels=["environment", "kind"]
        )
        pending = self.service.environments.pending()
        locks = {lk.environment: lk for lk in self.service.environments.locks()}
        for env in self.service.config.environments:
            waiting.add_metric([env], sum(1 for d in pending if d.environment == env))
            held = locks.get(env)
            for kind in ("deploy", "manual"):
                locked.add_metric([env, kind], 1.0 if held and held.kind == kind else 0.0)
        yield waiting
        yield locked


class Metrics:
    def __init__(self, service: DeployService):
        self.registry = CollectorRegistry()
        self.deployments = Counter(
            "deploybot_deployments", "Finished deployments", ["environment", "kind", "outcome"], registry=self.registry
        )
        self.deployment_seconds = Histogram(
            "deploybot_deployment_duration_seconds",
            "Deployment wall time",
            ["environment", "kind"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "deploybot_stage_duration_seconds",
            "Stage wall time (all hosts of a batch)",
            ["environment", "stage", "ok"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.ack_seconds = Histogram(
            "deploybot_slack_ack_seconds",
            "Time to answer a Slack request",
            ["status"],
            buckets=ACK_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StateCollector(service))
        ProcessCollector(registry=self.registry)  # memory, CPU, open files of this process
        Info("deploybot_build", "The running deploybot", registry=self.registry).info(
            {"version": _version(), "python": platform.python_version()}
        )
        self._running: dict[int, tuple[str, str]] = {}
        self._lock = threading.Lock()
        service.events.subscribe(self)

    def __call__(self, event: Event) -> None:
        """EventBus subscriber: in-memory counters only, cheap enough for the engine's thread."""
        if isinstance(event, DeploymentStarted):
            with self._lock:
                self._running[event.deployment_id] = (event.environment, event.kind)
            return
        with self._lock:
            env, kind = self._running.get(event.deployment_id, ("unknown", "deploy"))
        if isinstance(event, StageFinished) and event.host is None:
            self.stage_seconds.labels(env, event.stage, str(event.ok).lower()).observe(event.seconds)
        elif isinstance(event, DeploymentFinished):
            self.deployments.labels(env, kind, event.state).inc()
            self.deployment_seconds.labels(env, kind).observe(event.seconds)
            with self._lock:
                self._running.pop(event.deployment_id, None)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _version() -> str:
    try:
        return metadata.version("deploybot")
    except metadata.PackageNotFoundError:
        return "unknown"
