"""This machine as a target: the same stages, run with sh instead of SSH (demo, single-box installs)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from bot.config import Host
from bot.targets.base import Command, Result, put_command


class LocalTarget:
    def __init__(self, host: Host, command_timeout: float = 600.0):
        self.host = host
        self.name = host.name
        self.command_timeout = command_timeout

    def run(self, command: Command) -> Result:
        timeout = command.timeout or self.command_timeout
        try:
            proc = subprocess.run(["sh", "-c", command.shell], capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return Result(self.name, command, None, error=f"{self.name}: command timed out after {timeout:g}s")
        return Result(self.name, command, proc.returncode, proc.stdout, proc.stderr)

    def put(self, local: Path, remote: str) -> Result:
        command = put_command(local, remote)
        try:
            shutil.copyfile(local, remote)
        except OSError as exc:
            return Result(self.name, command, None, error=f"{self.name}: copy failed: {exc}")
        return Result(self.name, command, 0)

    def close(self) -> None:
        pass
