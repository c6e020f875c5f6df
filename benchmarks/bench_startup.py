"""Start-up time of the `deploybot` CLI: each command run as a fresh process, five times, median/min/max.

A temp folder holds a deploy.yml with one environment of one `local` host (its health URL points at a closed
loopback port, so `status` gets a quick refusal) and a SQLite DATABASE_URL. Each command first runs once unmeasured
(byte-code caches written, the database created and migrated), so the measured runs are ordinary starts.

The commands run against the source tree this file sits in (it is put first on PYTHONPATH).

Run:  python benchmarks/bench_startup.py [--runs 5] [--importtime]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "python benchmarks/bench_startup.py"
COMMANDS = [["--help"], ["status"], ["history"], ["check-config"]]
TARGET_S = 0.3


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def workspace(root: Path) -> dict[str, str]:
    """deploy.yml with one local host, and the environment every run gets."""
    host_dir = root / "hosts" / "web1" / "app"
    (host_dir / "shared").mkdir(parents=True)
    (host_dir / "shared" / ".env").write_text("PORT=1\n")
    artifacts = root / "artifacts"
    artifacts.mkdir()
    port = closed_port()
    # Plain text, not yaml.safe_dump: the benchmark itself imports nothing of the project's dependencies.
    (root / "deploy.yml").write_text(f"""\
app:
  name: sampleapp
  artifact: {artifacts}/sampleapp-{{version}}.tar.gz
environments:
  prod:
    hosts:
      - {{host: local, name: web1}}
    path: {root}/hosts/{{name}}/app
    restart: sh bin/restart
    health: {{url: "http://127.0.0.1:{port}/health", timeout: 1, interval: 0.1}}
""")
    env = dict(os.environ)
    env.update(
        {
            "DEPLOYBOT_CONFIG": str(root / "deploy.yml"),
            "DATABASE_URL": f"sqlite:///{root / 'deploybot.db'}",
            "DEPLOYBOT_DATA_DIR": str(root / "data"),  # nothing lands in the home folder, whatever a command opens
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        }
    )
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # the warm-up run writes the .pyc caches every measured run reads
    return env


def run(
    args: list[str], env: dict[str, str], cwd: Path, extra: tuple[str, ...] = ()
) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, *extra, "-m", "bot.cli", *args], env=env, cwd=cwd, capture_output=True, text=True
    )
    return time.perf_counter() - started, proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--importtime", action="store_true", help="also print the 15 costliest imports (cumulative) of each command"
    )
    opts = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="deploybot-bench-startup-") as tmp:
        root = Path(tmp)
        env = workspace(root)
        baseline = statistics.median(run_python_noop(env, root) for _ in range(opts.runs))
        # Warm-up: byte-compile caches and create + migrate the database, so every measured run is a normal start.
        # Every command must succeed here: a CLI that crashes on import is fast, and measuring it would mislead.
        for args in COMMANDS:
            _, proc = run(args, env, root)
            if proc.returncode != 0 or "Traceback" in proc.stderr:
                print(
                    f"`deploybot {' '.join(args)}` exited {proc.returncode}:\n{(proc.stderr or proc.stdout)[-2000:]}",
                    file=sys.stderr,
                )
                return 1

        rows = []
        for args in COMMANDS:
            times = []
            for _ in range(opts.runs):
                took, proc = run(args, env, root)
                if proc.returncode != 0:
                    print(
                        f"`deploybot {' '.join(args)}` exited {proc.returncode}: {proc.stderr[-2000:]}", file=sys.stderr
                    )
                    return 1
                times.append(took)
            rows.append((f"deploybot {' '.join(args)}", statistics.median(times), min(times), max(times)))

        print(
            f"python {sys.version.split()[0]}, {os.cpu_count()} cores, {opts.runs} fresh processes per command; "
            f"bare `python -c pass`: {baseline:.3f} s"
        )
        print()
        print(f"| {'command':<24} | median s | min s | max s | under {TARGET_S} s |")
        print(f"|{'-' * 26}|----------|-------|-------|-------------|")
        for name, med, lo, hi in rows:
            print(f"| {name:<24} | {med:8.3f} | {lo:5.3f} | {hi:5.3f} | {'yes' if med < TARGET_S else 'NO':<11} |")
        print()
        print(f"reproduce: {COMMAND}")

        if opts.importtime:
            for args in COMMANDS:
                _, proc = run(args, env, root, extra=("-X", "importtime"))
                print(f"\n{' '.join(['deploybot', *args])}: costliest imports (cumulative ms)")
                for ms, module in top_imports(proc.stderr, 15):
                    print(f"  {ms:8.1f}  {module}")
    return 0


def run_python_noop(env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], env=env, cwd=cwd, check=True)
    return time.perf_counter() - started


def top_imports(stderr: str, n: int) -> list[tuple[float, str]]:
    """`-X importtime` lines -> the n largest cumulative times (ms, module), largest first."""
    found = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self_us, cumulative_us, name = line.removeprefix("import time:").split("|")
        found.append((int(cumulative_us) / 1000, name.rstrip()))
    found.sort(reverse=True)
    return found[:n]


if __name__ == "__main__":
    sys.exit(main())
