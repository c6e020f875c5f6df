"""Shared fixtures: namespace hosts over real SSH, sample app artifacts, a deploy.yml factory, the CLI.

Why real hosts: the bot's promises (nothing reaches a host on bad input, unknown host keys refused, a dead
host named in seconds, rollback to a healthy version) only mean something against real sshd and processes.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from bot.config import load_config
from bot.sampleapp import build_artifacts, write_shared_env
from bot.service import DeployService
from bot.store import Store
from tests.lab import HostLab, LabHost, LabUnavailable

ROOT = Path(__file__).resolve().parents[1]
LAB_HOSTS = 4
# All match bot.config.DEFAULT_VERSION_PATTERN; the bad ones sort below v2 so "newest" stays a good one.
VERSIONS = {
    "v1.0.0": "ok",
    "v1.1.0": "ok",
    "v1.2.0": "ok",
    "v1.9.0": "unhealthy",
    "v1.8.0": "old_version",
    "v1.7.0": "migrate_fails",
    "v1.6.0": "crash",
}
SHARED_ENV = {"PORT": "8000", "DATABASE_URL": "postgres://demo:s3cr3t@db/app"}
APP_PATH = "/srv/app"


@pytest.fixture(scope="session")
def lab():
    """Four namespace hosts for the whole session. Where namespaces cannot be made the SSH tests skip with the
    reason, except under CI (CI=true), which runs as root and must run them all: there it is an error."""
    try:
        lab = HostLab.claim(LAB_HOSTS)
    except LabUnavailable as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI must run the SSH tests, but namespace hosts are unavailable: {exc}")
        pytest.skip(f"namespace hosts unavailable: {exc}")
    yield lab
    lab.stop()


@pytest.fixture
def hosts(lab) -> list[LabHost]:
    """The lab's hosts, each reset (sshd up, link up, no app, empty /srv and logs) before the test."""
    for h in lab.hosts:
        h.reset()
    return lab.hosts


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Path:
    """A folder of sampleapp-<version>.tar.gz, one per entry of VERSIONS."""
    folder = tmp_path_factory.mktemp("artifacts")
    build_artifacts(folder, VERSIONS)
    return folder


def deep_merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.fixture
def make_config(tmp_path, lab, artifacts) -> Callable[..., Path]:
    """make_config(hosts=[...], env="prod", **overrides) -> tmp_path/deploy.yml, with shared/.env on each host.

    Overrides deep-merge into the environment mapping (strategy=..., approval=..., health={"timeout": 2}).
    `artifact=` replaces the artifact template, `upload="fetch"` has hosts download it; `write_env=False` leaves
    the hosts' .env alone (a test that wants it missing); an existing .env is kept (a test may have edited it)."""

    def make(
        hosts: list[LabHost],
        env: str = "prod",
        artifact: str | None = None,
        upload: str = "sftp",
        write_env: bool = True,
        **overrides,
    ) -> Path:
        environment = {
            "hosts": [{"host": f"root@{h.address}", "name": h.name} for h in hosts],
            "ssh": {"key_file": str(lab.key_file), "known_hosts": str(lab.known_hosts), "connect_timeout": 3},
            "path": APP_PATH,
            "restart": "bin/restart",
            "migrate": "bin/migrate",
            "migrations": "expand-contract",  # the sample app's migration only adds: the old release survives it
            "health": {"url": "http://{host}:8000/health", "timeout": 5, "interval": 0.1},
            "required_env": ["DATABASE_URL"],
            "verify_seconds": 0.5,
            "min_free_mb": 10,
        }
        config = {
            "app": {
                "name": "sampleapp",
                "artifact": artifact or str(artifacts / "sampleapp-{version}.tar.gz"),
                "upload": upload,
            },
            "environments": {env: deep_merge(environment, overrides)},
        }
        if write_env:
            for h in hosts:
                shared = h.srv / APP_PATH.removeprefix("/srv/") / "shared"
                if not (shared / ".env").exists():
                    write_shared_env(shared, SHARED_ENV)
        path = tmp_path / "deploy.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    return make


@pytest.fixture
def service(tmp_path) -> Iterator[Callable[[Path], DeployService]]:
    """service(config_path) -> a DeployService on a SQLite file in tmp_path; its connections closed after."""
    made: list[DeployService] = []

    def make(config_path: Path) -> DeployService:
        svc = DeployService(load_config(config_path), Store(f"sqlite:///{tmp_path / 'deploybot.db'}"))
        made.append(svc)
        return svc

    yield make
    for svc in made:
        svc.pool.close()
        svc.store.close()


@pytest.fixture
def db_path(tmp_path) -> Path:
    return tmp_path / "deploybot.db"


@pytest.fixture
def cli_env(db_path) -> Callable[[Path], dict[str, str]]:
    """The environment a user's shell would give `deploybot`: config and a SQLite store in tmp_path, no Slack."""

    def env(config: Path) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
        return {
            **base,
            "DEPLOYBOT_CONFIG": str(config),
            "DATABASE_URL": f"sqlite:///{db_path}",
            "PYTHONPATH": str(ROOT),
            "USER": "tester",
        }

    return env


@pytest.fixture
def cli(cli_env, tmp_path) -> Callable[..., subprocess.CompletedProcess]:
    """cli("deploy", "prod", "v1.0.0", "--yes", config=path) runs `python -m bot.cli ...` in its own process.
    Without config=, the deploy.yml make_config last wrote in tmp_path."""

    def run(*args: str, config: Path | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "bot.cli", *args],
            env=cli_env(config or tmp_path / "deploy.yml"),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture
def world(tmp_path, make_config):
    """world(hosts, groups=None, build_options=None, **env overrides) -> the production WSGI app under waitress on a
    SQLite file, with a fresh FakeSlack (knowing `groups`); both stopped after the test."""
    from tests.slack_api import FakeSlack
    from tests.slack_client import BotUnderTest

    started = []

    def start(hosts, groups: dict | None = None, build_options: dict | None = None, **overrides):
        fake = FakeSlack(groups=groups).__enter__()
        bot = BotUnderTest(
            make_config(hosts=hosts, **overrides),
            f"sqlite:///{tmp_path / 'deploybot.db'}",
            fake,
            **(build_options or {}),
        ).__enter__()
        started.append((bot, fake))
        return bot

    yield start
    for bot, fake in started:
        bot.__exit__(None, None, None)
        fake.__exit__(None, None, None)
