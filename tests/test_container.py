"""The Dockerfile's recipe without a Docker engine (none on these machines): send the build context as
.dockerignore filters it, install exactly what the build stage copies into a prefix, and run the installed
`deploybot` from elsewhere; then run the image's CMD (under its ENTRYPOINT, tini, as PID 1 of its own PID
namespace) and its exec-form HEALTHCHECK exactly as the Dockerfile states them, with the port from the
environment. Proves the package carries what it needs (migrations, sample app, handlers) and that the image's
process set-up serves, reports health and stops on SIGTERM."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
import yaml

from tests.serving import free_port
from tests.slack_api import FakeSlack

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions(text: str = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [(m[1].upper(), m[2].strip()) for m in re.finditer(r"^\s*([A-Za-z]+)\s+(.*)$", joined, re.M)]


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (name, _) in enumerate(steps) if name == "FROM")
    return steps[last_from:]


def exec_form(instruction: str) -> list[str]:
    """The JSON array of the final stage's INSTRUCTION (HEALTHCHECK: after its options and CMD)."""
    [args] = [a for name, a in final_stage() if name == instruction]
    if instruction == "HEALTHCHECK":
        args = re.search(r"\bCMD\s+(.*)$", args).group(1)
    assert args.startswith("["), f"{instruction} must be in exec form (a JSON array), not {args!r}"
    command = json.loads(args)
    assert isinstance(command, list) and all(isinstance(a, str) for a in command)
    return command


def image_env() -> dict[str, str]:
    """The final stage's ENV, as `ENV K=V K2=V2` lines."""
    out: dict[str, str] = {}
    for name, args in final_stage():
        if name == "ENV":
            out.update(dict(pair.split("=", 1) for pair in args.split()))
    return out


# ---- the build context, as .dockerignore filters it (Docker's rules: last match wins, `!` re-includes, a pattern
# that matches a folder excludes everything in it, `**` spans folders)


