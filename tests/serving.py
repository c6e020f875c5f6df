"""`deploybot serve` as its own process, the way production runs it, for tests and benchmarks."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def deploybot_serve(env: dict[str, str], cwd: Path, port: int, *, capture: bool = False) -> Iterator[subprocess.Popen]:
    """Start `python -m bot.cli serve --port PORT`; stopped (and, with capture, its output read) on exit."""
    env = {"DEPLOYBOT_METRICS_ADDRESS": f"127.0.0.1:{free_port()}", **env}  # replicas side by side
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve", "--port", str(port)],
        env=env,
        cwd=cwd,
        stdout=out,
        stderr=subprocess.STDOUT if capture else subprocess.DEVNULL,
        text=True,
    )
    try:
        yield proc
    finally:
        proc.terminate()
        proc.output = proc.communicate(timeout=30)[0] or ""
