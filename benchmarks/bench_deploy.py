"""Deploy and rollback wall time to 1, 5 and 20 namespace hosts (5 MB artifact), beside a serial Fabric script.

deploybot runs twice: with `app.upload: fetch` (each host downloads the artifact from a plain HTTP artifact store,
as from S3 or a CI's artifact URL) and with `app.upload: sftp` (the bot sends it over SSH, as the serial script does).

Run as root (network namespaces):  python benchmarks/bench_deploy.py [--hosts 1,5,20] [--size-mb 5]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import paramiko
import yaml
from fabric import Connection

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.config import load_config  # noqa: E402
from bot.domain import State  # noqa: E402
from bot.sampleapp import build_artifacts, write_shared_env  # noqa: E402
from bot.service import DeployService  # noqa: E402
from bot.store import Store  # noqa: E402
from tests.lab.hosts import HostLab  # noqa: E402
from tests.lab.store import artifact_store  # noqa: E402

COMMAND = "python benchmarks/bench_deploy.py"


def make_config(work: Path, lab: HostLab, hosts, artifacts: str, upload: str) -> Path:
    cfg = {
        "app": {"name": "sampleapp", "artifact": artifacts + "/sampleapp-{version}.tar.gz", "upload": upload},
        "environments": {
            "prod": {
                "hosts": [f"root@{h.address}" for h in hosts],
                "ssh": {"key_file": str(lab.key_file), "known_hosts": str(lab.known_hosts), "connect_timeout": 5},
                "path": "/srv/app",
                "restart": "sh bin/restart",
                "backup": {"release_archive": False},
                "health": {"url": "http://{host}:8000/health", "timeout": 10, "interval": 0.05},
                "min_free_mb": 10,
            }
        },
    }
    path = work / f"deploy-{len(hosts)}-{upload}.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def reset(hosts) -> None:
    for h in hosts:
        h.reset()
        write_shared_env(h.srv / "app" / "shared", {"PORT": "8000"})


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bot_run(config: Path, db: Path, hosts) -> dict[str, float]:
    """Cold deploy, warm deploy, warm rollback, then cold rollback from a fresh service (no open connections)."""
    out = {}

    def service() -> DeployService:
        return DeployService(load_config(config), Store(f"sqlite:///{db}"))

    svc = service()

    def deploy(version: str) -> None:
        dep = svc.deploy("prod", version, "bench")
        assert dep.state is State.SUCCEEDED, (dep.state, dep.error)

    def rollback() -> None:
        dep = svc.rollback("prod", "bench")
        assert dep.state is State.SUCCEEDED, (dep.state, dep.error)

    out["deploy_cold"] = timed(lambda: deploy("v1.0.0"))
    out["deploy_warm"] = timed(lambda: deploy("v1.1.0"))
    out["rollback_warm"] = timed(rollback)
    deploy("v1.1.0")
    svc.pool.close()
    svc = service()
    out["rollback_cold"] = timed(rollback)
    svc.pool.close()
    return out


def serial_fabric(lab: HostLab, hosts, artifact_dir: Path) -> dict[str, float]:
    """What a team writes by hand: one host after the other, the same bare steps."""

    def connect(h) -> Connection:
        c = Connection(h.address, user="root", connect_kwargs={"key_filename": str(lab.key_file)})
        c.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        c.client.load_host_keys(str(lab.known_hosts))
        return c

    def wait(h, version: str) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://{h.address}:8000/health", timeout=1) as r:
                    if json.loads(r.read())["version"] == version:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{h.name} not healthy on {version}")

    def activate(c: Connection, version: str) -> None:
        rel = f"/srv/app/releases/{version}"
        c.run(f"cd /srv/app && ln -sfn releases/{version} current.tmp && mv -Tf current.tmp current", hide=True)
        c.run(
            f"cd {rel} && export APP_PATH=/srv/app APP_SHARED=/srv/app/shared && set -a && . /srv/app/shared/.env"
            f" && set +a && sh bin/restart",
            hide=True,
        )

    def deploy(version: str) -> None:
        art = artifact_dir / f"sampleapp-{version}.tar.gz"
        for h in hosts:
            with connect(h) as c:
                rel = f"/srv/app/releases/{version}"
                c.run("mkdir -p /srv/app/releases", hide=True)
                c.put(str(art), f"/srv/app/{art.name}")
                c.run(
                    f"sha256sum /srv/app/{art.name} && mkdir -p {rel} && tar -xzf /srv/app/{art.name} -C {rel}",
                    hide=True,
                )
                activate(c, version)
                wait(h, version)

    def rollback(version: str) -> None:
        for h in hosts:
            with connect(h) as c:
                activate(c, version)
                wait(h, version)

    reset(hosts)
    return {
        "deploy_cold": timed(lambda: deploy("v1.0.0")),
        "rollback_cold": (deploy("v1.1.0"), timed(lambda: rollback("v1.0.0")))[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", default="1,5,20")
    parser.add_argument("--size-mb", type=float, default=5)
    args = parser.parse_args()
    counts = [int(n) for n in args.hosts.split(",")]
    work = Path(tempfile.mkdtemp(prefix="deploybot-bench-"))
    artifacts = work / "artifacts"
    build_artifacts(artifacts, {"v1.0.0": "ok", "v1.1.0": "ok"}, size_bytes=int(args.size_mb * 1024 * 1024))
    for sha in (artifacts / f"sampleapp-{v}.tar.gz" for v in ("v1.0.0", "v1.1.0")):  # published checksums
        sha.with_name(sha.name + ".sha256").write_text(hashlib.sha256(sha.read_bytes()).hexdigest() + "\n")
    rows = []
    with HostLab(max(counts)) as lab, artifact_store(artifacts, lab.services_address) as store:
        for n in counts:
            hosts = lab.hosts[:n]
            run = {}
            for upload, source in (("fetch", store), ("sftp", str(artifacts))):
                reset(hosts)
                run[upload] = bot_run(
                    make_config(work, lab, hosts, source, upload), work / f"bench-{n}-{upload}.db", hosts
                )
            serial = serial_fabric(lab, hosts, artifacts)
            rows.append((n, run["fetch"], run["sftp"], serial))
            print(f"measured {n} host(s)", file=sys.stderr, flush=True)
    print(
        f"\nDeploy and rollback wall time, {args.size_mb:g} MB artifact, namespace hosts over SSH "
        f"(`{COMMAND} --hosts {args.hosts} --size-mb {args.size_mb:g}`)\n"
    )
    print(
        "| hosts | deploy, fetch (cold) | deploy, fetch (warm) | rollback (warm) | rollback (cold) "
        "| deploy, sftp (cold) | deploy, sftp (warm) | serial Fabric deploy | serial Fabric rollback "
        "| speed-up fetch cold / warm | speed-up sftp cold / warm |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, fetch, sftp, serial in rows:
        base = serial["deploy_cold"]
        print(
            f"| {n} | {fetch['deploy_cold']:.2f} s | {fetch['deploy_warm']:.2f} s | {fetch['rollback_warm']:.2f} s "
            f"| {fetch['rollback_cold']:.2f} s | {sftp['deploy_cold']:.2f} s | {sftp['deploy_warm']:.2f} s "
            f"| {base:.2f} s | {serial['rollback_cold']:.2f} s "
            f"| {base / fetch['deploy_cold']:.1f}x / {base / fetch['deploy_warm']:.1f}x "
            f"| {base / sftp['deploy_cold']:.1f}x / {base / sftp['deploy_warm']:.1f}x |"
        )


if __name__ == "__main__":
    main()
