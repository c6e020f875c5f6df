"""A tiny web app packaged as versioned tarballs: what `deploybot demo` and the tests deploy.

Why it exists: every deploy stage needs something real to act on (a process to restart, a health URL that
answers a version, a migration that can fail), and the failure modes the bot must catch are easiest to prove
with an app built to fail in exactly one way. Each version gets a behaviour:

- ok            healthy, answers its own version
- unhealthy     starts, but /health answers 500
- crash         exits at once
- old_version   healthy but answers a stale version (the "old process still running" case)
- migrate_fails bin/migrate exits 1 with a message on stderr

A host can also break one version by listing it in UNHEALTHY_VERSIONS in its shared/.env, which is how a
host-specific misconfiguration looks; listed in ERRORING_VERSIONS, the version's /health stays fine while every
other page answers 500 (what only a canary's balancer gate catches).

The engine runs bin/* from inside the release folder with APP_PATH, APP_SHARED, RELEASE_PATH and
DEPLOY_VERSION set, plus everything in $APP_SHARED/.env (PORT, DATABASE_URL, ...); in a blue-green slot also
APP_SLOT and that slot's PORT, so two copies run side by side, each with its own pid file.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

BEHAVIOURS = ("ok", "unhealthy", "crash", "old_version", "migrate_fails")
STALE_VERSION = "v0.0.0-stale"

APP_PY = r'''"""sampleapp: GET /health -> {"version", "status", "host"}; GET /slow?seconds=N (at most 10) answers late;
GET / -> text. Every answer names the host in X-Served-By. Stdlib only.

What an app needs for zero-downtime deploys, and this one does: it takes its port from PORT, and on SIGTERM it
stops accepting, finishes the requests in flight, and exits 0.

socketserver rather than http.server, which imports the email package: this starts on ~10 ms of CPU instead of
~40 ms, so twenty hosts restarting on a 2-core machine measure the deploy, not twenty unneeded imports.
"""
import errno, json, os, signal, socket, socketserver, sys, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
VERSION = open(os.path.join(HERE, "VERSION")).read().strip()
BEHAVIOUR = open(os.path.join(HERE, "BEHAVIOUR")).read().strip()
if BEHAVIOUR == "crash":
    sys.exit(f"sampleapp {VERSION}: crashing on start, as this version was built to")
BROKEN_HERE = VERSION in os.environ.get("UNHEALTHY_VERSIONS", "").split(",")
ERRORING_HERE = VERSION in os.environ.get("ERRORING_VERSIONS", "").split(",")
REPORTED = "__STALE__" if BEHAVIOUR == "old_version" else VERSION
REASONS = {200: "OK", 500: "Internal Server Error"}
HOST = socket.gethostname()


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        request = self.rfile.readline(8192).decode("latin-1").split()
        while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):  # headers: not needed
            pass
        path = request[1] if len(request) > 1 else "/"
        if path.startswith("/slow"):
            query = dict(p.partition("=")[::2] for p in path.partition("?")[2].split("&") if p)
            time.sleep(min(10.0, float(query.get("seconds") or 1)))
        if path.split("?")[0] == "/health":
            if BEHAVIOUR == "unhealthy" or BROKEN_HERE:
                body, code = {"status": "error", "version": REPORTED, "host": HOST}, 500
            else:
                body, code = {"status": "ok", "version": REPORTED, "host": HOST}, 200
            data, ctype = json.dumps(body).encode(), "application/json"
        else:
            code = 500 if ERRORING_HERE else 200
            data, ctype = f"sampleapp {REPORTED}\n".encode(), "text/plain"
        head = (f"HTTP/1.0 {code} {REASONS[code]}\r\nContent-Type: {ctype}\r\nContent-Length: {len(data)}\r\n"
                f"X-Served-By: {HOST}\r\nConnection: close\r\n\r\n")
        self.wfile.write(head.encode() + data)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = False  # server_close() waits for the requests in flight
    block_on_close = True


def serve(port):
    # The previous process may still hold the port for a moment after bin/stop: retry for up to 2 s.
    for attempt in range(40):
        try:
            return Server(("0.0.0.0", port), Handler)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or attempt == 39:
                raise
            time.sleep(0.05)


server = serve(int(os.environ.get("PORT", "8000")))
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
print(f"sampleapp {VERSION} ({BEHAVIOUR}) pid {os.getpid()} on port {server.server_address[1]}", flush=True)
server.serve_forever()
server.server_close()  # stop accepting, then let every request in flight finish
print(f"sampleapp {VERSION} stopped after its requests in flight", flush=True)
'''.replace("__STALE__", STALE_VERSION)

STOP_SH = r"""#!/bin/sh
# Stop the app whose pid is in $APP_SHARED/app.pid (a blue-green slot's: app-$APP_SLOT.pid). Fast on purpose: a
# zombie (state Z) or a missing pid counts as stopped, because init reaps late on these machines and waiting for
# kill -0 to fail wastes seconds.
here=$(cd "$(dirname "$0")/.." && pwd)
shared="${APP_SHARED:-$here/shared}"
pid=$(cat "$shared/app${APP_SLOT:+-$APP_SLOT}.pid" 2>/dev/null)
case "$pid" in ''|*[!0-9]*) exit 0 ;; esac
# only our app: a stale pid file must never kill whatever process got that pid since
tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q 'app\.py' || exit 0
kill "$pid" 2>/dev/null || exit 0
gone() { state=$(sed 's/.*) \(.\).*/\1/' "/proc/$pid/stat" 2>/dev/null) || return 0; [ "$state" = Z ]; }
port=$(printf '%04X' "${PORT:-8000}")
listening() { grep -q "^ *[0-9]*: [0-9A-F]*:$port [0-9A-F]*:0000 0A" /proc/net/tcp /proc/net/tcp6 2>/dev/null; }
i=0
while ! gone && [ $i -lt 200 ]; do sleep 0.01; i=$((i + 1)); done
gone || kill -9 "$pid" 2>/dev/null
# the port (when we know it, as under the engine, which exports shared/.env): at most ~2 s in all
[ -n "$PORT" ] || exit 0
while listening && [ $i -lt 200 ]; do sleep 0.01; i=$((i + 1)); done
exit 0
"""

RESTART_SH = r"""#!/bin/sh
# Stop the previous process, start this release detached, record its pid, return at once:
# the deploy engine polls /health itself. In a blue-green slot ($APP_SLOT, with its $PORT) only that slot's
# process is stopped and its pid goes to app-$APP_SLOT.pid: the other slot keeps serving.
set -e
here=$(cd "$(dirname "$0")/.." && pwd)
shared="${APP_SHARED:-$here/shared}"
mkdir -p "$shared"
sh "$here/bin/stop"
cd "$here"
setsid nohup python3 app.py >>"$shared/app.log" 2>&1 </dev/null &
echo $! > "$shared/app${APP_SLOT:+-$APP_SLOT}.pid"
"""

MIGRATE_SH = r"""#!/bin/sh
# Record that this version's migrations ran (tests read migrations.log), or fail as migrate_fails does.
here=$(cd "$(dirname "$0")/.." && pwd)
version=$(cat "$here/VERSION")
if [ "$(cat "$here/BEHAVIOUR")" = "migrate_fails" ]; then
  echo "migration 0042_add_column failed for $version: column \"plan\" already exists" >&2
  exit 1
