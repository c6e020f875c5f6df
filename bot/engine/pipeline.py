"""Run a plan through the flow table: each phase in order, publishing batch by batch; revert what switched on
failure, by publishing each switched host's previous release again.

The pipeline returns an Outcome; the service's lifecycle writes the final state and only then emits
DeploymentFinished, so a subscriber that reads the store on that event sees the end state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from bot.config import Host
from bot.domain import Kind, Stage, State
from bot.engine import balance, commands, flow, gates, slots
from bot.engine.events import DeploymentStarted, EventBus, RollbackStarted, StageFinished, StageStarted
from bot.engine.plan import Plan
from bot.engine.slots import HostSlots
from bot.redact import redact
from bot.targets.base import Command, Result
from bot.targets.pool import Fleet, on_hosts

Work = Callable[[Host], Result]


@dataclass
class HostState:
    host: Host
    previous: str | None = None  # what `current` pointed at before we started (read by preflight)
    switched: bool = False  # now serves the plan's version: a failure must bring it back
    drained: bool = False  # out of the balancer: it must come back once it serves a known, healthy release
    slots: HostSlots = field(default_factory=HostSlots)  # blue-green: what its slots hold, where a publish goes


@dataclass
class Outcome:
    state: State
    failed_stage: str | None = None
    failed_host: str | None = None
    error: str = ""
    previous_version: str | None = None
    seconds: float = 0.0
    reverted_hosts: list[str] = field(default_factory=list)
    gate: dict = field(default_factory=dict)  # the gate that tripped, for the audit trail (gates.Windows.detail)


@dataclass
class _Track:
    """One stage across the hosts of a _stages call."""

    expected: int
    done: int = 0
    started: float | None = None
    ended: bool = False
    failures: list[Result] = field(default_factory=list)

    def in_host_order(self, names: list[str]) -> list[Result]:
        return sorted(self.failures, key=lambda r: names.index(r.host))

    def summary(self, names: list[str]) -> str:
        """Every failure, in host order: 'h2: exit 1: ...; h3: ...'."""
        return "; ".join(f"{r.host}: {redact(r.describe())}" for r in self.in_host_order(names))


class StageFailed(Exception):
    def __init__(self, stage: Stage, host: str | None, error: str):
        super().__init__(error)
        self.stage, self.host, self.error = stage, host, error


class Cancelled(Exception):
    pass


class Pipeline:
    def __init__(self, plan: Plan, pool: Fleet, events: EventBus, cancel_requested: Callable[[], bool] = lambda: False):
        self.plan = plan
        self.env = plan.env
        self.pool = pool
        self.events = events
        self.cancel_requested = cancel_requested
        warm = plan.warm_slots or {}
        self.hosts = {h.name: HostState(h, slots=HostSlots(target=warm.get(h.name))) for h in plan.hosts}
        self.balancer = balance.Balancer(self.env, pool)  # opened at the first drain
        self.windows = gates.Windows(self)  # the health stage and every gated window (the service adds alarms)
        self.stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + f"-d{plan.deployment_id}"

    def run(self) -> Outcome:
        started, plan = time.monotonic(), self.plan
        self.events.emit(
            DeploymentStarted(
                plan.deployment_id,
                environment=self.env.name,
                version=plan.version,
                kind=plan.kind.value,
                hosts=tuple(h.name for h in plan.hosts),
                stages=tuple(s.value for s in plan.stages),
            )
        )
        try:
            for index, row in enumerate(flow.rows(plan)):
                if index:
                    self._checkpoint()
                if row.per_batch:
                    for batch_no, batch in enumerate(plan.batches()):
                        if batch_no:
                            self._checkpoint()
                        for group in flow.groups(row.steps, first_batch=not batch_no):
                            self._stages([(s.stage, self._step(s.stage)) for s in group], batch)
                else:
                    for step in row.steps:
                        self._stages([(step.stage, self._step(step.stage))], step.hosts(plan), step.must_pass)
            outcome = Outcome(State.SUCCEEDED)
        except (StageFailed, Cancelled) as exc:
            outcome = self._recover(exc)
        previous = {s.previous for s in self.hosts.values() if s.previous}
        outcome.previous_version = previous.pop() if len(previous) == 1 else None
        outcome.seconds, outcome.gate = time.monotonic() - started, self.windows.detail()
        return outcome

    def _checkpoint(self) -> None:
        if self.cancel_requested():
            raise Cancelled("aborted by request")

    # ---- one step on one host: the flow table's commands, run in order ------------------------------------
    def _step(self, stage: Stage, version: str | None = None) -> Work:
        """`version` None: the plan's version, going forward; else a revert to that release."""

        def work(host: Host) -> Result:
            state, release = self.hosts[host.name], version or self.plan.version
            if stage is Stage.SWITCH and slots.is_blue_green(self.env):
                state.slots.target = slots.prepare(self.env, host, state.slots, release, self.pool)
            res: Result | None = None
            said = []  # every command's output, for the stage's record
            known = {"current": state.previous, "version": version, "stamp": self.stamp, "host_slots": state.slots}
            for command in flow.commands_for(stage, self.plan, host, **known):
                res = self._execute(host, command)
                if not res.ok:
                    return res
                if command.op is Stage.FLIP and version is None and self.plan.kind is Kind.DEPLOY:
                    state.switched = True  # the marker moved: should the check through nginx fail, flip it back
                said += [res.stdout.rstrip("\n")] if res.stdout.strip() else []
            assert res is not None
            res = replace(res, stdout="\n".join(said)) if len(said) > 1 else res
            state.slots.ran(stage, release)
            if stage is Stage.PREFLIGHT:
                state.previous = commands.parse_current(res.stdout)
                state.slots.read(res.stdout)
            elif stage is slots.serving_stage(self.env) and version is None and self.plan.kind is Kind.DEPLOY:
                state.switched = True
            return res

        return work

    def _execute(self, host: Host, command: Command) -> Result:
        if command.op in gates.OPS:  # health, the canary and verification windows under every gate
            return self.windows.execute(host, command)
        if command.op == slots.NOTE:  # nothing to do on the host (a warm slot needs no restart)
            return Result(host.name, command, 0, command.shell)
        if command.op in (Stage.DRAIN, Stage.RESTORE):
            return self.balancer.step(host, self.hosts[host.name], command)
        target = self.pool.get(self.env, host)
        if command.files:
            return target.put(*command.files)
        return target.run(replace(command, tag=commands.tag(self.plan.deployment_id)))

    def revert(self, previous: dict[str, str], reason: str) -> Outcome:
        """Take-over: the process running this deployment stopped; publish each listed host's previous release."""
        for name, version in previous.items():
            self.hosts[name].previous, self.hosts[name].switched = version, True
        return self._recover(Cancelled(reason))

    # ---- failure: revert what switched ----------------------------------------------------------------------
    def _recover(self, exc: StageFailed | Cancelled) -> Outcome:
        stage = exc.stage.value if isinstance(exc, StageFailed) else None
        host = exc.host if isinstance(exc, StageFailed) else None
        error = exc.error if isinstance(exc, StageFailed) else str(exc)
        waiting = [s.host for s in self.hosts.values() if s.drained and not s.switched]
        if waiting:  # out of the balancer but still on their previous release: back into service first
            self._stages([(Stage.RESTORE, self._step(Stage.RESTORE))], waiting, must_pass=False)
        switched = [s for s in self.hosts.values() if s.switched]
        if self.plan.kind is Kind.ROLLBACK or not switched:
            return Outcome(State.CANCELLED if isinstance(exc, Cancelled) else State.FAILED, stage, host, error)
        previous = {s.previous for s in switched}
        self.events.emit(
            RollbackStarted(
                self.plan.deployment_id,
                reason=error,
                hosts=tuple(s.host.name for s in switched),
                to_version=previous.pop() if len(previous) == 1 else None,
            )
        )
        state = State.ROLLED_BACK
        # the hosts already out of the balancer (the failed batch) first: they serve nobody until reverted
        for batch in balance.revert_batches(self.env, [s.host for s in sorted(switched, key=lambda s: not s.drained)]):
            try:
                self._stages([(Stage.REVERT, self._revert)], batch)
            except StageFailed:
                state = State.ROLLBACK_FAILED  # the other batches still go back: as many hosts known as can be
        return Outcome(state, stage, host, error, reverted_hosts=[s.host.name for s in switched])

    def _revert(self, host: Host) -> Result:
        """Publishing again, with this host's previous release: the same steps, as one chain."""
        state = self.hosts[host.name]
        command = Command(Stage.REVERT, f"publish {state.previous} again", state.previous)
        if not state.previous:
            return Result(host.name, command, None, error="no previous release on this host to return to")
        for step in (s for s in flow.PUBLISHING.steps if s.when(self.plan) and not s.first_batch_only):
            res = self._step(step.stage, version=state.previous)(host)
            if not res.ok:
                return res
        state.switched = False
        return Result(host.name, command, 0, f"back on {state.previous}")

    # ---- stage plumbing ------------------------------------------------------------------------------------
    def _stages(self, steps: list[tuple[Stage, Work]], hosts: list[Host], must_pass: bool = True) -> None:
        """Run `steps` on every host, the hosts in parallel, each host going on to its next step as soon as its own
        last one passed: no host waits at every step for the slowest (a 20-host switch, restart, health runs as
        one chain per host). A stage starts when the first host enters it and finishes when no host has it left
        to run; after a failure no host goes on to a next step, and the earliest failed stage is raised."""
        dep, names = self.plan.deployment_id, [h.name for h in hosts]
        tracks = {stage: _Track(expected=len(hosts)) for stage, _ in steps}
        lock = threading.Lock()

        def finish_if_done(stage: Stage) -> None:  # under the lock
            track = tracks[stage]
            if track.started is not None and not track.ended and track.done >= track.expected:
                track.ended = True
                self.events.emit(
                    StageFinished(
                        dep,
                        stage=stage.value,
                        host=None,
                        ok=not track.failures,
                        seconds=time.monotonic() - track.started,
                        error=track.summary(names),
                    )
                )

        def skip_from(index: int) -> None:  # under the lock: this host will not run steps[index:]
            for stage, _ in steps[index:]:
                tracks[stage].expected -= 1
                finish_if_done(stage)

        def chain(host: Host) -> None:
            for index, (stage, work) in enumerate(steps):
                track = tracks[stage]
                with lock:
                    # every host runs the first step (as a revert must); after a failure, none goes further
                    if index and must_pass and any(t.failures for t in tracks.values()):
                        skip_from(index)
                        return
                    if track.started is None:
                        track.started = time.monotonic()
                        self.events.emit(StageStarted(dep, stage=stage.value))
                res = self._on_host(stage, host, work)
                with lock:
                    track.done += 1
                    if not res.ok:
                        track.failures.append(res)
                    finish_if_done(stage)
                    if not res.ok:
                        skip_from(index + 1)
                        return

        on_hosts(hosts, chain, self.env.ssh.parallel)
        failed = [stage for stage, _ in steps if tracks[stage].failures]
        if failed and must_pass:
            track = tracks[failed[0]]
            raise StageFailed(failed[0], track.in_host_order(names)[0].host, track.summary(names))

    def _on_host(self, stage: Stage, host: Host, work: Work) -> Result:
        """One step on one host, with its events; whatever goes wrong becomes a failed Result, never an escape."""
        dep = self.plan.deployment_id
        self.events.emit(StageStarted(dep, stage=stage.value, host=host.name))
        h0 = time.monotonic()
        try:
            res = work(host)
        except Exception as exc:  # noqa: BLE001 - a bug in a stage must still be recorded and reverted
            res = Result(host.name, Command(stage, ""), None, error=f"internal error: {type(exc).__name__}: {exc}")
        output = res.stdout + ("\n" + res.stderr if res.stderr else "")
        self.events.emit(
            StageFinished(
                dep,
                stage=stage.value,
                host=host.name,
                ok=res.ok,
                seconds=time.monotonic() - h0,
                exit_code=res.exit_code,
                excerpt=redact.excerpt(output),
                output=redact(output),
                error="" if res.ok else redact(res.describe()),
            )
        )
        return res