def _pattern(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def dockerignore() -> list[tuple[bool, re.Pattern]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negate = line.startswith("!")
            rules.append((negate, _pattern(line.lstrip("!").strip("/"))))
    return rules


def ignored(relative: str, rules: list[tuple[bool, re.Pattern]]) -> bool:
    parts = relative.split("/")
    result = False
    for negate, pattern in rules:
        if any(pattern.match("/".join(parts[:k])) for k in range(1, len(parts) + 1)):
            result = not negate
    return result


def copied_sources() -> list[str]:
    """What the build stage COPYs from the context (not --from another stage)."""
    copied = re.findall(r"^COPY (?!--from)(.+?) (\S+)$", DOCKERFILE, re.M)
    assert copied, "the Dockerfile's build stage copies nothing?"
    return [name for sources, _ in copied for name in sources.split()]


def build_stage(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """COPY pyproject.toml README.md bot handlers from the filtered context, then `pip install --prefix` (deps are
    already installed)."""
    src = tmp_path / "src"
    src.mkdir()
    rules = dockerignore()
    for name in copied_sources():
        origin = ROOT / name
        assert origin.exists() and not ignored(name, rules), f"COPY {name}: not in the build context"
        files = [p for p in origin.rglob("*") if p.is_file()] if origin.is_dir() else [origin]
        for path in files:
            relative = path.relative_to(ROOT).as_posix()
            if not ignored(relative, rules):
                (src / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, src / relative)
    prefix = tmp_path / "install"
    # --ignore-installed: without it pip uninstalls the checkout's own editable install to "replace" it
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--ignore-installed",
            "--prefix",
            str(prefix),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    site = Path(sysconfig.get_path("purelib", vars={"base": str(prefix)}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_URL", "DEPLOYBOT_"))}
    env["PYTHONPATH"] = str(site)
    env["PATH"] = f"{prefix / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return prefix, env


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    return build_stage(tmp_path_factory.mktemp("image"))


def test_dockerignore_keeps_the_sources_and_drops_the_rest():
    rules = dockerignore()
    tracked = subprocess.run(
        ["git", "ls-files", *copied_sources()], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert any(t.startswith("bot/store/migrations/") for t in tracked) and "pyproject.toml" in tracked
    assert [t for t in tracked if ignored(t, rules)] == []  # every tracked file the build copies is sent
    for dropped in [
        ".git/HEAD",
        ".ci/run",
        "tests/test_container.py",
        "benchmarks/bench_ack.py",
        ".benchmarks/x",
        "bot/__pycache__/config.cpython-311.pyc",
        "bot/store/__pycache__/x.pyc",
        "deploybot.db",
        "data/deploybot.db-wal",
        ".pytest_cache/v/cache",
        ".ruff_cache/x",
        "deploy.yml",
        ".env",
        "deploybot.egg-info/PKG-INFO",
        "examples/deploy.yml",
        "docs/container.md",
    ]:
        assert ignored(dropped, rules), dropped


def test_image_build_stage_installs_a_working_deploybot(tmp_path, installed):
    prefix, env = installed
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    res = subprocess.run(
        [str(prefix / "bin" / "deploybot"), "demo", "--workdir", str(run_dir / "demo")],
        env=env,
        cwd=run_dir,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert re.search(r"audit verify: \d+ rows, intact", res.stdout), res.stdout[-2000:]
    import_check = subprocess.run(
        [sys.executable, "-c", "import bot, handlers; print(bot.__file__)"],
        env=env,
        cwd=run_dir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert str(prefix) in import_check.stdout  # the installed copy ran, not the source tree


def test_image_runs_as_a_numeric_non_root_user_with_its_data_in_the_volume():
    [user] = [a for name, a in final_stage() if name == "USER"]
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), f"USER {user}: numeric uid:gid, not root"
    uid, gid = user.split(":")
    setup = " ".join(a for name, a in final_stage() if name == "RUN")
    assert f"--uid {uid}" in setup and f"--gid {gid}" in setup and f"chown {uid}:{gid} /data" in setup
    assert '"/data"' in dict(final_stage())["VOLUME"]
    assert image_env()["DATABASE_URL"].startswith("sqlite:////data/")
    assert exec_form("ENTRYPOINT") == ["tini", "--"] and "tini" in setup


def write_config(folder: Path) -> Path:
    config = {
        "app": {"name": "shop", "artifact": str(folder / "shop-{version}.tar.gz")},
        "environments": {
            "prod": {
                "hosts": ["deploy@10.0.1.11"],
                "path": "/srv/shop",
                "restart": "bin/restart",
                "health": {"url": "http://{host}:8000/health"},
            }
        },
    }
    path = folder / "deploy.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def container_env(installed_env: dict[str, str], tmp_path: Path, slack: FakeSlack, port: int) -> dict[str, str]:
    """The image's ENV with this test's port, config, store and Slack; the installed copy on PATH/PYTHONPATH."""
    env = {**installed_env, **image_env()}
    env.update(
        DEPLOYBOT_PORT=str(port),
        DEPLOYBOT_CONFIG=str(write_config(tmp_path)),
        DATABASE_URL=f"sqlite:///{tmp_path / 'deploybot.db'}",
        SLACK_API_URL=slack.api_url,
        SLACK_BOT_TOKEN="xoxb-test",
        SLACK_SIGNING_SECRET="test-secret",
    )
    return env


def healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess:
    """The HEALTHCHECK's exec-form command exactly as written ("python" being this interpreter)."""
    command = exec_form("HEALTHCHECK")
    command[0] = sys.executable if command[0] == "python" else command[0]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)


def wait_healthy(env: dict[str, str], proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while healthcheck(env).returncode != 0:
        assert proc.poll() is None, f"the bot exited with {proc.returncode}: {proc.communicate()[0][-2000:]}"
        assert time.monotonic() < deadline, "the HEALTHCHECK never passed against the image's CMD"
        time.sleep(0.3)


def test_healthcheck_uses_the_configured_port_and_fails_when_nothing_serves(tmp_path, installed):
    assert "/healthz" in " ".join(exec_form("HEALTHCHECK")) and "DEPLOYBOT_PORT" in " ".join(exec_form("HEALTHCHECK"))
    assert image_env()["DEPLOYBOT_PORT"] == "3000" and "DEPLOYBOT_PORT" in " ".join(exec_form("CMD"))
    with FakeSlack() as slack:
        env = container_env(installed[1], tmp_path, slack, free_port())
        res = healthcheck(env)
        assert res.returncode == 1, res  # unhealthy (Docker reserves 2)
        other = container_env(installed[1], tmp_path, slack, free_port())
        proc = subprocess.Popen(
            exec_form("CMD"), env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            wait_healthy(env, proc)
            assert healthcheck(other).returncode == 1  # it checks DEPLOYBOT_PORT, not a fixed port
        finally:
            proc.terminate()
            proc.communicate(timeout=30)


@pytest.mark.skipif(
    shutil.which("tini") is None or shutil.which("unshare") is None or os.geteuid() != 0,
    reason="needs Debian's tini, util-linux unshare and root (a PID namespace, as in a container)",
)
def test_tini_as_pid_1_passes_sigterm_to_the_bot(tmp_path, installed):
    """`docker stop` sends SIGTERM to PID 1: tini must hand it to the bot, which then stops; nobody is SIGKILLed."""
    with FakeSlack() as slack:
        env = container_env(installed[1], tmp_path, slack, free_port())
        command = ["unshare", "--pid", "--fork", "--kill-child", *exec_form("ENTRYPOINT"), *exec_form("CMD")]
        proc = subprocess.Popen(
            command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            wait_healthy(env, proc)
            [init] = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            assert Path(f"/proc/{init}/comm").read_text().strip() == "tini"
            [bot] = Path(f"/proc/{init}/task/{init}/children").read_text().split()
            assert "serve" in Path(f"/proc/{bot}/cmdline").read_text()  # `exec` left no shell in between
            os.kill(int(init), signal.SIGTERM)
            output = proc.communicate(timeout=45)[0]  # the compose file's stop_grace_period
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode in (0, 128 + signal.SIGTERM), (proc.returncode, output[-2000:])
        assert not Path(f"/proc/{bot}").exists()


def test_container_doc_compose_snippet_matches_the_image():
    doc = (ROOT / "docs" / "container.md").read_text()
    [compose] = [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", doc, re.S) if "services:" in block]
    [service] = compose["services"].values()
    assert service.get("init") is True or service.get("entrypoint", [None])[0] == "tini"
    grace = int(str(service["stop_grace_period"]).rstrip("s"))
    assert grace > int(service["environment"].get("DEPLOYBOT_SHUTDOWN_GRACE", 30))
    assert "10001" in doc and "/data" in str(service["volumes"])


def test_serve_refuses_to_start_with_a_clear_error(tmp_path):
    """A container that cannot start must say why in one line (no traceback, no token), and exit non-zero."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SLACK_BOT_TOKEN": "xoxb-do-not-print",
        "SLACK_SIGNING_SECRET": "s",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
    }
    env.pop("SLACK_APP_TOKEN", None)
    nobody = f"http://127.0.0.1:{free_port()}/api/"  # nothing listens there
    cases = {
        "config error: ": {"DEPLOYBOT_CONFIG": str(tmp_path / "missing.yml")},
        "cannot start: Slack at ": {"DEPLOYBOT_CONFIG": str(write_config(tmp_path)), "SLACK_API_URL": nobody},
    }
    for expected, extra in cases.items():
        res = subprocess.run(
            [sys.executable, "-m", "bot.cli", "serve", "--port", "0"],
            env={**env, **extra},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        output = res.stdout + res.stderr
        assert res.returncode != 0 and expected in output, output[-2000:]
        assert "Traceback" not in output and "xoxb-do-not-print" not in output
