"""`deploybot demo`: the whole product on this machine, no Slack account and no root needed.

Builds a sample app in a temporary workspace, deploys it to two local targets (the same stages, run by sh
instead of SSH), deploys a second version, tries a broken one (auto-rollback), rolls back, and prints the
audit trail. Where nginx is installed, a third local target shows blue-green: nginx in front of two slots, a
deploy on the idle slot, and a rollback that is a flip back with no restart (without nginx the demo says so).
"""

from __future__ import annotations

import os
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
    single = blue_green_environment(root, _free_port, approvers=[PM])
    if single is not None:  # nginx is installed: one server, nginx in front of its two slots
        config["environments"]["single"] = single
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
    stop_blue_green(root)


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
    ok = blue_green_chapter(service, build_console(service, out), DEVELOPER, PM, ["v1.0.0", "v1.1.0"]) and ok
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


# ---- blue-green on one server: nginx in front of two slots of the sample app --------------------------------
BG_ENV = "single"


def _nginx() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


def blue_green_environment(root: Path, free_port, approvers: list[str]) -> dict | None:
    """The `single` environment: one local target with nginx (its own files in the workspace) in front of the
    slots; None where nginx is not installed."""
    nginx = _nginx()
    if nginx is None:
        return None
    folder, (proxy, blue, green) = root / "nginx", (free_port() for _ in range(3))
    folder.mkdir(parents=True, exist_ok=True)
    temp = "".join(f"{k}_temp_path {folder}/{k}_temp; " for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    # until deploybot's first flip writes its snippet there (and reloads nginx once): the first slot
    (folder / "live.conf").write_text(f"set $deploybot_live 127.0.0.1:{blue};\n")
    (folder / "nginx.conf").write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"worker_processes 1;\npid {folder}/nginx.pid;\nerror_log {folder}/error.log;\n"
        f"events {{ worker_connections 256; }}\nhttp {{ access_log off; {temp}\n  server {{ listen 127.0.0.1:{proxy};"
        f" include {folder}/live.conf; location / {{ proxy_pass http://$deploybot_live; }} }}\n}}\n"
    )
    command = f"{nginx} -c {folder}/nginx.conf -e {folder}/error.log"
    if subprocess.run(f"{command} -t -q && {command}", shell=True, capture_output=True).returncode:
        return None  # nginx would not start here (say, no rights to its paths): the demo goes on without it
    write_shared_env(root / "hosts" / "box" / "app" / "shared", {"DATABASE_URL": "postgres://demo:demo-secret@db/app"})
    return {
        "hosts": [{"host": "local", "name": "box"}],
        "path": str(root / "hosts" / "box" / "app"),
        "approval": {"approvers": approvers, "approvals_required": 1},
        "required_env": ["DATABASE_URL"],
        "strategy": {
            "kind": "blue-green",
            "slots": {"blue": blue, "green": green},
            "proxy": {
                "port": proxy,
                "config": f"{folder}/live.conf",
                "test": f"{command} -t -q",
                "reload": f"{command} -s reload",
                "pid_file": f"{folder}/nginx.pid",
            },
            "keep_old_slot": True,
        },
        "restart": "sh bin/restart",
        "health": {"url": "http://127.0.0.1:{port}/health", "timeout": 5, "interval": 0.1},
        "verify_seconds": 1.0,
    }


def stop_blue_green(root: Path) -> None:
    """Both slots' apps, then nginx."""
    shared = root / "hosts" / "box" / "app" / "shared"
    for pid_file in shared.glob("app-*.pid"):
        slot = pid_file.stem.removeprefix("app-")
        release = (root / "hosts" / "box" / "app" / "slots" / slot).resolve()
        env = {"APP_SHARED": str(shared), "APP_SLOT": slot, "PATH": "/usr/bin:/bin"}
        if (release / "bin" / "stop").is_file():
            subprocess.run(["sh", "bin/stop"], cwd=release, env=env, capture_output=True)
    nginx, conf = _nginx(), root / "nginx" / "nginx.conf"
    if nginx and conf.exists():
        subprocess.run(
            [nginx, "-c", str(conf), "-e", str(root / "nginx" / "error.log"), "-s", "stop"], capture_output=True
        )


def blue_green_chapter(service: DeployService, console, developer: str, pm: str, good: list[str]) -> bool:
    """Deploy two versions blue-green through the chat, then /rollback: a flip back to the warm slot."""
    say = console.client.say
    if BG_ENV not in service.config.environments:
        why = "would not start here" if _nginx() else "is not installed here (apt-get install nginx shows it)"
        say(f"\n== blue-green: skipped, nginx {why}")
        console.close()
        return True
    env = service.config.environments[BG_ENV]
    shared = Path(env.path) / "shared"
    slots, proxy = env.strategy.slots, env.strategy.proxy
    results = []
    try:
        say(
            f"\n== blue-green on one server ({BG_ENV}): nginx on port {proxy.port} in front of two slots, "
            + ", ".join(f"{s} on {p}" for s, p in slots.items())
            + ". Each release starts on the idle slot and is checked there before nginx flips to it."
        )
        for version in good:
            console.command(developer, f"/deploy {BG_ENV} {version}")
            console.settle()
            ts = console.last_message()
            console.click(pm, "approve", ts)
            console.settle()
            results.append("Succeeded" in console.text(ts))
        warm = next(s for s in slots if (Path(env.path) / "slots" / s).resolve().name == good[0])
        before = (shared / f"app-{warm}.pid").read_text().strip()
        say(f"\n== {good[0]} still runs on the {warm} slot (pid {before}), kept warm: /rollback is a flip back")
        console.rollback(developer, f"/rollback {BG_ENV} {good[0]}", "demo: flip back to the warm slot")
        results.append("Succeeded" in console.text(console.last_message()))
        after = (shared / f"app-{warm}.pid").read_text().strip()
        say(f"\n== the {warm} slot serves again with the same process (pid {after}): nothing restarted")
        results.append(before == after)
    finally:
        console.close()
    return all(results)
