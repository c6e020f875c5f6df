"""What the engine needs from a host: run a command, put a file. Failures come back as results, not hangs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Result:
    host: str
    exit_code: int | None  # None: the command never ran or never finished (unreachable, timeout)
    stdout: str = ""
    stderr: str = ""
    error: str = ""  # why it did not run (connection refused, timed out, host key mismatch ...)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def describe(self) -> str:
        if self.error:
            return self.error
        tail = (self.stderr.strip() or self.stdout.strip()).splitlines()[-5:]
        return f"exit {self.exit_code}" + (": " + " | ".join(tail) if tail else "")


class TargetError(RuntimeError):
    """The host could not be reached or did not answer in time."""


class Target(Protocol):
    """One host. Implementations keep their connection open between calls (warm reuse)."""

    name: str

    def run(self, command: str, timeout: float | None = None) -> Result: ...

    def put(self, local: Path, remote: str) -> None: ...

    def close(self) -> None: ...
