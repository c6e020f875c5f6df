"""Gates: what must stay true while a new release serves, checked through every gated window of a run (a
canary's `canary_seconds` on its batch, and `verify_seconds` on every host, whatever the strategy).

A gate answers check() with a Verdict: pass, or fail with a one-line reason. The gates are each host's health
answering the version, the balancer's 5xx count and error rate for the watched hosts since the window began
(`gates.max_5xx`, `gates.max_error_rate`; deltas of two readings, since the balancer's counters start with it),
a smoke command (`gates.command`, run once on each host at the start of its window, inside the new release as
migrate and restart are, since it tests that release), and CloudWatch alarms (handed in by the service). The
first gate to trip ends every host's window at once, and its reason becomes the step's error, so the pipeline
reverts what switched as for any failed step; the verdict's detail goes into the audit trail.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from bot.config import Gates, Host
from bot.domain import Stage
from bot.engine import commands, health
from bot.redact import redact
from bot.targets.base import Command, Result

if TYPE_CHECKING:
    from bot.engine.plan import Plan

GATE_COMMAND = "gate_command"  # the op of `gates.command` on a host: run by the target, watched here
THROUGH_PROXY = "through_proxy"  # blue-green, after a flip: what users reach (the host's nginx) answers it
# what Windows.execute answers for the pipeline
OPS = (Stage.HEALTH, Stage.VERIFY, Stage.CANARY, GATE_COMMAND, THROUGH_PROXY)
FAIL_AFTER_ERRORS = 3  # readings in a row the balancer does not answer before its gate counts as tripped
WINDOW_WORDS = {Stage.VERIFY: "the verification window", Stage.CANARY: "the canary window"}


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""  # one line: what tripped, and why
    gate: str = ""  # health, balancer, command, alarms
    detail: dict = field(default_factory=dict)  # for the audit trail (an alarm: its name, since when, why)


PASS = Verdict(True)


class Gate(Protocol):
    name: str

    def check(self) -> Verdict: ...


class HealthGate:
    """One host's health URL answering the version that should serve there."""

    name = "health"

    def __init__(self, url: str, env, version: str | None, probe: health.Prober):
        self.url, self.env, self.version, self.probe = url, env, version, probe

    def check(self) -> Verdict:
        seen = self.probe(self.url, self.env.health, self.version)
        return Verdict(seen.ok, seen.detail, self.name)


class BalancerGate:
    """The balancer's requests and 5xx answers for the watched hosts, counted from the first reading on."""

    name = "balancer"

    def __init__(self, traffic, hosts: Sequence[str], cfg: Gates):
        self.traffic, self.hosts, self.cfg = traffic, list(hosts), cfg
        self.baseline: tuple[int, int] | None = None
        self.errors = 0
        self.check()  # the baseline: what the balancer had counted when the window began

    def _read(self) -> tuple[int, int]:
        stats = self.traffic.stats()
        requests = errors = 0
        for name in self.hosts:
            seen = stats.get(name)
            if seen is None or seen.requests is None or seen.errors_5xx is None:
                raise LookupError(f"the balancer does not count requests and 5xx answers for {name}")
            requests, errors = requests + seen.requests, errors + seen.errors_5xx
        return requests, errors

    def check(self) -> Verdict:
        from bot.traffic.base import TrafficError

        try:
            requests, errors = self._read()
            self.errors = 0
        except (TrafficError, LookupError) as exc:
            self.errors += 1
            if self.errors < FAIL_AFTER_ERRORS:
                return PASS
            return Verdict(False, f"balancer gate: the counts could not be read: {exc}", self.name)
        if self.baseline is None or requests < self.baseline[0] or errors < self.baseline[1]:
            self.baseline = (requests, errors)  # the first reading, or counters reset by a balancer restart
            return PASS
        requests, errors = requests - self.baseline[0], errors - self.baseline[1]
        on = ", ".join(self.hosts)
        detail = {"hosts": self.hosts, "requests": requests, "errors_5xx": errors}
        if self.cfg.max_5xx is not None and errors > self.cfg.max_5xx:
            reason = f"{errors} 5xx answers from {on} since the window began (gates.max_5xx: {self.cfg.max_5xx})"
            return Verdict(False, f"balancer gate: {reason}", self.name, detail)
        rate = self.cfg.max_error_rate
        if rate is not None and requests and errors / requests > rate:
            reason = f"error rate {errors / requests:.1%} ({errors} 5xx of {requests}) from {on}"
            reason += f" (gates.max_error_rate: {rate:g})"
            return Verdict(False, f"balancer gate: {reason}", self.name, detail)
        return Verdict(True, "", self.name, detail)


