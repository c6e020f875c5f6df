"""The state of one deployment as its progress message shows it, folded from engine events.

Pure (no Slack, no I/O) so the renderer can apply a burst of events and draw only the latest state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.engine.events import DeploymentFinished, DeploymentStarted, Event, RollbackStarted, StageFinished, StageStarted

PENDING, RUNNING, DONE, FAILED, SKIPPED = "pending", "running", "done", "failed", "skipped"
MAX_THREAD_LINES = 40


@dataclass
class StageLine:
    name: str
    status: str = PENDING
    seconds: float = 0.0
    error: str = ""


@dataclass
class HostLine:
    name: str
    stage: str = ""
    status: str = PENDING
    error: str = ""


@dataclass
class Checklist:
    deployment_id: int
    kind: str = "deploy"
    stages: dict[str, StageLine] = field(default_factory=dict)
    hosts: dict[str, HostLine] = field(default_factory=dict)
    rollback: RollbackStarted | None = None
    finished: DeploymentFinished | None = None
    thread: list[str] = field(default_factory=list)  # lines not yet posted in the message's thread

    @property
    def current_stage(self) -> str | None:
        return next((s.name for s in self.stages.values() if s.status == RUNNING), None)

    def apply(self, e: Event) -> None:
        if isinstance(e, DeploymentStarted):
            self.kind = e.kind
            self.stages = {s: StageLine(s) for s in e.stages}
            self.hosts = {h: HostLine(h) for h in e.hosts}
        elif isinstance(e, StageStarted):
            line = self.stages.setdefault(e.stage, StageLine(e.stage))
            if e.host is None:
                line.status = RUNNING
            else:
                host = self.hosts.setdefault(e.host, HostLine(e.host))
                host.stage, host.status = e.stage, RUNNING
        elif isinstance(e, StageFinished):
            self._finished_stage(e)
        elif isinstance(e, RollbackStarted):
            self.rollback = e
            self._say(f":leftwards_arrow_with_hook: rolling back {', '.join(e.hosts)} to "
                      f"{e.to_version or 'their previous release'}: {e.reason}")
        elif isinstance(e, DeploymentFinished):
            self.finished = e
            for line in self.stages.values():
                if line.status in (PENDING, RUNNING):
                    line.status = SKIPPED if line.status == PENDING else FAILED

    def _finished_stage(self, e: StageFinished) -> None:
        line = self.stages.setdefault(e.stage, StageLine(e.stage))
        if e.host is not None:
            host = self.hosts.setdefault(e.host, HostLine(e.host))
            host.stage, host.status, host.error = e.stage, DONE if e.ok else FAILED, e.error
            if not e.ok:
                detail = f"\n```{e.excerpt[-1500:]}```" if e.excerpt else ""
                self._say(f":x: `{e.stage}` failed on {e.host} after {e.seconds:.2f}s: {e.error}{detail}")
            return
        line.seconds += e.seconds
        line.status = DONE if e.ok else FAILED
        line.error = e.error
        self._say(f"{':white_check_mark:' if e.ok else ':x:'} `{e.stage}` {'done' if e.ok else 'failed'} "
                  f"in {e.seconds:.2f}s")

    def _say(self, text: str) -> None:
        if len(self.thread) < MAX_THREAD_LINES:
            self.thread.append(text)

    def take_thread(self) -> list[str]:
        lines, self.thread = self.thread, []
        return lines