fi
shared="${APP_SHARED:-$here/shared}"
mkdir -p "$shared"
echo "$version" >> "$shared/migrations.log"
"""


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 1_700_000_000
    tar.addfile(info, io.BytesIO(data))


def build_artifact(dest: Path, app_name: str, version: str, behaviour: str = "ok", size_bytes: int = 0) -> Path:
    """One tarball, dest/{app_name}-{version}.tar.gz; size_bytes pads it with random (incompressible) bytes."""
    if behaviour not in BEHAVIOURS:
        raise ValueError(f"unknown behaviour {behaviour!r}; one of {BEHAVIOURS}")
    if "/" in version or version.startswith("."):
        raise ValueError(f"{version!r} cannot be part of a file name")
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{app_name}-{version}.tar.gz"
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        _add(tar, "app.py", APP_PY.encode())
        _add(tar, "VERSION", f"{version}\n".encode())
        _add(tar, "BEHAVIOUR", f"{behaviour}\n".encode())
        _add(tar, "bin/restart", RESTART_SH.encode(), 0o755)
        _add(tar, "bin/stop", STOP_SH.encode(), 0o755)
        _add(tar, "bin/migrate", MIGRATE_SH.encode(), 0o755)
        if size_bytes > 0:
            _add(tar, "assets/payload.bin", os.urandom(size_bytes))
    return path


def build_artifacts(
    dest: Path, versions: dict[str, str], app_name: str = "sampleapp", size_bytes: int = 0
) -> dict[str, Path]:
    """{version: behaviour} -> {version: tarball path}."""
    return {v: build_artifact(dest, app_name, v, b, size_bytes) for v, b in versions.items()}


def write_shared_env(shared_dir: Path, values: dict[str, str]) -> Path:
    """shared/.env as the engine sources it (`set -a; . .env`): one KEY=value a line, values single-quoted."""
    shared_dir.mkdir(parents=True, exist_ok=True)
    path = shared_dir / ".env"
    path.write_text("".join(f"{k}={_sh_quote(str(v))}\n" for k, v in values.items()))
    return path


def _sh_quote(value: str) -> str:
    if value and all(c.isalnum() or c in "@%+=:,./-_" for c in value):
        return value
    return "'" + value.replace("'", "'\"'\"'") + "'"
