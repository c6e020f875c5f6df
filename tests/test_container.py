"""The Dockerfile's recipe without a Docker engine (none on these machines): install exactly what its build
stage copies, into a prefix, and run the installed `deploybot` from elsewhere; then run its HEALTHCHECK
command against a served bot. Proves the package carries what it needs (migrations, sample app, handlers)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from tests.serving import deploybot_serve, free_port
from tests.slack_api import FakeSlack

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def build_stage(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """COPY pyproject.toml README.md bot handlers, then `pip install --prefix` (deps are already installed)."""
    src = tmp_path / "src"
    copied = re.findall(r"^COPY (?!--from)(.+?) (\S+)$", DOCKERFILE, re.M)
    assert copied, "the Dockerfile's build stage copies nothing?"
    src.mkdir()
    for sources, _ in copied:
        for name in sources.split():
            origin = ROOT / name
            if origin.is_dir():
                shutil.copytree(origin, src / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(origin, src / name)
    prefix = tmp_path / "install"
    # --ignore-installed: without it pip uninstalls the checkout's own editable install to "replace" it
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--ignore-installed",
                    "--prefix", str(prefix), str(src)], check=True, capture_output=True, timeout=300)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(prefix)}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_URL", "DEPLOYBOT_"))}
    env["PYTHONPATH"] = str(site)
    return prefix, env


def test_image_build_stage_installs_a_working_deploybot(tmp_path):
    prefix, env = build_stage(tmp_path)
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    res = subprocess.run([str(prefix / "bin" / "deploybot"), "demo", "--workdir", str(run_dir / "demo")],
                         env=env, cwd=run_dir, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert re.search(r"audit verify: \d+ rows, intact", res.stdout), res.stdout[-2000:]
    import_check = subprocess.run([sys.executable, "-c", "import bot, handlers; print(bot.__file__)"], env=env,
                                  cwd=run_dir, capture_output=True, text=True, timeout=60)
    assert str(prefix) in import_check.stdout  # the installed copy ran, not the source tree


def test_healthcheck_command_passes_against_a_serving_bot_and_fails_without_one(tmp_path, make_config, hosts):
    healthcheck = re.search(r"^HEALTHCHECK [^\n]*\\\n\s*CMD (.+)$", DOCKERFILE, re.M).group(1).strip()
    assert "/healthz" in healthcheck
    assert '"deploybot", "serve"' in re.search(r"^CMD (.+)$", DOCKERFILE, re.M).group(1)
    port = free_port()
    command = shlex.split(healthcheck.replace("3000", str(port)))
    command[0] = sys.executable if command[0] == "python" else command[0]
    assert subprocess.run(command, capture_output=True, timeout=30).returncode != 0  # nothing serving yet
    fake = FakeSlack().__enter__()
    env = {**os.environ, "SLACK_API_URL": fake.api_url, "DEPLOYBOT_CONFIG": str(make_config(hosts=hosts[:1])),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}", "PYTHONPATH": str(ROOT),
           "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": "test-secret"}
    env.pop("SLACK_APP_TOKEN", None)
    try:
        with deploybot_serve(env, tmp_path, port):
            deadline = time.monotonic() + 30
            while subprocess.run(command, capture_output=True, timeout=30).returncode != 0:
                assert time.monotonic() < deadline, "the HEALTHCHECK never passed against `deploybot serve`"
                time.sleep(0.3)
    finally:
        fake.__exit__(None, None, None)


def test_serve_refuses_to_start_with_a_clear_error(tmp_path, make_config, hosts):
    """A container that cannot start must say why in one line (no traceback, no token), and exit non-zero."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SLACK_BOT_TOKEN": "xoxb-do-not-print", "SLACK_SIGNING_SECRET": "s",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}"}
    env.pop("SLACK_APP_TOKEN", None)
    nobody = f"http://127.0.0.1:{free_port()}/api/"  # nothing listens there
    cases = {"config error: ": {"DEPLOYBOT_CONFIG": str(tmp_path / "missing.yml")},
             "cannot start: Slack at ": {"DEPLOYBOT_CONFIG": str(make_config(hosts=hosts[:1])),
                                         "SLACK_API_URL": nobody}}
    for expected, extra in cases.items():
        res = subprocess.run([sys.executable, "-m", "bot.cli", "serve", "--port", "0"], env={**env, **extra},
                             cwd=tmp_path, capture_output=True, text=True, timeout=60)
        output = res.stdout + res.stderr
        assert res.returncode != 0 and expected in output, output[-2000:]
        assert "Traceback" not in output and "xoxb-do-not-print" not in output
