"""Renders engine events as lines in a terminal, with per-stage durations (CLI and demo)."""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from bot.engine.events import DeploymentFinished, DeploymentStarted, Event, RollbackStarted, StageFinished, StageStarted

MARKS = {True: "ok  ", False: "FAIL"}


class ConsoleProgress:
    def __init__(self, out: TextIO | None = None, verbose: bool = False):
        self.out = out or sys.stdout
        self.verbose = verbose
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        line = self._line(event)
        if line:
            with self._lock:
                print(line, file=self.out, flush=True)

    def _line(self, e: Event) -> str | None:
        if isinstance(e, DeploymentStarted):
            return (f"#{e.deployment_id} {e.kind} {e.version} -> {e.environment} on {len(e.hosts)} host(s): "
                    f"{', '.join(e.hosts)}\n   stages: {' -> '.join(e.stages)}")
        if isinstance(e, StageStarted) and e.host is None:
            return f"   … {e.stage}"
        if isinstance(e, StageFinished) and e.host is None:
            text = f"   {MARKS[e.ok]} {e.stage:<10} {e.seconds:6.2f}s"
            return text + (f"  {e.error}" if e.error else "")
        if isinstance(e, StageFinished) and (self.verbose or not e.ok):
            return f"        {e.host}: {'ok' if e.ok else e.error} ({e.seconds:.2f}s)"
        if isinstance(e, RollbackStarted):
            return f"   ↩ rolling back {', '.join(e.hosts)} to {e.to_version or 'their previous release'}: {e.reason}"
        if isinstance(e, DeploymentFinished):
            tail = f" at {e.failed_stage} on {e.failed_host}" if e.failed_stage else ""
            return f"#{e.deployment_id} {e.state.upper()} in {e.seconds:.2f}s{tail}"
        return None
