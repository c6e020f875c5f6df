"""Composition root of the Slack bot: config, store, service, Slack client, Bolt app, executors, server.

Bolt runs with process_before_response=True: each listener runs on the server's request thread, does only
cheap checks, acks, and hands slow work to the bot's own bounded executors (never Bolt's shared listener
threads), so every request is answered well within Slack's 3 seconds even while deployments run.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from slack_bolt import App
from slack_bolt.error import BoltError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.config import Config
from bot.executors import BoundedExecutor
from bot.links import LinkSigner
from bot.metrics import Metrics
from bot.redact import redact
from bot.service import DeployService
from bot.web import AckFirst, make_wsgi
from handlers.context import Bot, Responder
from handlers.registry import post_response_url, register, retry_handlers

log = logging.getLogger(__name__)
DEFAULT_API_URL = "https://slack.com/api/"
SWEEP_SECONDS = 30.0


@dataclass
class Runtime:
    """Everything `serve` runs, also what tests and the benchmark start in-process."""

    service: DeployService
    app: App
    bot: Bot
    metrics: Metrics
    deploys: BoundedExecutor
    jobs: BoundedExecutor
    acking: AckFirst
    _stop: threading.Event = field(default_factory=threading.Event)
    links: LinkSigner | None = None  # signs the log pages' links; None: no log pages served

    def sweep(self, now: datetime | None = None) -> int:
        """Expire stale approval requests (their messages lose their buttons) and take over deployments whose
        process stopped (their messages get their end)."""
        expired = self.service.approvals.expire_stale(now)
        for dep in [*expired, *self.service.recovery.orphans()]:
            self.bot.board.refresh(dep.id)
        return len(expired)

    def drain(self, grace: float) -> None:
        """SIGTERM: take no new work (Slack is told to try again in a minute); let running deployments finish
        for half the grace period, then stop them at their next stage boundary (what switched is reverted),
        and wait until their messages show the end. A deployment still running after `grace` is left to the
        lease: another replica, or this one's next start, takes it over."""
        self.bot.draining.set()
        deadline = time.monotonic() + grace
        while self.deploys.pending and time.monotonic() < deadline - grace / 2:
            time.sleep(0.1)
        self.service.runs.stopping.set()
        while self.deploys.pending and time.monotonic() < deadline:
            time.sleep(0.1)
        self.bot.board.wait_idle(max(1.0, deadline - time.monotonic()))

    def start_sweeper(self, every: float = SWEEP_SECONDS) -> None:
        def loop() -> None:
            while not self._stop.wait(every):
                try:
                    self.sweep()
                except Exception:  # noqa: BLE001 - try again next round
                    log.exception("expiry sweep failed")

        threading.Thread(target=loop, name="expiry-sweeper", daemon=True).start()

    def healthy(self) -> dict:
        return {"deploys_running": len(self.service.environments.running())}  # the store answers

    def wsgi(self, *, slack_over_http: bool = True) -> Callable:
        return make_wsgi(
            self.app,
            self.metrics,
            self.healthy,
            slack_over_http=slack_over_http,
            acking=self.acking,
            read_log=self.service.environments.log,
            links=self.links,
        )

    def settle(self, timeout: float = 60) -> bool:
        """Wait until queued jobs and deploys ran and every message shows the latest state (tests, the console)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (
                not self.jobs.pending
                and not self.deploys.pending
                and self.bot.board.wait_idle(1)
                and not self.jobs.pending
            ):
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self._stop.set()
        self.deploys.shutdown(wait=True)
        self.jobs.shutdown(wait=True)
        self.bot.board.wait_idle(10)
        self.bot.board.close()


def api_url(value: str | None = None) -> str:
    url = value or os.environ.get("SLACK_API_URL") or DEFAULT_API_URL
    return url if url.endswith("/") else url + "/"


def build_client(token: str, base_url: str | None = None) -> WebClient:
    return WebClient(token=token, base_url=api_url(base_url), timeout=10, retry_handlers=retry_handlers())


def build(
    service: DeployService,
    *,
    token: str,
    signing_secret: str | None,
    base_url: str | None = None,
    client: WebClient | None = None,
    verify_requests: bool = True,
    respond: Responder = post_response_url,
    interval: float = 1.0,
    deploy_workers: int = 4,
    job_workers: int = 8,
    links: LinkSigner | None = None,
) -> Runtime:
    """Wire a Bolt app to the service. verify_requests=False only for the in-process console adapter.
    `links` signs the log page links (default: from DEPLOYBOT_LINK_SECRET, _TTL and DEPLOYBOT_PUBLIC_URL)."""
    if links is None:
        try:
            links = LinkSigner.from_env()
        except ValueError as exc:
            raise SystemExit(f"cannot start: {exc}") from None
    client = client or build_client(token, base_url)
    app = App(
        client=client,
        signing_secret=signing_secret or secrets.token_hex(32),
        process_before_response=True,
        request_verification_enabled=verify_requests,
    )
    deploys = BoundedExecutor(deploy_workers, backlog=deploy_workers * 4, name="deploy")
    acking = AckFirst()
    jobs = BoundedExecutor(job_workers, backlog=200, name="slack-job", before=acking.wait_turn)
    service.runs.launch = deploys.submit
    bot = register(app, service, jobs=jobs, client=client, respond=respond, interval=interval)
    bot.board.links = links.url  # the Slack message and its thread carry a "Full log" link when a base URL is set
    return Runtime(service, app, bot, Metrics(service), deploys, jobs, acking, links=links)


def serve(config: Config, port: int = 3000) -> None:
    """`deploybot serve`: Socket Mode when SLACK_APP_TOKEN is set, else HTTP (waitress) on `port`.

    /healthz and /metrics are served over HTTP in both modes (container health checks, Prometheus)."""
    import waitress

    from bot import logs
    from bot.store import Store

    logs.setup()
    token = os.environ.get("SLACK_BOT_TOKEN")
    secret = os.environ.get("SLACK_SIGNING_SECRET")
    app_token = os.environ.get("SLACK_APP_TOKEN")
    if not token:
        raise SystemExit("SLACK_BOT_TOKEN is not set")
    if not app_token and not secret:
        raise SystemExit("SLACK_SIGNING_SECRET is required in HTTP mode (or set SLACK_APP_TOKEN for Socket Mode)")
    service = DeployService(config, Store())
    for dep in service.recovery.orphans():
        log.warning("deployment #%s had lost its process; taken over: %s", dep.id, dep.state.value)
    try:  # Bolt checks the token with auth.test at start; Socket Mode opens its WebSocket
        runtime = build(service, token=token, signing_secret=secret)
        if app_token:
            from slack_bolt.adapter.socket_mode import SocketModeHandler

            SocketModeHandler(runtime.app, app_token, web_client=runtime.bot.client).connect()
    except (OSError, SlackApiError, BoltError) as exc:
        raise SystemExit(f"cannot start: Slack at {api_url()} refused or did not answer: {redact(str(exc))}") from None
    runtime.start_sweeper(min(SWEEP_SECONDS, service.leases.ttl / 2))
    metrics_at = serve_metrics(runtime.metrics, os.environ.get("DEPLOYBOT_METRICS_ADDRESS") or "127.0.0.1:9102")
    if app_token:
        log.info("Socket Mode connected; GET /healthz on :%s; metrics on %s", port, metrics_at)
    else:
        log.info("serving on :%s (POST /slack/events, GET /healthz); metrics on %s", port, metrics_at)
    server = waitress.create_server(
        runtime.wsgi(slack_over_http=not app_token), host="0.0.0.0", port=port, threads=16, ident="deploybot"
    )
    grace = float(os.environ.get("DEPLOYBOT_SHUTDOWN_GRACE") or 30)

    drained = threading.Event()

    def finish() -> None:
        runtime.drain(grace)
        drained.set()
        os.kill(os.getpid(), signal.SIGINT)  # the main thread leaves waitress's loop itself (no cross-thread close)

    def stop(signum: int, _frame: object) -> None:
        if drained.is_set():
            raise KeyboardInterrupt  # waitress's run() returns on it
        if runtime.bot.draining.is_set():
            return
        log.info("signal %s: draining (grace %ss)", signum, grace)
        threading.Thread(target=finish, name="drain", daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.run()
    runtime.close()
    log.info("stopped")


def serve_metrics(metrics: Metrics, address: str) -> str:
    """Prometheus metrics on their own listener (`host:port`; `off` for none), never on the port Slack reaches."""
    if address == "off":
        return "off"
    from prometheus_client import start_http_server

    host, _, port = address.rpartition(":")
    try:
        start_http_server(int(port), addr=host or "127.0.0.1", registry=metrics.registry)
    except (OSError, ValueError) as exc:  # metrics missing is no reason to leave Slack unanswered
        log.error("metrics not served on %s: %s", address, exc)
        return f"nowhere ({address}: {exc})"
    return address


def build_console(service: DeployService, out, interval: float = 0.3):
    """The same bot, driven from a terminal (the demo): Slack's Web API answered in-process and printed."""
    from handlers.console import Console, ConsoleWebClient

    client = ConsoleWebClient(out)
    runtime = build(
        service,
        token="xoxb-console",
        signing_secret=None,
        client=client,
        verify_requests=False,
        respond=client.respond,
        interval=interval,
    )
    return Console(runtime, client)
