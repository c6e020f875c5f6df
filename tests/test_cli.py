"""The command line as an operator meets it: real `python -m bot.cli` processes, on local targets (no root).

--version, help on every command, argument and option, typed choices, shell completion, --json documents after
real deploys, the live progress table in a terminal (a pseudo-terminal here) next to the plain lines everywhere
else, and `deploybot init` from an empty folder to a file check-config accepts.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import select
import socket
import struct
import subprocess
import sys
import termios
import time
from importlib.metadata import version as installed_version
from pathlib import Path

import pytest
import yaml

from bot.config import parse_config
from bot.demo import build_workspace, stop_apps
from bot.sampleapp import build_artifact, write_shared_env

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "deploy",
    "rollback",
    "status",
    "history",
    "backups",
    "logs",
    "lock",
    "unlock",
    "check-config",
    "init",
    "demo",
    "serve",
    "audit",
}
HEAVY = ("pydantic", "yaml", "sqlalchemy", "alembic", "fabric", "paramiko", "slack_sdk", "slack_bolt", "rich")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
DEPLOYMENT_KEYS = {"id", "kind", "version", "state", "requested_by", "created_at"}


def deploybot(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """A fresh process with no terminal on stdin, no config or store from this shell, and a HOME of its own."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_URL", "DEPLOYBOT_"))}
    (cwd.parent / "home").mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env={**base, "PYTHONPATH": str(ROOT), "HOME": str(cwd.parent / "home"), **(env or {})},
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_terminal(
    *args: str, cwd: Path, env: dict[str, str], answers: tuple[tuple[str, str], ...] = (), width: int = 120
) -> tuple[int, str]:
    """Run with stdin, stdout and stderr on a pseudo-terminal; type each answer once its prompt shows.
    Returns the exit code and what the terminal received, escape sequences removed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, width, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=cwd,
        env={**env, "TERM": "xterm", "PYTHONPATH": str(ROOT)},
    )
    os.close(slave)
    raw, pending, deadline = b"", list(answers), time.monotonic() + 120
    while time.monotonic() < deadline:
        if select.select([master], [], [], 0.2)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            raw += chunk
            if pending and pending[0][0] in ANSI.sub("", raw.decode(errors="replace")):
                os.write(master, pending.pop(0)[1].encode() + b"\r")
                raw += b"\n"  # so the next prompt is looked for after this one
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=30), ANSI.sub("", raw.decode(errors="replace")).replace("\r", "")


# ---- help, version, choices, completion ------------------------------------------------------------------------


def test_version_is_the_installed_one(tmp_path):
    res = deploybot("--version", cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.strip() == f"deploybot {installed_version('deploybot')}"


def test_help_lists_every_command_and_says_who_it_is_for(tmp_path):
    res = deploybot("--help", cwd=tmp_path)
    assert res.returncode == 0
    listed = set(re.findall(r"^  ([a-z-]+)  ", res.stdout.split("Commands:")[1], re.M))
    assert listed == COMMANDS
    text = " ".join(res.stdout.split())
    assert "for operators" in text and "skip the Slack approval" in text and "--install-completion" in text


def test_every_argument_and_option_has_help():
    import typer.main

    from bot.cli import app

    def walk(command, path):
        for param in command.params:
            if param.name != "help":
                yield f"{path} {param.name}", getattr(param, "help", None)
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, f"{path} {name}")

    found = dict(walk(typer.main.get_command(app), "deploybot"))
    assert len(found) > 30
    assert [where for where, text in found.items() if not text] == []


def test_help_loads_none_of_the_heavy_libraries(tmp_path):
    res = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "bot.cli", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert res.returncode == 0
    loaded = {line.split("|")[-1].strip().split(".")[0] for line in res.stderr.splitlines() if "|" in line}
    assert loaded & set(HEAVY) == set()


def test_a_wrong_choice_is_a_usage_error_listing_the_choices(tmp_path):
    res = deploybot("audit", "export", "--format", "xml", cwd=tmp_path)
    assert res.returncode == 2 and res.stdout == ""
    assert "--format" in res.stderr and "'csv'" in res.stderr and "'json'" in res.stderr
    res = deploybot("history", "--limit", "0", cwd=tmp_path)
    assert res.returncode == 2 and "--limit" in res.stderr


def test_shell_completion_script_commands_and_environment_names(tmp_path):
    (tmp_path / "deploy.yml").write_text("environments: {staging: {}, prod: {}}\n")
    script = deploybot("--show-completion", "bash", cwd=tmp_path)
    assert script.returncode == 0 and "_DEPLOYBOT_COMPLETE=complete_bash" in script.stdout

    def complete(words: str) -> list[str]:
        res = deploybot(
            cwd=tmp_path,
            env={
                "_DEPLOYBOT_COMPLETE": "complete_bash",
                "COMP_WORDS": words,
                "COMP_CWORD": str(len(words.split(" ")) - 1),
            },
        )
        assert res.returncode == 0, res.stderr
        return res.stdout.split()

    assert complete("deploybot de") == ["deploy", "demo"]
    assert complete("deploybot deploy pr") == ["prod"]
    assert complete("deploybot status ") == ["staging", "prod"]
    assert complete("deploybot audit export --format ") == ["csv", "json"]
    installed = deploybot("--install-completion", "bash", cwd=tmp_path)
    assert installed.returncode == 0 and "deploybot" in (tmp_path.parent / "home" / ".bashrc").read_text()


# ---- --json and the live view, after real deploys to local targets -----------------------------------------------


@pytest.fixture
def workspace(tmp_path):
    """The demo's sample app on two local targets (web1, web2); their apps stopped after the test."""
    root = tmp_path / "ws"
    config = build_workspace(root)
    yield config
    stop_apps(root)


