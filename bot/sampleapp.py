"""A tiny web app packaged as versioned tarballs: what the demo and the tests deploy.

Each version has a behaviour: ok, unhealthy (/health answers 500), crash (exits at once), old_version (answers
a stale version), migrate_fails. A host can also break one version by listing it in UNHEALTHY_VERSIONS in its
shared/.env, which is how a host-specific misconfiguration looks.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

BEHAVIOURS = ("ok", "unhealthy", "crash", "old_version", "migrate_fails")

APP_PY = r'''
import json, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
VERSION = open(os.path.join(HERE, "VERSION")).read().strip()
BEHAVIOUR = open(os.path.join(HERE, "BEHAVIOUR")).read().strip()
if BEHAVIOUR == "crash":
    sys.exit("crashing on start, as this version was built to")
BROKEN_HERE = VERSION in os.environ.get("UNHEALTHY_VERSIONS", "").split(",")
REPORTED = "v0.0.0-stale" if BEHAVIOUR == "old_version" else VERSION


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/health"):
            if BEHAVIOUR == "unhealthy" or BROKEN_HERE:
                body, code = {"status": "error", "version": VERSION}, 500
            else:
                body, code = {"status": "ok", "version": REPORTED}, 200
            data = json.dumps(body).encode()
            ctype = "application/json"
        else:
            data, code, ctype = f"sampleapp {REPORTED}\n".encode(), 200, "text/plain"
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


ThreadingHTTPServer.allow_reuse_address = True
ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8000"))), Handler).serve_forever()
'''

STOP_SH = r'''#!/bin/sh
# Stop the running app. A zombie counts as stopped: init reaps late here, so kill -0 would wait for nothing.
shared="${APP_SHARED:-..}"
pid=$(cat "$shared/app.pid" 2>/dev/null) || exit 0
[ -n "$pid" ] || exit 0
kill "$pid" 2>/dev/null || exit 0
i=0
while [ $i -lt 40 ]; do
  state=$(sed 's/.*) \(.\).*/\1/' "/proc/$pid/stat" 2>/dev/null) || break
  [ "$state" = "Z" ] && break
  sleep 0.05; i=$((i + 1))
done
kill -9 "$pid" 2>/dev/null
exit 0
'''

RESTART_SH = r'''#!/bin/sh
# Stop the old process, start this release detached, record its pid. The deploy engine polls health itself.
set -e
here=$(cd "$(dirname "$0")/.." && pwd)
shared="${APP_SHARED:-$here/shared}"
sh "$here/bin/stop"
cd "$here"
setsid nohup python3 app.py >>"$shared/app.log" 2>&1 </dev/null &
echo $! > "$shared/app.pid"
'''

MIGRATE_SH = r'''#!/bin/sh
here=$(cd "$(dirname "$0")/.." && pwd)
version=$(cat "$here/VERSION")
if [ "$(cat "$here/BEHAVIOUR")" = "migrate_fails" ]; then
  echo "migration 0042_add_column failed: column already exists" >&2
  exit 1
fi
echo "$version" >> "${APP_SHARED:-$here/shared}/migrations.log"
'''


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def build_artifact(dest: Path, app_name: str, version: str, behaviour: str = "ok", size_bytes: int = 0) -> Path:
    if behaviour not in BEHAVIOURS:
        raise ValueError(f"unknown behaviour {behaviour!r}; one of {BEHAVIOURS}")
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{app_name}-{version}.tar.gz"
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        _add(tar, "app.py", APP_PY.encode())
        _add(tar, "VERSION", f"{version}\n".encode())
        _add(tar, "BEHAVIOUR", f"{behaviour}\n".encode())
        _add(tar, "bin/restart", RESTART_SH.encode(), 0o755)
        _add(tar, "bin/stop", STOP_SH.encode(), 0o755)
        _add(tar, "bin/migrate", MIGRATE_SH.encode(), 0o755)
        if size_bytes:
            _add(tar, "assets/payload.bin", os.urandom(size_bytes))
    return path


def build_artifacts(dest: Path, versions: dict[str, str], app_name: str = "sampleapp",
                    size_bytes: int = 0) -> dict[str, Path]:
    return {v: build_artifact(dest, app_name, v, b, size_bytes) for v, b in versions.items()}


def write_shared_env(shared_dir: Path, values: dict[str, str]) -> Path:
    shared_dir.mkdir(parents=True, exist_ok=True)
    path = shared_dir / ".env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path
