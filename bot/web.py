"""The WSGI app served by waitress: Slack's requests at POST /slack/events (Bolt's own WSGI adapter, no
Flask), GET /healthz, and a deployment's log page behind a signed link: GET /deployments/<id>
and GET /deployments/<id>.json, with ?exp=<unix>&sig=<hex> (bot/links.py). Kept apart from the composition
root so tests and benchmarks can serve exactly what production serves."""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from urllib.parse import parse_qs

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot import logpage
from bot.links import LinkSigner
from bot.metrics import Metrics
from bot.service import Refused
from bot.service.environments import DeploymentLog

log = logging.getLogger(__name__)
SLACK_PATH = "/slack/events"
LOG_PATH = re.compile(r"/deployments/([0-9]{1,12})(\.json)?")


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


def make_wsgi(
    app: App,
    metrics: Metrics,
    healthy: Callable[[], dict],
    *,
    slack_over_http: bool = True,
    acking: AckFirst | None = None,
    read_log: Callable[[int], DeploymentLog] | None = None,
    links: LinkSigner | None = None,
) -> Callable:
    """slack_over_http=False (Socket Mode): Slack's events arrive over the WebSocket and there is no signing secret
    to check HTTP requests against, so the Slack path is not served at all. Log pages are served when both
    `read_log` and `links` are given."""
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
        if read_log and links and method in ("GET", "HEAD") and (m := LOG_PATH.fullmatch(path)):
            return log_page(environ, start_response, int(m.group(1)), bool(m.group(2)), read_log, links)
        return _answer(start_response, "404 Not Found", b"not found\n", "text/plain")

    return wsgi


def log_page(
    environ: dict,
    start_response: Callable,
    deployment_id: int,
    as_json: bool,
    read_log: Callable[[int], DeploymentLog],
    links: LinkSigner,
) -> list[bytes]:
    """A forged, altered or expired link shows nothing (403) and says nothing about the deployment; only a
    valid link learns whether the deployment exists (404)."""
    try:
        query = parse_qs(environ.get("QUERY_STRING", ""), max_num_fields=10)
    except ValueError:  # more fields than a link has
        query = {}
    exp, sig = (query.get(k, [""])[0] for k in ("exp", "sig"))
    nonce = secrets.token_urlsafe(16)
    private = [("Cache-Control", "no-store"), ("Referrer-Policy", "no-referrer"), ("X-Content-Type-Options", "nosniff")]
    if not links.check(deployment_id, exp, sig):
        return _answer(
            start_response,
            "403 Forbidden",
            b"This link is invalid or has expired. Open the deployment from its Slack message for a fresh one.\n",
            "text/plain; charset=utf-8",
            private,
        )
    try:
        doc = logpage.document(read_log(deployment_id))
    except Refused:
        return _answer(start_response, "404 Not Found", b"No such deployment.\n", "text/plain; charset=utf-8", private)
    if as_json:
        return _answer(
            start_response,
            "200 OK",
            json.dumps(doc, ensure_ascii=False).encode(),
            "application/json; charset=utf-8",
            private,
        )
    return _answer(
        start_response,
        "200 OK",
        logpage.html_page(doc, nonce).encode(),
        "text/html; charset=utf-8",
        page_headers(nonce),
    )


def page_headers(nonce: str) -> list[tuple[str, str]]:
    """Nothing runs on the page but its own inline style and script, which may fetch only its JSON."""
    csp = (
        f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return [
        ("Content-Security-Policy", csp),
        ("Referrer-Policy", "no-referrer"),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
    ]


def _answer(
    start_response: Callable, status: str, body: bytes, content_type: str, headers: list[tuple[str, str]] = ()
) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))), *headers])
    return [body]