def test_status_and_history_json_after_real_deploys(workspace, cli):
    first = cli("deploy", "prod", "v1.0.0", "--yes", config=workspace)
    assert first.returncode == 0, first.stderr
    assert "   … verify" in first.stdout.splitlines() and "#1 SUCCEEDED in " in first.stdout  # plain lines: a pipe
    assert cli("deploy", "prod", "v1.1.0", "--yes", config=workspace).returncode == 0
    assert cli("lock", "prod", "--reason", "release freeze", config=workspace).returncode == 0

    res = cli("status", "prod", "--json", config=workspace)  # the demo workspace has more environments
    assert res.returncode == 0, res.stderr
    [prod] = json.loads(res.stdout)
    assert set(prod) == {"environment", "recorded_version", "drift", "lock", "in_progress", "last", "hosts"}
    assert (prod["environment"], prod["recorded_version"], prod["drift"]) == ("prod", "v1.1.0", False)
    assert prod["lock"] == {"holder": "cli:tester", "reason": "release freeze", "kind": "manual"}
    assert prod["in_progress"] is None
    assert set(prod["last"]) == DEPLOYMENT_KEYS
    assert prod["last"]["id"] == 2 and prod["last"]["version"] == "v1.1.0" and prod["last"]["state"] == "succeeded"
    assert prod["last"]["requested_by"] == "cli:tester" and prod["last"]["created_at"].endswith("+00:00")
    assert [(h["name"], h["address"], h["release"], h["answering"], h["error"]) for h in prod["hosts"]] == [
        ("web1", "local", "v1.1.0", "v1.1.0", ""),
        ("web2", "local", "v1.1.0", "v1.1.0", ""),
    ]

    res = cli("history", "prod", "--json", config=workspace)
    rows = json.loads(res.stdout)
    assert [(r["id"], r["version"], r["kind"], r["state"], r["via"]) for r in rows] == [
        (2, "v1.1.0", "deploy", "succeeded", "cli"),
        (1, "v1.0.0", "deploy", "succeeded", "cli"),
    ]
    assert set(rows[0]) >= DEPLOYMENT_KEYS and rows[0]["previous_version"] == "v1.0.0"
    assert rows[0]["environment"] == "prod" and rows[0]["seconds"] > 0 and rows[0]["failed_stage"] is None

    wrong = cli("status", "nowhere", "--json", config=workspace)
    assert wrong.returncode == 1 and wrong.stdout == "" and "refused: unknown environment 'nowhere'" in wrong.stderr


