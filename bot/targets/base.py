"""What the engine needs from a host: run a command, put a file. Every operation comes back as a Result that
carries its command, never as an exception, so a stage records exactly what ran and how it ended."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Command:
    """One operation on a host: `op` names it (the stage, or `put`, `read_current`), `shell` is the exact text a
    shell runs (what --dry-run prints, redacted), `version` the release it concerns, if any, `stdin` its input."""

    op: str
    shell: str
    version: str | None = None
    timeout: float | None = None
    files: tuple[Path, str] | None = None  # `put`: (local file, remote path)
    tag: str = "deploybot"  # the process name it runs under on the host (its deployment: deploybot-d42), so a
    #                         take-over can stop what a dead bot left running there
    # what the command reads first on its stdin: URLs that must stay out of every process list on the host (see
    # bot/engine/stdin_urls.py); never stored, shown or printed (the shell names only the variables it reads)
    stdin: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Result:
    host: str
    command: Command
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


class Target(Protocol):
    """One host. Implementations keep their connection open between calls (warm reuse)."""

    name: str

    def run(self, command: Command) -> Result: ...

    def put(self, local: Path, remote: str) -> Result: ...

    def close(self) -> None: ...


def put_command(local: Path, remote: str) -> Command:
    return Command("put", f"sftp put {local} {remote}", files=(local, remote))
