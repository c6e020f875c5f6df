"""Shared fixtures: namespace hosts over real SSH, sample app artifacts, a deploy.yml factory, the CLI."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bot.sampleapp import build_artifacts, write_shared_env
from tests.lab import HostLab, LabUnavailable

ROOT = Path(__file__).resolve().parents[1]
VERSIONS = {"v1.0.0": "ok", "v1.1.0": "ok", "v1.2.0": "ok", "v1.9.0": "unhealthy", "v1.8.0": "old_version",
            "v1.7.0": "migrate_fails", "v1.6.0": "crash"}
SHARED_ENV = {"PORT": "8000", "DATABASE_URL": "postgres://demo:s3cr3t@db/app"}


@pytest.fixture(scope="session")
def lab():
    lab = HostLab(4)
    try:
        lab.start()
    except LabUnavailable as exc:
        pytest.skip(f"namespace hosts unavailable: {exc}")
    yield lab
    lab.stop()


@pytest.fixture
def hosts(lab):
    for h in lab.hosts:
        h.reset()
    yield lab.hosts
    for h in lab.hosts:
        h.restore()


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("artifacts")
    build_artifacts(folder, VERSIONS)
    return folder


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.fixture
def make_config(tmp_path, lab, artifacts):
    """deploy.yml for some lab hosts, with shared/.env written on each; keyword overrides merge into the env."""

    def make(hosts, env: str = "prod", artifact: str | None = None, write_env: bool = True, **overrides) -> Path:
        environment = {
            "hosts": [{"host": f"root@{h.address}", "name": h.name} for h in hosts],
            "ssh": {"key_file": str(lab.key_file), "known_hosts": str(lab.known_hosts), "connect_timeout": 3},
            "path": "/srv/app",
            "restart": "sh bin/restart",
            "migrate": "sh bin/migrate",
            "health": {"url": "http://{host}:8000/health", "timeout": 5, "interval": 0.05},
            "required_env": ["DATABASE_URL"],
            "verify_seconds": 0.5,
            "min_free_mb": 10,
        }
        config = {
            "app": {"name": "sampleapp", "artifact": artifact or str(artifacts / "sampleapp-{version}.tar.gz")},
            "environments": {env: _merge(environment, overrides)},
        }
        if write_env:
            for h in hosts:
                if not (h.srv / "app" / "shared" / ".env").exists():
                    write_shared_env(h.srv / "app" / "shared", SHARED_ENV)
        path = tmp_path / "deploy.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    return make


@pytest.fixture
def db_path(tmp_path) -> Path:
    return tmp_path / "deploybot.db"


@pytest.fixture
def cli_env(db_path):
    def env(config: Path) -> dict[str, str]:
        return {**os.environ, "DEPLOYBOT_CONFIG": str(config), "DATABASE_URL": f"sqlite:///{db_path}",
                "PYTHONPATH": str(ROOT), "USER": "tester"}

    return env


@pytest.fixture
def cli(cli_env, tmp_path):
    """Run `deploybot ...` as a user would, in its own process."""

    def run(*args: str, config: Path, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "bot.cli", *args], env=cli_env(config), cwd=tmp_path,
                              capture_output=True, text=True, timeout=timeout)

    return run
