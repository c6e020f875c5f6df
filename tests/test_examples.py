"""The example configs are what a newcomer copies, so each must pass `deploybot check-config` as written.

check-config also looks at this machine's disk (the SSH key, known_hosts, the artifact folder), so each example
is copied into a temporary folder with only those paths moved under it (every other value stays as written, which
the copy checks), and the files they name are created there. Then the real CLI runs as its own process."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bot.config import ConfigError, parse_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.yml"))


def test_the_examples_are_there():
    assert {p.name for p in EXAMPLES} >= {"deploy.yml", "single-server.yml"}


def local_paths(data: dict) -> list[tuple[tuple, str, str]]:
    """Every value check-config looks for on this machine: (where in the YAML, the path, "file" or "folder")."""
    found = []
    artifact = data["app"]["artifact"]
    if not artifact.startswith(("http://", "https://")):
        found.append((("app", "artifact"), artifact, "folder"))
    for name, env in data["environments"].items():
        for key in ("key_file", "known_hosts"):
            if (env.get("ssh") or {}).get(key):
                found.append((("environments", name, "ssh", key), env["ssh"][key], "file"))
    return found


def place(example: Path, tmp_path: Path, create: bool = True) -> Path:
    """Copy EXAMPLE into TMP_PATH with its local paths moved under TMP_PATH/root (and, with CREATE, made there),
    plus a known_hosts in the test's $HOME for configs that rely on ~/.ssh/known_hosts."""
    text = example.read_text()
    data = yaml.safe_load(text)
    root = tmp_path / "root"
    moved = {path: str(root) + path for _, path, _ in local_paths(data)}
    assert all(p.startswith("/") for p in moved), f"{example.name}: local paths in an example should be absolute"
    if moved:
        pattern = re.compile(
            r"(?<![\w./-])(" + "|".join(map(re.escape, sorted(moved, key=len, reverse=True))) + r")(?![\w./-])"
        )
        text = pattern.sub(lambda m: moved[m.group(1)], text)
    expected = copy.deepcopy(data)
    for where, path, _ in local_paths(data):
        node = expected
        for key in where[:-1]:
            node = node[key]
        node[where[-1]] = moved[path]
    assert yaml.safe_load(text) == expected, "the copy must differ from the example only in its local paths"
    if create:
        for _, path, kind in local_paths(expected):
            target = Path(path.split("{version}")[0]).parent if kind == "folder" else Path(path)
            if kind == "folder":
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text("placeholder\n")
        (tmp_path / "home" / ".ssh").mkdir(parents=True, exist_ok=True)
        (tmp_path / "home" / ".ssh" / "known_hosts").write_text("")
    copy_path = tmp_path / example.name
    copy_path.write_text(text)
    return copy_path


def check_config(config: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_URL", "DEPLOYBOT_"))}
    env.update(HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "check-config", "--config", str(config)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_passes_check_config(example, tmp_path):
    data = yaml.safe_load(example.read_text())
    res = check_config(place(example, tmp_path), tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    envs = ", ".join(f"{name} ({len(env['hosts'])} hosts)" for name, env in data["environments"].items())
    assert f"ok: {data['app']['name']}: {envs}" in res.stdout.splitlines(), res.stdout


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_without_its_files_names_each_missing_one(example, tmp_path):
    """The placed files are what makes the previous test pass: without them, every path is named."""
    data = yaml.safe_load(example.read_text())
    res = check_config(place(example, tmp_path, create=False), tmp_path)
    assert res.returncode == 2 and "ok:" not in res.stdout, res.stdout + res.stderr
    expected = [".".join(where) for where, _, _ in local_paths(data)]
    expected += [
        f"environments.{name}.ssh.known_hosts"
        for name, env in data["environments"].items()
        if not (env.get("ssh") or {}).get("known_hosts")
    ]  # then ~/.ssh/known_hosts, absent in $HOME
    for location in expected:
        assert f"config error: {location}: " in res.stderr, (location, res.stderr)


def _set(data: dict, where: str, value) -> None:
    *parents, last = where.split(".")
    for key in parents:
        data = data[key]
    data[last] = value


BROKEN = {  # what is changed in a copy of examples/deploy.yml -> the location check-config must name
    "unknown key": ("environments.prod.restrat", "sudo systemctl restart shop", "environments.prod.restrat: "),
    "path escaping its base": ("environments.prod.path", "/srv/shop/../../etc", "environments.prod.path: "),
    "relative path": ("environments.staging.path", "srv/shop", "environments.staging.path: "),
    "shell in a host": (
        "environments.prod.hosts",
        ["deploy@10.0.1.11", "deploy@10.0.1.12;reboot"],
        "environments.prod.hosts[1]: ",
    ),
    "approval policy typo": (
        "environments.prod.approval.approver",
        ["U024BE7LH"],
        "environments.prod.approval.approver: ",
    ),
    "batch covering every host": (
        "environments.prod.strategy.batch_size",
        2,
        "environments.prod.strategy.batch_size: ",
    ),
}


@pytest.mark.parametrize("change", BROKEN, ids=list(BROKEN))
def test_broken_copy_is_rejected_with_the_location(change, tmp_path):
    where, value, message = BROKEN[change]
    config = place(ROOT / "examples" / "deploy.yml", tmp_path)
    data = yaml.safe_load(config.read_text())
    _set(data, where, value)
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    res = check_config(config, tmp_path)
    assert res.returncode == 2 and "ok:" not in res.stdout, res.stdout + res.stderr
    assert f"config error: {message}" in res.stderr, res.stderr


def test_full_example_shows_what_a_newcomer_needs():
    data = yaml.safe_load((ROOT / "examples" / "deploy.yml").read_text())
    cfg = parse_config(data)
    assert set(cfg.environments) == {"staging", "prod"}
    staging, prod = cfg.environment("staging"), cfg.environment("prod")
    assert not staging.approval.enabled and not staging.production
    assert prod.production and prod.strategy.kind == "rolling" and len(prod.hosts) > prod.strategy.batch_size
    approvers = prod.approval.approvers
    assert any(re.fullmatch(r"U[A-Z0-9]+", a) for a in approvers), approvers  # a user ID
    assert any(re.fullmatch(r"S[A-Z0-9]+", a) for a in approvers), approvers  # a user group ID
    assert prod.backup.commands and prod.backup.restore_commands and prod.migrate and prod.required_env
    assert prod.ssh.key_file and prod.ssh.known_hosts and cfg.secrets and "upload" in data["app"]
    text = (ROOT / "examples" / "deploy.yml").read_text()
    assert "Copy member ID" in text and "usergroups.list" in text and "version_pattern" in text


def _leaves(data: dict, prefix: tuple = ()) -> list[tuple]:
    out = []
    for key, value in data.items():
        out.append(prefix + (key,))
        if isinstance(value, dict):
            out += _leaves(value, prefix + (key,))
    return out


def test_single_server_example_is_the_smallest_that_works():
    """One host, no approval, in-place; and no key in it can be left out."""
    data = yaml.safe_load((ROOT / "examples" / "single-server.yml").read_text())
    cfg = parse_config(data)
    [env] = cfg.environments.values()
    assert len(env.hosts) == 1 and not env.approval.enabled and env.strategy.kind == "in-place"
    for where in _leaves(data):
        smaller = copy.deepcopy(data)
        node = smaller
        for key in where[:-1]:
            node = node[key]
        del node[where[-1]]
        with pytest.raises(ConfigError):
            parse_config(smaller)
