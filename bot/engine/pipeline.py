"""Run a plan: prepare every host, publish batch by batch, verify, clean up; revert what switched on failure.

The pipeline returns an Outcome; the service writes the final state and only then emits DeploymentFinished,
so a subscriber that reads the store on that event sees the end state.

in-place is rolling with one batch holding every host, so there is one algorithm, not two.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.config import Host
from bot.domain import Kind, Stage, State
from bot.engine import commands, health
from bot.engine.events import (
    DeploymentStarted,
    EventBus,
    RollbackStarted,
    StageFinished,
    StageStarted,
)
from bot.engine.plan import Plan
from bot.redact import redact
from bot.targets.base import Result, TargetError
from bot.targets.pool import TargetPool, on_hosts


@dataclass
class HostState:
    host: Host
    path: str
    previous: str | None = None  # what `current` pointed at before we started
    switched: bool = False


@dataclass
class Outcome:
    state: State
    failed_stage: str | None = None
    failed_host: str | None = None
    error: str = ""
    previous_version: str | None = None
    seconds: float = 0.0
    reverted_hosts: list[str] = field(default_factory=list)


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
    def __init__(self, plan: Plan, pool: TargetPool, events: EventBus,
                 cancel_requested: Callable[[], bool] = lambda: False,
                 on_rollback: Callable[[], None] = lambda: None):
        self.plan = plan
        self.env = plan.env
        self.pool = pool
        self.events = events
        self.cancel_requested = cancel_requested
        self.on_rollback = on_rollback
        self.hosts = {h.name: HostState(h, plan.env.host_path(h)) for h in plan.hosts}
        self.stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + f"-d{plan.deployment_id}"

    # ---- running -------------------------------------------------------------------------------
    def run(self) -> Outcome:
        started = time.monotonic()
        plan = self.plan
        self._emit(DeploymentStarted(plan.deployment_id, environment=self.env.name, version=plan.version,
                                     kind=plan.kind.value, hosts=tuple(h.name for h in plan.hosts),
                                     stages=tuple(s.value for s in plan.stages)))
        try:
            if plan.kind is Kind.ROLLBACK:
                self._rollback_steps()
            else:
                self._deploy_steps()
            outcome = Outcome(State.SUCCEEDED)
        except (StageFailed, Cancelled) as exc:
            outcome = self._recover(exc)
        outcome.previous_version = self._previous_version()
        outcome.seconds = time.monotonic() - started
        return outcome

    def _deploy_steps(self) -> None:
        plan, all_hosts = self.plan, list(self.plan.hosts)
        self._stage(Stage.PREFLIGHT, all_hosts, self._preflight)
        self._stage(Stage.BACKUP, all_hosts, self._backup)
        self._stage(Stage.UPLOAD, all_hosts, self._upload)
        if self.env.migrate:
            migrate_on = all_hosts if self.env.migrate_on == "all" else all_hosts[:1]
            self._stage(Stage.MIGRATE, migrate_on, self._run_in_release(self.env.migrate))
        for batch in plan.batches():
            self._checkpoint()
            self._publish(batch, plan.version)
        if self.env.verify_seconds:
            self._checkpoint()
            self._stage(Stage.VERIFY, all_hosts, self._verify)
        self._stage(Stage.CLEANUP, all_hosts, self._cleanup, must_pass=False)

    def _rollback_steps(self) -> None:
        plan, all_hosts = self.plan, list(self.plan.hosts)
        self._stage(Stage.PREFLIGHT, all_hosts, self._preflight)
        if plan.restore_db_from:
            self._stage(Stage.RESTORE_DB, all_hosts[:1], self._restore_db)
        self._publish(all_hosts, plan.version)

    def _publish(self, hosts: list[Host], version: str) -> None:
        self._stages([(Stage.SWITCH, self._switch(version)), (Stage.RESTART, self._run_in_release(self.env.restart)),
                      (Stage.HEALTH, self._health(version))], hosts)

    def _checkpoint(self) -> None:
        if self.cancel_requested():
            raise Cancelled("aborted by request")

    def _recover(self, exc: StageFailed | Cancelled) -> Outcome:
        stage = exc.stage.value if isinstance(exc, StageFailed) else None
        host = exc.host if isinstance(exc, StageFailed) else None
        error = exc.error if isinstance(exc, StageFailed) else str(exc)
        switched = [s for s in self.hosts.values() if s.switched]
        if self.plan.kind is Kind.ROLLBACK or not switched:
            state = State.CANCELLED if isinstance(exc, Cancelled) else State.FAILED
            return Outcome(state, stage, host, error)
        self.on_rollback()
        reverted = self._revert(switched, reason=error)
        state = State.ROLLED_BACK if reverted else State.ROLLBACK_FAILED
        return Outcome(state, stage, host, error, reverted_hosts=[s.host.name for s in switched])

    def _revert(self, switched: list[HostState], reason: str) -> bool:
        """Flip the hosts that switched back to what they ran before, restart, and check health."""
        previous = {s.previous for s in switched}
        to_version = previous.pop() if len(previous) == 1 else None
        self._emit(RollbackStarted(self.plan.deployment_id, reason=reason,
                                   hosts=tuple(s.host.name for s in switched), to_version=to_version))

        def revert_one(host: Host) -> Result:
            state = self.hosts[host.name]
            if not state.previous:
                return Result(host.name, None, error="no previous release on this host to return to")
            for step in (self._switch(state.previous), self._run_in_release(self.env.restart, state.previous),
                         self._health(state.previous)):
                res = step(host)
                if not res.ok:
                    return res
            state.switched = False
            return Result(host.name, 0, f"back on {state.previous}")

        try:
            self._stage(Stage.REVERT, [s.host for s in switched], revert_one)
            return True
        except StageFailed:
            return False

    # ---- stage plumbing ---------------------------------------------------------------------------
    def _stage(self, stage: Stage, hosts: list[Host], work: Callable[[Host], Result], must_pass: bool = True) -> None:
        self._stages([(stage, work)], hosts, must_pass)

    def _stages(self, steps: list[tuple[Stage, Callable[[Host], Result]]], hosts: list[Host],
                must_pass: bool = True) -> None:
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
                self._emit(StageFinished(dep, stage=stage.value, host=None, ok=not track.failures,
                                         seconds=time.monotonic() - track.started, error=track.summary(names)))

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
                        self._emit(StageStarted(dep, stage=stage.value))
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

    def _on_host(self, stage: Stage, host: Host, work: Callable[[Host], Result]) -> Result:
        """One step on one host, with its events; whatever goes wrong becomes a failed Result, never an escape."""
        dep = self.plan.deployment_id
        self._emit(StageStarted(dep, stage=stage.value, host=host.name))
        h0 = time.monotonic()
        try:
            res = work(host)
        except TargetError as exc:
            res = Result(host.name, None, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug in a stage must still be recorded and reverted
            res = Result(host.name, None, error=f"internal error: {type(exc).__name__}: {exc}")
        self._emit(StageFinished(dep, stage=stage.value, host=host.name, ok=res.ok,
                                 seconds=time.monotonic() - h0, exit_code=res.exit_code,
                                 excerpt=redact.excerpt(res.stdout + ("\n" + res.stderr if res.stderr else "")),
                                 error="" if res.ok else redact(res.describe())))
        return res

    def _emit(self, event) -> None:
        self.events.emit(event)

    def _target(self, host: Host):
        return self.pool.get(self.env, host)

    def _previous_version(self) -> str | None:
        previous = {s.previous for s in self.hosts.values() if s.previous}
        return previous.pop() if len(previous) == 1 else None

    # ---- the stages, one host at a time --------------------------------------------------------
    def _preflight(self, host: Host) -> Result:
        state = self.hosts[host.name]
        need = self.plan.version if self.plan.kind is Kind.ROLLBACK else None
        artifact = self.plan.artifact
        fetch_url = artifact.source if artifact and artifact.fetched_by_hosts else None
        res = self._target(host).run(commands.preflight(self.env, state.path, expect_current=self.plan.expect_current,
                                                        need_release=need, fetch_url=fetch_url),
                                     timeout=self.env.ssh.connect_timeout + 30)
        if res.ok:
            state.previous = commands.parse_current(res.stdout)
        return res

    def _backup(self, host: Host) -> Result:
        state = self.hosts[host.name]
        return self._target(host).run(commands.backup(state.path, self.stamp, state.previous, self.env.backup))

    def _upload(self, host: Host) -> Result:
        artifact = self.plan.artifact
        assert artifact is not None
        state, target = self.hosts[host.name], self._target(host)
        remote = f"{commands.incoming_dir(state.path)}/{artifact.name}.d{self.plan.deployment_id}"
        unpack = commands.unpack(state.path, remote, artifact.sha256, self.plan.version)
        if artifact.fetched_by_hosts:
            return target.run(commands.download(state.path, artifact.source, remote) + "\n" + unpack)
        res = target.run(commands.prepare_upload(state.path))
        if not res.ok:
            return res
        target.put(artifact.local, remote)
        return target.run(unpack)

    def _run_in_release(self, command: str, version: str | None = None) -> Callable[[Host], Result]:
        def run(host: Host) -> Result:
            path = self.hosts[host.name].path
            return self._target(host).run(commands.in_release(path, version or self.plan.version, command))
        return run

    def _switch(self, version: str) -> Callable[[Host], Result]:
        def run(host: Host) -> Result:
            state = self.hosts[host.name]
            res = self._target(host).run(commands.switch(state.path, version))
            if res.ok and self.plan.kind is Kind.DEPLOY and version == self.plan.version:
                state.switched = True
            return res
        return run

    def _health(self, version: str) -> Callable[[Host], Result]:
        def run(host: Host) -> Result:
            probe = health.wait_healthy(self.env.health_url(host), self.env.health, version)
            return Result(host.name, 0 if probe.ok else 1, probe.detail if probe.ok else "",
                          "" if probe.ok else probe.detail)
        return run

    def _verify(self, host: Host) -> Result:
        probe = health.watch(self.env.health_url(host), self.env.health, self.plan.version, self.env.verify_seconds,
                             stop=self.cancel_requested)
        if probe.ok and self.cancel_requested():
            return Result(host.name, None, error="aborted by request during the verification window")
        detail = probe.detail
        return Result(host.name, 0 if probe.ok else 1, detail if probe.ok else "", "" if probe.ok else detail)

    def _cleanup(self, host: Host) -> Result:
        state = self.hosts[host.name]
        protect = [self.plan.version, state.previous or ""]
        return self._target(host).run(commands.cleanup(state.path, self.env.keep_releases, protect, self.env.backup))

    def _restore_db(self, host: Host) -> Result:
        state = self.hosts[host.name]
        assert self.plan.restore_db_from
        return self._target(host).run(commands.restore_db(state.path, self.plan.restore_db_from,
                                                          self.env.backup.restore_commands))