def test_a_terminal_gets_the_live_table_and_the_same_outcome_line(workspace, cli_env, cli):
    assert cli("deploy", "prod", "v1.0.0", "--yes", config=workspace).returncode == 0
    env = cli_env(workspace)
    code, out = in_terminal("deploy", "prod", "v1.2.0", "--yes", cwd=workspace.parent, env=env)  # fails health
    assert code == 1, out
    final = out[out.rindex("#2 deploy v1.2.0 -> prod") :]  # the last redraw of the table
    assert re.search(r"stage\s+┃ all hosts\s+┃ web1\s+┃ web2", final)
    assert re.search(r"│ health\s+│ FAIL [\d.]+s │ FAIL [\d.]+s │ FAIL", final)
    assert re.search(r"│ revert\s+│ ok [\d.]+s\s+│ ok", final) and "↩ rolling back web1, web2 to v1.0.0" in final
    assert re.search(r"│ verify\s+│ -\s+│ -\s+│ -", final)  # never ran
    assert "health on web1: exit 1: not healthy" in final
    assert re.search(r"^#2 ROLLED_BACK in [\d.]+s at health on web1$", final, re.M)
    assert "   … verify" not in out  # the plain lines are for pipes


def test_live_table_counts_hosts_when_they_do_not_fit():
    from rich.console import Console

    from bot.console_progress import LiveProgress
    from bot.engine.events import DeploymentFinished, DeploymentStarted, StageFinished, StageStarted

    hosts = tuple(f"web{i}" for i in range(1, 13))
    view = LiveProgress(io.StringIO())
    view.console = Console(file=io.StringIO(), force_terminal=True, width=80)  # a terminal 80 columns wide
    view(DeploymentStarted(7, environment="prod", version="v2", kind="deploy", hosts=hosts, stages=("upload",)))
    view(StageStarted(7, stage="upload"))
    for i, host in enumerate(hosts):
        view(StageStarted(7, stage="upload", host=host))
        if i < 10:
            view(StageFinished(7, stage="upload", host=host, ok=i != 3, seconds=0.5, error="disk full" * (i == 3)))
    text = _render(view._table())
    assert "web1" not in text and "9/12 ok, 2 running, FAIL: web4" in text
    view(DeploymentFinished(7, state="failed", seconds=1.5, failed_stage="upload", failed_host="web4"))
    out = ANSI.sub("", view.console.file.getvalue())
    assert "   upload on web4: disk full" in out and out.rstrip().endswith("#7 FAILED in 1.50s at upload on web4")


def _render(renderable) -> str:
    from rich.console import Console

    console = Console(file=io.StringIO(), width=80, color_system=None)
    console.print(renderable)
    return console.file.getvalue()


# ---- init ------------------------------------------------------------------------------------------------------


def init_args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "init",
        "--app",
        "shop",
        "--artifact",
        str(tmp_path / "artifacts" / "shop-{version}.tar.gz"),
        "--restart",
        "sh bin/restart",
        *extra,
    ]