class AlarmGate:
    """CloudWatch alarms (bot.aws.alarms.AlarmWatch, read at most every `alarms.interval`): one going to ALARM
    that was not overridden at the start trips it; three failed reads in a row too (the gate cannot see)."""

    name = "alarms"

    def __init__(self, watch):
        self.watch = watch
        watch.arm()

    def check(self) -> Verdict:
        alarm = self.watch.check()
        if alarm is None:
            return PASS
        if alarm.state == "ERROR":
            return Verdict(False, alarm.reason, self.name, {"alarm": alarm.detail()})
        reason = f"CloudWatch alarm {alarm.name} went to ALARM at {alarm.since}: {alarm.reason}"
        return Verdict(False, reason, self.name, {"alarm": alarm.detail()})


class Every:
    """A gate shared by every host's window: read at most every `interval` seconds whichever host asks, and once
    tripped it stays tripped, so every window sees the same reason."""

    def __init__(self, gate: Gate, interval: float):
        self.gate, self.name, self.interval = gate, gate.name, interval
        self.tripped: Verdict | None = None
        self._next = time.monotonic() + interval
        self._lock = threading.Lock()

    def check(self) -> Verdict:
        with self._lock:
            if self.tripped is None and time.monotonic() >= self._next:
                self._next = time.monotonic() + self.interval
                verdict = self.gate.check()
                self.tripped = None if verdict.ok else verdict
            return self.tripped or PASS


class Tripped:
    """A gate that could not even be set up (the balancer unreachable): it fails the window at once."""

    def __init__(self, verdict: Verdict):
        self.name, self.verdict = verdict.gate, verdict

    def check(self) -> Verdict:
        return self.verdict


def window_commands(stage: Stage, plan: Plan, host: Host, version: str) -> list[Command]:
    """A gated window on `host`, as the dry run prints it and the pipeline runs it: the smoke command (if any) in
    the release, then the window itself, answered from the bot."""
    env, cfg = plan.env, plan.env.gates
    out = []
    if cfg.command:
        run = commands.in_release(stage, env.host_path(host), version, cfg.command)
        out.append(replace(run, op=GATE_COMMAND))
    seconds = env.verify_seconds if stage is Stage.VERIFY else env.strategy.canary_seconds
    watched = [f"GET {env.health_url(host)} every {env.health.interval:g}s, each answering version {version}"]
    if cfg.max_5xx is not None:
        watched.append(f"at most {cfg.max_5xx} 5xx answers")
    if cfg.max_error_rate is not None:
        watched.append(f"an error rate of at most {cfg.max_error_rate:g}")
    if cfg.reads_balancer:
        watched[-1] += f" from the balancer since the window began (read every {min(cfg.interval, seconds / 2):g}s)"
    if env.alarms is not None:
        watched.append(f"no CloudWatch alarm going to ALARM (read every {env.alarms.interval:g}s)")
    out.append(Command(stage, f"for {seconds:g}s: " + "; ".join(watched), version))
    return out


