"""What the CLI and the demo print: a run's progress from engine events, and the status and history documents.

Progress is plain lines with per-stage durations, or, when stdout is a terminal, a live table of stages by hosts
redrawn in place (rich, imported only then). The plain lines are what pipes, CI logs and tests read
(`   … verify`, `#12 SUCCEEDED in 3.10s`); the live view ends with the same outcome line.
Status and history are lines of text, or (`--json`) a list of objects whose keys do not change.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

from bot.engine.events import (
    DeploymentFinished,
    DeploymentStarted,
    Event,
    EventBus,
    RollbackStarted,
    StageFinished,
    StageStarted,
)

if TYPE_CHECKING:
    from bot.domain import DeploymentRecord
    from bot.service import EnvironmentStatus

MARKS = {True: "ok  ", False: "FAIL"}


def outcome_line(e: DeploymentFinished) -> str:
    tail = f" at {e.failed_stage} on {e.failed_host}" if e.failed_stage else ""
    return f"#{e.deployment_id} {e.state.upper()} in {e.seconds:.2f}s{tail}"


def rollback_line(e: RollbackStarted, reason: bool = True) -> str:
    text = f"↩ rolling back {', '.join(e.hosts)} to {e.to_version or 'their previous release'}"
    return f"{text}: {e.reason}" if reason else text


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

    def close(self) -> None:
        """Nothing to undo: every line is already written."""

    def _line(self, e: Event) -> str | None:
        if isinstance(e, DeploymentStarted):
            return (
                f"#{e.deployment_id} {e.kind} {e.version} -> {e.environment} on {len(e.hosts)} host(s): "
                f"{', '.join(e.hosts)}\n   stages: {' -> '.join(e.stages)}"
            )
        if isinstance(e, StageStarted) and e.host is None:
            return f"   … {e.stage}"
        if isinstance(e, StageFinished) and e.host is None:
            text = f"   {MARKS[e.ok]} {e.stage:<10} {e.seconds:6.2f}s"
            return text + (f"  {e.error}" if e.error else "")
        if isinstance(e, StageFinished) and (self.verbose or not e.ok):
            return f"        {e.host}: {'ok' if e.ok else e.error} ({e.seconds:.2f}s)"
        if isinstance(e, RollbackStarted):
            return f"   {rollback_line(e)}"
        if isinstance(e, DeploymentFinished):
            return outcome_line(e)
        return None


class LiveProgress:
    """Stages down, hosts across, each cell redrawn as its host enters and leaves the stage. With more hosts than
    fit the terminal's width, one column counts them instead. Failures are printed in full under the table."""

    def __init__(self, out: TextIO | None = None):
        from rich.console import Console

        self.console = Console(file=out or sys.stdout, highlight=False)
        self._lock = threading.RLock()  # the refresh thread renders while engine threads report
        self._live = None
        self.title = ""
        self.stages: list[str] = []
        self.hosts: list[str] = []
        self.cells: dict[tuple[str, str], tuple[str, str]] = {}  # (stage, host) -> (text, style)
        self.totals: dict[str, tuple[str, str]] = {}  # stage -> (text, style), from the stage-wide events
        self.seconds: dict[str, float] = {}
        self.notes: list[str] = []  # the rollback line
        self.failures: list[str] = []

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._apply(event)
        if isinstance(event, DeploymentStarted) and self._live is None:
            from rich.live import Live

            self._live = Live(console=self.console, get_renderable=self._table, refresh_per_second=8)
            self._live.start()
        elif isinstance(event, DeploymentFinished):
            self.close()
            for failure in self.failures:
                self.console.print(failure, markup=False)
            self.console.print(outcome_line(event), markup=False)

    def close(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            live.stop()

    def _apply(self, e: Event) -> None:
        if isinstance(e, DeploymentStarted):
            self.title = f"#{e.deployment_id} {e.kind} {e.version} -> {e.environment}"
            self.stages, self.hosts = list(e.stages), list(e.hosts)
        elif isinstance(e, StageStarted | StageFinished) and e.stage not in self.stages:
            self.stages.append(e.stage)  # revert, after a failure
        if isinstance(e, StageStarted):
            if e.host is None:
                self.totals[e.stage] = ("…", "yellow")
            else:
                self.cells[e.stage, e.host] = ("…", "yellow")
        elif isinstance(e, StageFinished):
            mark = ("ok", "green") if e.ok else ("FAIL", "bold red")
            if e.host is None:
                self.seconds[e.stage] = self.seconds.get(e.stage, 0.0) + e.seconds  # one per batch when rolling
                failed = self.totals.get(e.stage, ("", ""))[0].startswith("FAIL")
                text, style = ("FAIL", "bold red") if failed else mark
                self.totals[e.stage] = (f"{text} {self.seconds[e.stage]:.1f}s", style)
            else:
                self.cells[e.stage, e.host] = (f"{mark[0]} {e.seconds:.1f}s", mark[1])
                if not e.ok:
                    self.failures.append(f"   {e.stage} on {e.host}: {e.error}")
        elif isinstance(e, RollbackStarted):  # the reason is the failure, printed in full under the table
            self.notes.append(rollback_line(e, reason=False))
        elif isinstance(e, DeploymentFinished):  # what never ran on a host (migrate_on: first, a skipped rest)
            for stage in self.stages:
                self.totals.setdefault(stage, ("-", "dim"))
                for host in self.hosts:
                    self.cells.setdefault((stage, host), ("-", "dim"))

    def _table(self):
        from rich.table import Table
        from rich.text import Text

        with self._lock:
            table = Table(
                title=Text(self.title),
                title_justify="left",
                caption_justify="left",
                caption=Text("\n".join(self.notes)) if self.notes else None,
            )  # Text: no markup read
            table.add_column("stage")
            table.add_column("all hosts")
            per_host = 24 + 12 * len(self.hosts) <= self.console.width
            for host in self.hosts if per_host else ["hosts"]:
                table.add_column(Text(host))
            for stage in self.stages:
                row = [Text(stage), Text(*self.totals.get(stage, ("", "")))]
                if per_host:
                    row += [Text(*self.cells.get((stage, h), ("·", "dim"))) for h in self.hosts]
                else:
                    row.append(Text(self._count(stage)))
                table.add_row(*row)
            return table

    def _count(self, stage: str) -> str:
        marks = [self.cells[stage, h][0].split()[0] for h in self.hosts if (stage, h) in self.cells]
        failed = [h for h in self.hosts if self.cells.get((stage, h), ("",))[0].startswith("FAIL")]
        text = f"{marks.count('ok')}/{len(self.hosts)} ok, {marks.count('…')} running"
        return text + (f", FAIL: {', '.join(failed)}" if failed else "")


def for_terminal(out: TextIO | None = None) -> ConsoleProgress | LiveProgress:
    """The live table when `out` is a terminal; the plain lines everywhere else (pipes, files, CI logs)."""
    out = out or sys.stdout
    return LiveProgress(out) if out.isatty() else ConsoleProgress(out)


@contextmanager
def following(events: EventBus, out: TextIO | None = None) -> Iterator[None]:
    """Show the events emitted inside the block; the live view is closed however the block ends."""
    renderer = for_terminal(out)
    unsubscribe = events.subscribe(renderer)
    try:
        yield
    finally:
        renderer.close()
        unsubscribe()


def status_lines(statuses: list[EnvironmentStatus]) -> Iterator[str]:
    for st in statuses:
        yield f"{st.environment}: recorded {st.recorded_version or '-'}" + ("  DRIFT" if st.drift else "")
        for h in st.hosts:
            answer = f"answers {h.answering}" if h.answering else "no health answer"
            yield (
                f"  {h.name:<12} {h.address:<16} current {h.release or '-':<12} {answer}"
                + (f"  {h.slots_text}" if h.slots else "")
                + (f"  ({h.error})" if h.error else "")
            )
        if st.lock:
            yield f"  lock: {st.lock.holder}: {st.lock.reason}"
        if d := st.in_progress:
            yield (
                f"  in progress: #{d.id} {d.kind.value} {d.version} by {d.requested_by} "
                f"({d.state.value}, stage {d.meta.get('stage', '-')})"
            )
        if d := st.last:
            yield (
                f"  last: #{d.id} {d.kind.value} {d.version} by {d.requested_by} "
                f"{d.created_at:%Y-%m-%d %H:%M} {d.state.value}"
            )


def history_lines(rows: list[DeploymentRecord]) -> Iterator[str]:
    for d in rows:
        took = f"{d.seconds:.1f}s" if d.seconds is not None else "-"
        yield (
            f"#{d.id:<4} {d.created_at:%Y-%m-%d %H:%M:%S} {d.environment:<8} {d.kind.value:<8} "
            f"{d.version:<10} {d.state.value:<16} {took:>7} {d.requested_by}"
            + (f"  {d.failed_stage}: {d.error[:80]}" if d.failed_stage else "")
        )


def _iso(moment) -> str | None:
    return moment.isoformat() if moment else None


def deployment_document(d: DeploymentRecord | None, full: bool = False) -> dict | None:
    """{id, kind, version, state, requested_by, created_at}; `full` adds where, how, when and why it ended."""
    if d is None:
        return None
    out = {
        "id": d.id,
        "kind": d.kind.value,
        "version": d.version,
        "state": d.state.value,
        "requested_by": d.requested_by,
        "created_at": _iso(d.created_at),
    }
    if not full:
        return out
    return {
        "id": d.id,
        "environment": d.environment,
        **out,
        "via": d.meta.get("via"),
        "previous_version": d.previous_version,
        "reason": d.reason,
        "started_at": _iso(d.started_at),
        "finished_at": _iso(d.finished_at),
        "seconds": d.seconds,
        "failed_stage": d.failed_stage,
        "failed_host": d.failed_host,
        "error": d.error,
    }


def status_document(statuses: list[EnvironmentStatus]) -> list[dict]:
    return [
        {
            "environment": st.environment,
            "recorded_version": st.recorded_version,
            "drift": st.drift,
            "lock": {"holder": st.lock.holder, "reason": st.lock.reason, "kind": st.lock.kind} if st.lock else None,
            "in_progress": deployment_document(st.in_progress),
            "last": deployment_document(st.last),
            "hosts": [
                {
                    "name": h.name,
                    "address": h.address,
                    "release": h.release,
                    "answering": h.answering,
                    "error": h.error,
                    **({"live_slot": h.live_slot, "slots": h.slots} if h.slots else {}),
                }
                for h in st.hosts
            ],
        }
        for st in statuses
    ]


def history_document(rows: list[DeploymentRecord]) -> list[dict]:
    return [deployment_document(d, full=True) for d in rows]