def test_init_with_a_local_host_then_check_config_and_a_real_deploy(tmp_path):
    project = tmp_path / "project"
    (project / "artifacts").mkdir(parents=True)
    srv, port = project / "srv" / "shop", free_port()
    res = deploybot(*init_args(project, "--host", "local", "--path", str(srv)), cwd=project)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[:2] == ["wrote deploy.yml", "ok: shop: prod (1 hosts)"]
    assert "deploybot check-config" in res.stdout and "deploybot deploy prod VERSION --dry-run" in res.stdout
    text = (project / "deploy.yml").read_text()
    assert text.startswith("# ") and "  # on each host: releases/" in text
    env = parse_config(yaml.safe_load(text)).environments["prod"]
    assert [h.address for h in env.hosts] == ["local"] and env.path == str(srv)
    assert env.health.url == "http://127.0.0.1:8000/health" and not env.approval.enabled
    check = deploybot("check-config", cwd=project)
    assert check.returncode == 0 and check.stdout.strip() == "ok: shop: prod (1 hosts)", check.stderr

    # the written file deploys: the sample app, on a free port
    assert (
        deploybot(
            *init_args(
                project,
                "--host",
                "local",
                "--path",
                str(srv),
                "--force",
                "--health-url",
                f"http://127.0.0.1:{port}/health",
            ),
            cwd=project,
        ).returncode
        == 0
    )
    build_artifact(project / "artifacts", "shop", "v1.0.0")
    write_shared_env(srv / "shared", {"PORT": str(port)})
    plan = deploybot("deploy", "prod", "v1.0.0", "--dry-run", cwd=project)
    assert plan.returncode == 0 and "sh bin/restart" in plan.stdout, plan.stderr
    try:
        done = deploybot("deploy", "prod", "v1.0.0", "--yes", cwd=project)
        assert done.returncode == 0 and "#1 SUCCEEDED" in done.stdout, done.stdout + done.stderr
    finally:
        if (srv / "current").exists():
            subprocess.run(
                ["sh", "bin/stop"],
                cwd=srv / "current",
                capture_output=True,
                env={"APP_SHARED": str(srv / "shared"), "PATH": "/usr/bin:/bin"},
            )


def test_init_with_an_ssh_host_then_check_config_names_the_missing_known_hosts(tmp_path):
    project = tmp_path / "project"
    (project / "artifacts").mkdir(parents=True)
    res = deploybot(
        *init_args(
            project,
            "--host",
            "deploy@web1.example.com:2222",
            "--host",
            "deploy@web2.example.com",
            "--approver",
            "U024BE7LH",
            "--approver",
            "S0PMGROUP",
            "--env",
            "live",
            "--output",
            "shop.yml",
        ),
        cwd=project,
    )
    assert res.returncode == 0, res.stderr
    assert "ssh-keyscan -H -p 2222 web1.example.com" in res.stdout and "check-config --config shop.yml" in res.stdout
    env = parse_config(yaml.safe_load((project / "shop.yml").read_text())).environments["live"]
    assert [(h.user, h.address, h.port) for h in env.hosts] == [
        ("deploy", "web1.example.com", 2222),
        ("deploy", "web2.example.com", 22),
    ]
    assert env.path == "/srv/shop" and env.health.url == "http://{host}:8000/health"
    assert env.approval.approvers == ["U024BE7LH", "S0PMGROUP"]
    check = deploybot("check-config", "--config", "shop.yml", cwd=project)
    assert check.returncode == 2 and check.stderr.startswith("config error: environments.live.ssh.known_hosts: ")
    assert "known_hosts" in res.stderr  # init ran the same checks


def test_init_refuses_to_overwrite_without_force(tmp_path):
    project = tmp_path / "project"
    (project / "artifacts").mkdir(parents=True)
    (project / "deploy.yml").write_text("mine\n")
    (project / "elsewhere.txt").write_text("not to be touched\n")
    (project / "link.yml").symlink_to(project / "elsewhere.txt")
    args = init_args(project, "--host", "local", "--path", "/srv/shop")
    for output in ("deploy.yml", "link.yml"):
        res = deploybot(*args, "--output", output, cwd=project)
        assert res.returncode == 1 and f"refused: {output} exists; pass --force" in res.stderr
    assert (project / "deploy.yml").read_text() == "mine\n"
    assert (project / "elsewhere.txt").read_text() == "not to be touched\n"
    assert deploybot(*args, "--force", cwd=project).returncode == 0
    assert parse_config(yaml.safe_load((project / "deploy.yml").read_text())).app.name == "shop"
    assert sorted(p.name for p in project.iterdir()) == ["artifacts", "deploy.yml", "elsewhere.txt", "link.yml"]


