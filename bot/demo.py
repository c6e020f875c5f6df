"""`deploybot demo`: the whole product on this machine, no Slack account and no root needed.

Builds a sample app in a temporary workspace, deploys it to two local targets (the same stages, run by sh
instead of SSH), deploys a second version, tries a broken one (auto-rollback), rolls back, and prints the
audit trail.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

import yaml

from bot.config import load_config
from bot.sampleapp import build_artifacts, write_shared_env
from bot.service import DeployService
from bot.store import Store

VERSIONS = {"v1.0.0": "ok", "v1.1.0": "ok", "v1.2.0": "unhealthy"}
DEVELOPER, PM = "U0DEV", "U0PM"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_workspace(root: Path) -> Path:
    """Artifacts, two local hosts with their shared/.env, and a deploy.yml pointing at them."""
    artifacts = build_artifacts(root / "artifacts", VERSIONS)
    hosts = []
    for name in ("web1", "web2"):
        port = _free_port()
        write_shared_env(
            root / "hosts" / name / "app" / "shared",
            {"PORT": str(port), "DATABASE_URL": "postgres://demo:demo-secret@db.internal/app"},
        )
        hosts.append({"host": "local", "name": name, "vars": {"port": port}})
    config = {
        "app": {
            "name": "sampleapp",
            "artifact": str(next(iter(artifacts.values())).parent / "sampleapp-{version}.tar.gz"),
        },
        "environments": {
            "prod": {
                "hosts": hosts,
                "path": str(root / "hosts") + "/{name}/app",
                "production": True,
                "approval": {"approvers": [PM], "approvals_required": 1},
                "required_env": ["DATABASE_URL", "PORT"],
                "backup": {
                    "commands": ['echo "-- dump of $DATABASE_URL" > "$BACKUP_DIR/db.sql"'],
                    "restore_commands": ['test -s "$BACKUP_DIR/db.sql"'],
                    "keep_count": 3,
                },
                "migrate": "sh bin/migrate",
                "restart": "sh bin/restart",
                "health": {"url": "http://127.0.0.1:{port}/health", "timeout": 5, "interval": 0.1},
                "verify_seconds": 1.0,
                "keep_releases": 3,
            }
        },
    }
    path = root / "deploy.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def stop_apps(root: Path) -> None:
    for current in (root / "hosts").glob("*/app/current"):
        subprocess.run(
            ["sh", "bin/stop"],
            cwd=current,
            env={"APP_SHARED": str(current.parent / "shared"), "PATH": "/usr/bin:/bin"},
            capture_output=True,
        )


def _say(out: TextIO, text: str) -> None:
    print(f"\n== {text}", file=out, flush=True)


def run_demo(workdir: Path | None = None, out: TextIO = sys.stdout) -> int:
    """The story in the terminal; the temporary workspace is removed at the end unless `workdir` names one."""
    root = Path(workdir or tempfile.mkdtemp(prefix="deploybot-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    config_path = build_workspace(root)
    service = DeployService(load_config(config_path), Store(f"sqlite:///{root / 'deploybot.db'}"))
    print(f"workspace: {root}", file=out)
    try:
        code = 0 if _story(service, out) else 1
    finally:
        stop_apps(root)
        service.pool.close()
        service.store.close()
        if workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    kept = f"workspace kept at {root}" if workdir else "workspace removed; --workdir DIR keeps one"
    print(f"\ndemo finished in {time.monotonic() - started:.1f}s ({kept})", file=out)
    return code


def _story(service: DeployService, out: TextIO) -> bool:
    from bot.app import build_console
    from handlers.console import run_story

    ok = run_story(build_console(service, out), developer=DEVELOPER, pm=PM, good=["v1.0.0", "v1.1.0"], bad="v1.2.0")
    _say(out, "audit trail")
    for event in service.store.audit_events():
        print(
            f"  {event.at:%H:%M:%S} {event.actor:<9} {event.action:<22} {event.environment or '':<5} "
            f"{event.version or '':<7} {event.outcome or ''}",
            file=out,
        )
    check = service.store.verify_audit()
    print(f"  audit verify: {check.checked} rows, {'intact' if check.ok else 'TAMPERED'}", file=out)
    return ok and check.ok
