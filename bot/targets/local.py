"""This machine as a target: the same stages, run with sh instead of SSH (demo, single-box installs)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
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
        proc = subprocess.Popen(
            ["sh", "-c", command.shell, command.tag],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL if command.stdin is None else subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(command.stdin, timeout=timeout)
        except subprocess.TimeoutExpired:  # the command and everything it started, not just the shell
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            return Result(
                self.name, command, None, out, err, error=f"{self.name}: command timed out after {timeout:g}s (stopped)"
            )
        return Result(self.name, command, proc.returncode, out, err)

    def put(self, local: Path, remote: str) -> Result:
        command = put_command(local, remote)
        try:
            shutil.copyfile(local, remote)
        except OSError as exc:
            Path(remote).unlink(missing_ok=True)  # no partial file left behind (a full disk stays full otherwise)
            return Result(self.name, command, None, error=f"{self.name}: copy failed: {exc}")
        return Result(self.name, command, 0)

    def close(self) -> None:
        pass
