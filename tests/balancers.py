"""Real load balancers for the traffic tests: nginx and HAProxy started on this machine, listening on loopback,
balancing to lab hosts, each with its own config, pid, log and socket files in a test's folder, so they never
touch the system's nginx or HAProxy (nor each other). Also a small app for the hosts that names its host and
has a slow endpoint, and a bounded load loop that records which host answered each request.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.host import Host
from bot.targets.local import LocalTarget
from bot.traffic.haproxy import HAProxyTraffic
from bot.traffic.nginx import LOG_FORMAT, NginxTraffic

# What the sample app lacks for these tests, in a dozen lines: it names its host, /slow?seconds=S&id=X answers
# after S seconds (noting start and end in /root/trafficapp.log), and SIGTERM lets requests in flight finish.
APP = r"""
import json, signal, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit
NAME, PORT, LOCK = sys.argv[1], int(sys.argv[2]), threading.Lock()

def note(line):
    with LOCK, open("/root/trafficapp.log", "a") as log:
        log.write(line + "\n")

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/slow":
            note("start " + query["id"][0])
            time.sleep(float(query["seconds"][0]))
            note("end " + query["id"][0])
        body = json.dumps({"host": NAME, "version": "traffic-test", "status": "ok"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

class Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for the requests in flight
    request_queue_size = 256

server = Server(("0.0.0.0", PORT), Handler)
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
server.serve_forever()
server.server_close()
"""


def require(binary: str) -> str:
    """The binary's path; skip (fail under CI) when it is not installed."""
    path = shutil.which(binary) or next((p for p in (f"/usr/sbin/{binary}",) if Path(p).exists()), None)
    if path is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI must run the traffic tests, but {binary} is not installed (apt-get install {binary})")
        pytest.skip(f"{binary} is not installed (apt-get install {binary})")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(host, port: int = 8000) -> None:
    """The test app on a lab host (inside its namespaces), answering on the host's address:port."""
    (host.home / "trafficapp.py").write_text(APP)
    host.run(
        f"setsid nohup python3 /root/trafficapp.py {host.name} {port} >>/root/trafficapp.out 2>&1 </dev/null &",
        check=True,
    )
    deadline = time.monotonic() + 10
    while host.answering(port) != "traffic-test":
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the test app did not start on {host.name}: "
                + (host.home / "trafficapp.out").read_text(errors="replace")[-500:]
            )
        time.sleep(0.05)


def slow_log(host) -> list[str]:
    path = host.home / "trafficapp.log"
    return path.read_text().split("\n") if path.exists() else []


def _wait_gone(pid_file: Path, timeout: float = 10) -> None:
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            threads = len(os.listdir(f"/proc/{pid}/task"))
        except OSError:
            return
        # init reaps late here, so a zombie counts as stopped; but only once all its threads are gone (the
        # leader of a threaded process, as HAProxy is, shows Z while the others still run)
        if state == "Z" and threads <= 1:
            return
        time.sleep(0.02)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


class Nginx:
    """nginx on loopback in front of `servers` (address:port), one worker so round robin is predictable."""

    def __init__(self, folder: Path, servers: Sequence[str]):
        self.dir = folder
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.conf, self.upstream = self.dir / "nginx.conf", self.dir / "app-upstream.conf"
        self.pid, self.access_log = self.dir / "nginx.pid", self.dir / "access.log"
        self.error_log = self.dir / "error.log"
        lines = "".join(f"    server {s} max_fails=0;\n" for s in servers)
        self.upstream.write_text("upstream app {\n" + lines + "}\n")
        temp = "".join(
            f"{kind}_temp_path {self.dir}/{kind}_temp;\n  "
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        self.conf.write_text(f"""
user root;
worker_processes 1;
pid {self.pid};
error_log {self.error_log} notice;
events {{ worker_connections 1024; }}
http {{
  log_format upstream '$remote_addr "$request" $status {LOG_FORMAT}';
  access_log {self.access_log} upstream;
  {temp}include {self.upstream};
  server {{
    listen 127.0.0.1:{self.port};
    location / {{
      proxy_pass http://app;
      add_header X-Upstream $upstream_addr always;
    }}
  }}
}}
""")
        self.command = f"{require('nginx')} -c {self.conf} -e {self.error_log}"

    def start(self) -> Nginx:
        subprocess.run(f"{self.command} -t -q && {self.command}", shell=True, check=True, capture_output=True)
        _wait_listening(self.port)
        return self

    def stop(self) -> None:
        subprocess.run(f"{self.command} -s stop", shell=True, capture_output=True)
        _wait_gone(self.pid)

    def traffic(self, hosts, target=None, **options) -> NginxTraffic:
        """Driven through `target` (default: this machine, as the `local` host)."""
        options = {"test_command": f"{self.command} -t", "reload_command": f"{self.command} -s reload", **options}
        return NginxTraffic(
            target or LocalTarget(Host(name="local", address="local")),
            str(self.upstream),
            pid_file=str(self.pid),
            access_log=str(self.access_log),
            hosts=hosts,
            **options,
        )


class HAProxy:
    """HAProxy on loopback in front of `servers` ({server name: address:port}), with its admin socket at
    `socket` (a unix socket) and at `admin_address` (TCP, on loopback)."""

    def __init__(self, folder: Path, servers: dict[str, str]):
        self.dir = folder
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port, admin_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.socket, self.admin_address = str(self.dir / "admin.sock"), f"127.0.0.1:{admin_port}"
        self.cfg, self.pid = self.dir / "haproxy.cfg", self.dir / "haproxy.pid"
        self.cfg.write_text(
            f"""
global
  stats socket {self.socket} level admin
  stats socket ipv4@{self.admin_address} level admin
  maxconn 2000
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  retries 2
  option redispatch
frontend web
  bind 127.0.0.1:{self.port}
  default_backend app
backend app
  balance roundrobin
  option httpchk GET /health
  http-response set-header X-Upstream %si:%sp
"""
            + "".join(f"  server {name} {addr} check inter 500ms\n" for name, addr in servers.items())
        )
        self.binary = require("haproxy")

    def start(self) -> HAProxy:
        subprocess.run([self.binary, "-c", "-q", "-f", str(self.cfg)], check=True, capture_output=True)
        subprocess.run([self.binary, "-f", str(self.cfg), "-D", "-p", str(self.pid)], check=True, capture_output=True)
        _wait_listening(self.port)
        return self

    def stop(self) -> None:
        try:
            os.kill(int(self.pid.read_text().split()[0]), signal.SIGTERM)
        except (OSError, ValueError, IndexError):
            return
        _wait_gone(self.pid)

    def traffic(self, hosts, socket: str | None = None, **options) -> HAProxyTraffic:
        return HAProxyTraffic(socket or self.socket, "app", hosts, **options)


def _wait_listening(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on 127.0.0.1:{port}") from None
            time.sleep(0.02)


# ---- requests through the balancer ----------------------------------------------------------------------------
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never an http_proxy from the environment


@dataclass(frozen=True)
class Reply:
    started: float
    ended: float
    status: int | None  # None: no HTTP answer at all
    upstream: str | None  # the backend that answered (the balancer's X-Upstream header), address:port
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200


def get(url: str, timeout: float = 10.0) -> Reply:
    started = time.monotonic()
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            resp.read()
            return Reply(started, time.monotonic(), resp.status, _last(resp.headers.get("X-Upstream")))
    except urllib.error.HTTPError as exc:
        return Reply(started, time.monotonic(), exc.code, _last(exc.headers.get("X-Upstream")), str(exc))
    except OSError as exc:
        return Reply(started, time.monotonic(), None, None, str(exc))


def _last(header: str | None) -> str | None:
    """nginx lists every upstream it tried ("a, b"); the last one answered."""
    return header.replace(" : ", ", ").split(", ")[-1].strip() if header else None


class Load:
    """GET `url` from `threads` threads until stop(), `max_requests` sent or `max_seconds` passed, whichever is
    first; every reply is kept, failures included."""

    def __init__(
        self, url: str, threads: int = 4, max_requests: int = 1000, max_seconds: float = 15.0, pause: float = 0.01
    ):
        self.url, self.max_requests, self.max_seconds, self.pause = url, max_requests, max_seconds, pause
        self.replies: list[Reply] = []
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._sent = 0
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]

    def _loop(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            with self._lock:
                if self._sent >= self.max_requests:
                    return
                self._sent += 1
            reply = get(self.url)
            with self._lock:
                self.replies.append(reply)
            self._stop.wait(self.pause)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> list[Reply]:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)
        return self.replies

    def since(self, moment: float, until: float = float("inf")) -> list[Reply]:
        with self._lock:
            return [r for r in self.replies if moment <= r.started < until]


def send(url: str, count: int, threads: int = 6, max_seconds: float = 20.0) -> list[Reply]:
    """Exactly `count` requests (fewer if `max_seconds` runs out), from `threads` threads at once."""
    load = Load(url, threads=threads, max_requests=count, max_seconds=max_seconds, pause=0)
    with load:
        for t in load._threads:
            t.join(timeout=max_seconds + 15)
    return load.replies


def started_balancer(kind: str, hosts, folder) -> tuple[HAProxy | Nginx, dict]:
    """A started HAProxy or nginx in front of `hosts` (their apps on port 8000) and the deploy.yml `traffic:` that
    names it."""
    endpoints = [f"{h.address}:8000" for h in hosts]
    if kind == "haproxy":
        lb = HAProxy(folder, {f"s{i}": e for i, e in enumerate(endpoints, 1)}).start()
        return lb, {"balancer": "haproxy", "socket": lb.socket, "backend": "app", "port": 8000, "drain_timeout": 10}
    lb = Nginx(folder, endpoints).start()
    return lb, {
        "balancer": "nginx",
        "upstream_file": str(lb.upstream),
        "pid_file": str(lb.pid),
        "access_log": str(lb.access_log),
        "port": 8000,
        "test": f"{lb.command} -t",
        "reload": f"{lb.command} -s reload",
        "drain_timeout": 10,
    }