class Windows:
    """The health stage and the gated windows of one run. `pipeline` gives the plan, the pool, the cancel flag and
    its balancer (opened at the first drain, or here)."""

    def __init__(self, pipeline):
        self.p, self.env = pipeline, pipeline.plan.env
        self.extra: list[Gate] = []  # gates every window checks besides the configured ones (the alarms)
        self.failed = threading.Event()  # one host's window failing ends every host's: the revert starts now
        self.tripped: Verdict | None = None
        self._shared: dict[str, list[Gate]] = {}
        self._lock = threading.Lock()

    def execute(self, host: Host, command: Command) -> Result:
        if command.op == GATE_COMMAND:
            res = self.p.pool.get(self.env, host).run(replace(command, tag=commands.tag(self.p.plan.deployment_id)))
            if res.ok:
                return res
            self._trip(Verdict(False, f"gate command failed on {host.name}: {res.describe()}", "command"))
            return replace(res, stderr=f"gates.command failed: {res.stderr}".strip(), error=res.error)
        if command.op in (Stage.HEALTH, THROUGH_PROXY):  # blue-green's health asks the slot, THROUGH_PROXY nginx
            url = self.env.health_url(host, self.p.hosts[host.name].slots.port_for(command.op))
            seen = health.wait_healthy(url, self.env.health, command.version, self.p.pool.probe)
            verdict = Verdict(seen.ok, seen.detail)
        else:
            verdict = self._window(host, command)
        out = "" if verdict.ok else verdict.reason
        return Result(host.name, command, 0 if verdict.ok else 1, verdict.reason if verdict.ok else "", out)

    def add(self, *gates: Gate) -> None:
        """More gates for every window, before the run starts (the service's CloudWatch alarms)."""
        self.extra += [Every(g, 0.0) for g in gates]

    def detail(self) -> dict:
        """What the audit trail keeps of a tripped gate: which, why, and its own detail (an alarm's)."""
        if self.tripped is None:
            return {}
        return {"gate": {"name": self.tripped.gate, "reason": redact(self.tripped.reason)}, **self.tripped.detail}

    def _window(self, host: Host, command: Command) -> Verdict:
        op, words = Stage(command.op), WINDOW_WORDS[Stage(command.op)]
        seconds = self.env.verify_seconds if op is Stage.VERIFY else self.env.strategy.canary_seconds
        gates = [HealthGate(self.env.health_url(host), self.env, command.version, self.p.pool.probe)]
        gates += self._shared_gates(op)
        end, checks = time.monotonic() + seconds, 0
        while time.monotonic() < end and not (self.p.cancel_requested() or self.failed.is_set()):
            for gate in gates:
                verdict = gate.check()
                if not verdict.ok:
                    self._trip(verdict)
                    return replace(verdict, reason=f"failed during {words}: {verdict.reason}")
            checks += 1
            time.sleep(min(self.env.health.interval, max(0.0, end - time.monotonic())))
        if self.p.cancel_requested():
            return Verdict(False, f"aborted by request during {words}")
        return Verdict(True, f"gates held for {seconds:g}s ({checks} checks)")

    def _shared_gates(self, op: Stage) -> list[Gate]:
        """The gates every host of this window shares, made when its first host enters it (the balancer's
        baseline is read then)."""
        with self._lock:
            if op not in self._shared:
                made: list[Gate] = []
                if self.env.gates.reads_balancer:
                    made.append(self._balancer_gate(op))
                self._shared[op] = made + self.extra
            return self._shared[op]

    def _balancer_gate(self, op: Stage) -> Gate:
        from bot.traffic.base import TrafficError

        hosts = self.p.plan.batches()[0] if op is Stage.CANARY else self.p.plan.hosts
        try:
            gate = BalancerGate(self.p.balancer.open(), [h.name for h in hosts], self.env.gates)
        except TrafficError as exc:
            return Tripped(Verdict(False, f"balancer gate: {exc}", BalancerGate.name))
        seconds = self.env.verify_seconds if op is Stage.VERIFY else self.env.strategy.canary_seconds
        return Every(gate, min(self.env.gates.interval, seconds / 2))  # read at least twice in a short window

    def _trip(self, verdict: Verdict) -> None:
        with self._lock:
            self.tripped = self.tripped or verdict
        self.failed.set()
