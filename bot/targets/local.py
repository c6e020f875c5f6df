"""This machine as a target: the same stages, run with sh instead of SSH (demo, single-box installs)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from bot.config import Host
from bot.targets.base import Result, TargetError


class LocalTarget:
    def __init__(self, host: Host, command_timeout: float = 600.0):
        self.host = host
        self.name = host.name
        self.command_timeout = command_timeout

    def run(self, command: str, timeout: float | None = None) -> Result:
        try:
            proc = subprocess.run(["sh", "-c", command], capture_output=True, text=True,
                                  timeout=timeout or self.command_timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return Result(self.name, None, error=f"{self.name}: command timed out after {timeout}s")
        return Result(self.name, proc.returncode, proc.stdout, proc.stderr)

    def put(self, local: Path, remote: str) -> None:
        try:
            shutil.copyfile(local, remote)
        except OSError as exc:
            raise TargetError(f"{self.name}: copy failed: {exc}") from None

    def close(self) -> None:
        pass
