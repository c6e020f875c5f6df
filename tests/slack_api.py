"""A fake Slack Web API: a local threaded HTTP server that records every call and answers like Slack. Point the bot at
it with SLACK_API_URL (or base_url). It answers chat.postMessage / chat.update / chat.postEphemeral with `ok` and
realistic `ts` values, views.open / views.publish, usergroups.users.list (from `groups`), auth.test; `fail_next(n,
status)` makes the next n calls answer 429 (Retry-After: 1) or 500; `fail_until(deadline, *statuses)` makes every
call answer those statuses in turn until time.monotonic() reaches the deadline (an outage); `refusing[channel] =
"not_in_channel"` makes chat.* calls in that channel fail as Slack's do; POSTs to /response/... stand in for
response_url and are recorded as method "response_url".
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlparse


@dataclass
class Call:
    method: str
    params: dict
    status: int = 200
    at: float = field(default_factory=time.monotonic)

    @property
    def text(self) -> str:
        """Everything a user would read: text plus every text in the blocks (or the view's blocks)."""
        return (
            self.params.get("text", "")
            + "\n"
            + _texts(self.params.get("blocks") or (self.params.get("view") or {}).get("blocks") or [])
        )

    def buttons(self) -> list[str]:
        return [
            e["action_id"]
            for b in self.params.get("blocks") or []
            if b.get("type") == "actions"
            for e in b.get("elements", [])
        ]


def _texts(node: object) -> str:
    if isinstance(node, dict):
        return "\n".join(
            _texts(v)
            for k, v in node.items()
            if k in ("text", "elements", "fields", "blocks") or isinstance(v, list | dict)
        )
    if isinstance(node, list):
        return "\n".join(_texts(v) for v in node)
    return node if isinstance(node, str) else ""


class FakeSlack:
    def __init__(self, groups: dict[str, list[str]] | None = None):
        self.groups = groups or {}
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._ts = itertools.count(100)
        self._failures: list[int] = []
        self._outage: tuple[float, itertools.cycle] | None = None  # (monotonic deadline, statuses in turn)
        self.delay = 0.0  # seconds added to every answer: a slow Slack
        self.refusing: dict[str, str] = {}  # channel -> the error chat.* calls there answer (not_in_channel ...)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # ---- control ------------------------------------------------------------------------------------
    def __enter__(self) -> FakeSlack:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def api_url(self) -> str:
        return self.url + "/api/"

    def response_url(self, name: str = "cmd") -> str:
        return f"{self.url}/response/{name}"

    def fail_next(self, n: int, status: int = 429) -> None:
        with self._lock:
            self._failures.extend([status] * n)

    def fail_until(self, deadline: float, *statuses: int) -> None:
        """Until time.monotonic() reaches `deadline`, every call (after any fail_next ones) answers the next of
        `statuses` in turn (429 with Retry-After: 1, or a 5xx): Slack down for a while."""
        with self._lock:
            self._outage = (deadline, itertools.cycle(statuses or (500,)))

    def _status(self) -> int:  # under the lock
        if self._failures:
            return self._failures.pop(0)
        if self._outage and time.monotonic() < self._outage[0]:
            return next(self._outage[1])
        return 200

    # ---- reading what happened ------------------------------------------------------------------------
    def of(self, *methods: str, since: int = 0) -> list[Call]:
        with self._lock:
            return [c for c in self.calls[since:] if c.method in methods and c.status == 200]

    def mark(self) -> int:
        with self._lock:
            return len(self.calls)

    def wait_for(self, check: Callable[[], object], timeout: float = 30.0) -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout}s; calls: {[c.method for c in self.calls][-30:]}")

    def message(self, ts: str) -> Call:
        """The latest version of a posted message (its last chat.update, else its chat.postMessage)."""
        versions = [
            c
            for c in self.of("chat.postMessage", "chat.update")
            if c.params.get("ts") == ts or c.params.get("_ts") == ts
        ]
        return versions[-1]

    def thread(self, ts: str) -> list[Call]:
        return [c for c in self.of("chat.postMessage") if c.params.get("thread_ts") == ts]

    # ---- answering ------------------------------------------------------------------------------------
    def _answer(self, method: str, params: dict) -> dict:
        if method.startswith("chat.") and params.get("channel") in self.refusing:
            return {"ok": False, "error": self.refusing[params["channel"]]}  # HTTP 200, as Slack answers it
        if method == "chat.postMessage":
            ts = f"1732270000.{next(self._ts):06d}"
            params["_ts"] = ts
            return {
                "ok": True,
                "channel": params.get("channel"),
                "ts": ts,
                "message": {"type": "message", "text": params.get("text", ""), "ts": ts, "bot_id": "B0BOT"},
            }
        if method == "chat.update":
            return {"ok": True, "channel": params.get("channel"), "ts": params.get("ts"), "text": params.get("text")}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"1732270000.{next(self._ts):06d}"}
        if method in ("views.open", "views.publish", "views.update"):
            return {"ok": True, "view": {"id": f"V{next(self._ts)}", **(params.get("view") or {})}}
        if method == "usergroups.users.list":
            group = params.get("usergroup", "")
            if group not in self.groups:
                return {"ok": False, "error": "no_such_subteam"}
            return {"ok": True, "users": self.groups[group]}
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://example.slack.com/",
                "team": "Example",
                "user": "deploybot",
                "team_id": "T0TEAM",
                "user_id": "U0BOT",
                "bot_id": "B0BOT",
            }
        return {"ok": True}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _serve(self) -> None:
                url = urlparse(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                params = dict(parse_qsl(url.query))
                if raw:
                    if "json" in (self.headers.get("Content-Type") or ""):
                        params.update(json.loads(raw))
                    else:
                        params.update(dict(parse_qsl(raw)))
                for key in ("blocks", "view", "attachments"):
                    if isinstance(params.get(key), str):
                        params[key] = json.loads(params[key])
                if url.path.startswith("/response/"):
                    method = "response_url"
                elif url.path.startswith("/api/"):
                    method = url.path[len("/api/") :]
                else:
                    self._send(404, {"ok": False})
                    return
                if fake.delay:
                    time.sleep(fake.delay)
                with fake._lock:
                    status = fake._status()
                    call = Call(method, params, status)
                    fake.calls.append(call)
                if status == 429:
                    self._send(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"})
                elif status >= 500:
                    self._send(status, {"ok": False, "error": "fatal_error"})
                elif method == "response_url":
                    self._send(200, None)
                else:
                    self._send(200, fake._answer(method, params))

            def _send(self, status: int, body: dict | None, headers: dict | None = None) -> None:
                data = b"ok" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if body is None else "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        return Handler