HOSTILE = [
    (["--path", "/srv/../etc"], "--path: environments.prod.path: "),
    (["--path", "/srv/shop; rm -rf /"], "--path: environments.prod.path: "),
    (["--path", "srv/shop"], "--path: environments.prod.path: "),
    (["--artifact", "/tmp/shop.tar.gz"], "--artifact: app.artifact: "),
    (["--artifact", "/tmp/{version.__class__.__mro__}.tgz"], "--artifact: app.artifact: Value error, only {version}"),
    (["--artifact", "/tmp/{0}-{version}.tgz"], "--artifact: app.artifact: Value error, only {version}"),
    (["--artifact", "https://user:pw@ci.example.com/shop-{version}.tgz"], "--artifact: app.artifact: "),
    (["--env", "prod; touch /tmp/pwned"], "--env: environments: "),
    (["--host", "root@@typo"], "--host: environments.prod.hosts[0]: "),
    (["--host", "local", "--host", "local"], "--host: environments.prod: "),
    (["--restart", "sh bin/restart\nrm -rf /"], "--restart: environments.prod.restart: "),
    (["--health-url", "localhost:8000/health"], "--health-url: environments.prod.health.url: "),
    (["--approver", "bob"], "--approver: environments.prod.approval.approvers[0]: "),
]


@pytest.mark.parametrize(
    ("extra", "where"), HOSTILE, ids=[w.split(":")[0] + str(i) for i, (_, w) in enumerate(HOSTILE)]
)
def test_init_refuses_bad_input_with_its_location_and_writes_nothing(tmp_path, extra, where):
    project = tmp_path / "project"
    project.mkdir()
    base = {
        "--app": "shop",
        "--artifact": "/tmp/shop-{version}.tar.gz",
        "--path": "/srv/shop",
        "--restart": "sh bin/restart",
        "--host": "deploy@web1",
    }
    for flag in extra[::2]:
        base.pop(flag, None)
    res = deploybot("init", *[x for kv in base.items() for x in kv], *extra, cwd=project)
    assert res.returncode == 2, res.stdout + res.stderr
    assert f"init: {where}" in res.stderr and "nothing written to deploy.yml" in res.stderr
    assert res.stdout == "" and list(project.iterdir()) == []


def test_init_without_a_terminal_names_every_missing_flag(tmp_path):
    res = deploybot("init", "--app", "shop", cwd=tmp_path)
    assert res.returncode == 2 and list(tmp_path.iterdir()) == []
    missing = re.findall(r"^init: missing (--[a-z-]+): ", res.stderr, re.M)
    assert missing == ["--artifact", "--host", "--restart"]  # --path and --health-url have defaults


def test_init_in_a_terminal_asks_for_what_is_missing(tmp_path):
    project = tmp_path / "project"
    (project / "artifacts").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_URL", "DEPLOYBOT_"))}
    code, out = in_terminal(
        "init",
        "--app",
        "shop",
        cwd=project,
        env={**env, "HOME": str(tmp_path)},
        answers=(
            ("Artifact of each version", str(project / "artifacts" / "shop-{version}.tgz")),
            ("Hosts (", "local"),
            ("Base path on each host", str(project / "srv")),
            ("Restart command", "sh bin/restart"),
            ("Health URL", ""),
        ),
    )  # the default, shown in brackets
    assert code == 0, out
    assert "[/srv/shop]" in out and "[http://127.0.0.1:8000/health]" in out and "ok: shop: prod (1 hosts)" in out
    env_cfg = parse_config(yaml.safe_load((project / "deploy.yml").read_text())).environments["prod"]
    assert env_cfg.path == str(project / "srv") and env_cfg.health.url == "http://127.0.0.1:8000/health"
