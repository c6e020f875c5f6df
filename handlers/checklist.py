"""The state of one deployment as its progress message shows it, folded from engine events.

Pure (no Slack, no I/O) so the renderer can apply a burst of events and draw only the latest state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.engine.events import DeploymentFinished, DeploymentStarted, Event, RollbackStarted, StageFinished, StageStarted

PENDING, RUNNING, DONE, FAILED, SKIPPED = "pending", "running", "done", "failed", "skipped"
MAX_THREAD_LINES = 40
BOT = "deploybot"  # who acts when nobody clicked: an automatic rollback is credited to the bot, not the requester


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
    _said: list[str] = field(default_factory=list, repr=False)  # 'host: error' already in the thread

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
            failed = next((s.name for s in self.stages.values() if s.status == FAILED), None)
            why = f"`{failed}` failed (above)" if failed and self._already_said(e.reason) else e.reason
            self._say(
                f":leftwards_arrow_with_hook: {BOT} is rolling back {', '.join(e.hosts)} to "
                f"{e.to_version or 'their previous release'}: {why}",
                always=True,
            )
        elif isinstance(e, DeploymentFinished):
            self.finished = e
            for line in self.stages.values():
                if line.status in (PENDING, RUNNING):
                    line.status = SKIPPED if line.status == PENDING else FAILED
            if self.rollback:
                self._say(self._rollback_outcome(e.state), always=True)

    def _finished_stage(self, e: StageFinished) -> None:
        line = self.stages.setdefault(e.stage, StageLine(e.stage))
        if e.host is not None:
            host = self.hosts.setdefault(e.host, HostLine(e.host))
            host.stage, host.status, host.error = e.stage, DONE if e.ok else FAILED, e.error
            if not e.ok:
                output = e.excerpt.strip()[-1500:]
                detail = f"\n```{output}```" if output and output not in e.error else ""
                if self._say(f":x: `{e.stage}` failed on {e.host} after {e.seconds:.2f}s: {e.error}{detail}"):
                    self._said.append(f"{e.host}: {e.error}")
            return
        line.seconds += e.seconds
        line.status = DONE if e.ok else FAILED
        line.error = e.error
        if e.ok:
            self._say(f":white_check_mark: `{e.stage}` done in {e.seconds:.2f}s")
        else:  # each failing host's error was said on its own line; say only what was not
            why = "" if self._already_said(e.error) else f": {e.error}"
            self._say(f":x: `{e.stage}` failed in {e.seconds:.2f}s{why}")

    def _already_said(self, error: str) -> bool:
        """True when `error` ('h1: ...; h2: ...', as the engine sums up a stage) only repeats host errors the
        thread already carries, so each host's error is said once."""
        rest = error
        for said in self._said:
            rest = rest.replace(said, "")
        return bool(self._said) and not rest.strip("; ")

    def _rollback_outcome(self, state: str) -> str:
        hosts, to = ", ".join(self.rollback.hosts), self.rollback.to_version or "their previous release"
        if state == "rolled_back":
            return f":leftwards_arrow_with_hook: {BOT} rolled back {hosts}: back on {to}, healthy."
        return (
            f":rotating_light: {BOT} could not roll back every host to {to} ({state.replace('_', ' ')}): "
            "the hosts may run different versions; see `/deploy status`."
        )

    def _say(self, text: str, always: bool = False) -> bool:
        if always or len(self.thread) < MAX_THREAD_LINES:  # what deploybot did on its own is never cut
            self.thread.append(text)
            return True
        return False

    def take_thread(self) -> list[str]:
        lines, self.thread = self.thread, []
        return lines
