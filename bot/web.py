"""The WSGI app served by waitress: Slack's requests at POST /slack/events (Bolt's own WSGI adapter, no
Flask), GET /healthz and GET /metrics. Kept apart from the composition root so tests and benchmarks can
serve exactly what production serves."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable

from prometheus_client import CONTENT_TYPE_LATEST
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.metrics import Metrics

log = logging.getLogger(__name__)
SLACK_PATH = "/slack/events"


class AckFirst:
    """Slack waits 3 s for an acknowledgement but 30 minutes for a reply through response_url, so the follow-up
    work of a command (reading hosts, writing the audit, replying) waits while Slack requests are being
    acknowledged. Measured: a burst of 50 commands during a deploy acks in p99 ~45-75 ms when the follow-ups wait,
    ~105-155 ms when they compete for the interpreter (benchmarks/bench_ack.py)."""

    def __init__(self, quiet: float = 0.02, patience: float = 0.5):
        self.quiet, self.patience = quiet, patience
        self._acking = 0
        self._last = float("-inf")
        self._changed = threading.Condition()

    def __enter__(self) -> None:
        with self._changed:
            self._acking += 1

    def __exit__(self, *exc) -> None:
        with self._changed:
            self._acking -= 1
            self._last = time.monotonic()
            self._changed.notify_all()

    def wait_turn(self) -> None:
        """Block until no ack is running and none ended in the last `quiet` s; never longer than `patience`."""
        deadline = time.monotonic() + self.patience
        with self._changed:
            while (now := time.monotonic()) < deadline:
                if not self._acking and now - self._last >= self.quiet:
                    return
                self._changed.wait(min(deadline - now, self.quiet))


def make_wsgi(app: App, metrics: Metrics, healthy: Callable[[], dict], *, slack_over_http: bool = True,
              acking: AckFirst | None = None) -> Callable:
    """slack_over_http=False (Socket Mode): Slack's events arrive over the WebSocket and there is no signing secret
    to check HTTP requests against, so the Slack path is not served at all."""
    slack = SlackRequestHandler(app, path=SLACK_PATH)
    acking = acking or AckFirst()

    def wsgi(environ: dict, start_response: Callable) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        if slack_over_http and path == SLACK_PATH and method == "POST":
            started = time.perf_counter()
            seen: list[str] = []

            def timed_start(status: str, headers: list, exc_info=None):
                seen.append(status.split()[0])
                return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

            with acking:
                body = slack(environ, timed_start)
            metrics.ack_seconds.labels(seen[0] if seen else "500").observe(time.perf_counter() - started)
            return body
        if path == "/healthz" and method in ("GET", "HEAD"):
            try:
                report, status = {"ok": True, **healthy()}, "200 OK"
            except Exception as exc:  # noqa: BLE001 - unhealthy is an answer, not a crash
                log.warning("health check failed: %s", exc)
                report, status = {"ok": False, "error": type(exc).__name__}, "503 Service Unavailable"
            return _answer(start_response, status, json.dumps(report).encode(), "application/json")
        if path == "/metrics" and method == "GET":
            return _answer(start_response, "200 OK", metrics.render(), CONTENT_TYPE_LATEST)
        return _answer(start_response, "404 Not Found", b"not found\n", "text/plain")

    return wsgi


def _answer(start_response: Callable, status: str, body: bytes, content_type: str) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]
