"""CloudWatch alarms as gates (`alarms: {names: [...], prefix: shop-prod-}`).

Before a deploy starts (at the request, and again when the run starts) every listed alarm, and every alarm whose
name starts with the prefix, is read: one in ALARM refuses the start, naming it and its reason, unless the request
carries an override reason. During the verification window the alarms are read again every `alarms.interval`
seconds; one going to ALARM (any not overridden at the start) trips the alarms gate (bot.engine.gates.AlarmGate),
which ends every host's window with the alarm named, so the hosts that switched are reverted as for any tripped
gate (a canary's window is watched the same way)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from bot.aws.config import Alarms, AWSSettings
from bot.aws.session import AWSError, asking, client

log = logging.getLogger(__name__)
_TYPES = ["MetricAlarm", "CompositeAlarm"]
FAIL_AFTER_ERRORS = 3  # reads in a row that fail during the window before the gate counts as failed


@dataclass(frozen=True)
class Firing:
    """An alarm that stops a deploy: in ALARM (since when, and why), or listed but not there."""

    name: str
    state: str  # ALARM, or MISSING for a listed name CloudWatch does not know
    reason: str
    since: str = ""  # ISO time of its last state change

    def describe(self) -> str:
        if self.state == "ERROR":
            return self.reason
        if self.state == "MISSING":
            return f"CloudWatch alarm {self.name} does not exist (alarms.names)"
        return f"CloudWatch alarm {self.name} is in ALARM since {self.since}: {self.reason}"

    def detail(self) -> dict:
        return asdict(self)


def firing(settings: AWSSettings, cfg: Alarms) -> list[Firing]:
    """Every configured alarm now in ALARM, and every listed name that does not exist, sorted by name."""
    cw = client("cloudwatch", settings)
    found: dict[str, Firing] = {}
    with asking("reading the CloudWatch alarms"):
        if cfg.names:
            seen = set()
            for page in cw.get_paginator("describe_alarms").paginate(AlarmNames=cfg.names, AlarmTypes=_TYPES):
                for alarm in _alarms(page):
                    seen.add(alarm["AlarmName"])
                    if alarm.get("StateValue") == "ALARM":
                        found[alarm["AlarmName"]] = _firing(alarm)
            found |= {n: Firing(n, "MISSING", "no such alarm") for n in cfg.names if n not in seen}
        if cfg.prefix:
            pages = cw.get_paginator("describe_alarms").paginate(
                AlarmNamePrefix=cfg.prefix, StateValue="ALARM", AlarmTypes=_TYPES
            )
            found |= {
                a["AlarmName"]: _firing(a) for page in pages for a in _alarms(page) if a.get("StateValue") == "ALARM"
            }  # filtered here too: not every implementation does
    return [found[n] for n in sorted(found)]


def _alarms(page: dict) -> list[dict]:
    return [*page.get("MetricAlarms", []), *page.get("CompositeAlarms", [])]


def _firing(alarm: dict) -> Firing:
    since = alarm.get("StateUpdatedTimestamp")
    return Firing(
        alarm["AlarmName"],
        "ALARM",
        alarm.get("StateReason", ""),
        since.isoformat(timespec="seconds") if since is not None else "",
    )


class StartGate:
    """What the alarms say as a deploy is about to start: refused while one fires, unless an override reason was
    given; the audit detail either way (which alarms, since when, why, and the override reason)."""

    def __init__(self, settings: AWSSettings, cfg: Alarms, override: str = ""):
        self.settings, self.cfg, self.override = settings, cfg, override.strip()
        try:
            self.firing = firing(settings, cfg)
        except AWSError as exc:
            self.firing = [Firing("(unreadable)", "ERROR", f"the CloudWatch alarms could not be read: {exc}")]

    @property
    def refused(self) -> bool:
        return bool(self.firing) and not self.override

    @property
    def refusal(self) -> str:
        """The sentence a refused requester reads."""
        return (
            "not starting: "
            + "; ".join(f.describe() for f in self.firing)
            + " (to deploy anyway, give a reason: `/deploy ENV VERSION override-alarms REASON` in Slack, "
            "`deploybot deploy ENV VERSION --override-alarms REASON` on the command line)"
        )

    @property
    def detail(self) -> dict:
        if not self.firing:
            return {}
        found = {"alarms": [f.detail() for f in self.firing]}
        return {"alarms_overridden": {**found, "reason": self.override}} if self.override else found

    def watch(self) -> AlarmWatch:
        """The verification window's watch; alarms overridden at the start do not fail it."""
        return AlarmWatch(
            lambda: firing(self.settings, self.cfg), self.cfg.interval, frozenset(f.name for f in self.firing)
        )


class AlarmWatch:
    """The verification window's view of the alarms: read at most every `interval` seconds, whichever host asks,
    and only while armed; remembers the first alarm seen in ALARM that was not overridden at the start."""

    def __init__(self, read: Callable[[], list[Firing]], interval: float, ignore: frozenset[str] = frozenset()):
        self.read, self.interval, self.ignore = read, interval, ignore
        self.tripped: Firing | None = None
        self._armed = False
        self._next = 0.0
        self._errors = 0
        self._lock = threading.Lock()

    def arm(self) -> None:
        with self._lock:
            self._armed, self._next = True, 0.0

    def disarm(self) -> None:
        with self._lock:
            self._armed = False

    def check(self) -> Firing | None:
        with self._lock:
            if not self._armed or self.tripped is not None:
                return self.tripped if self._armed else None
            if time.monotonic() < self._next:
                return None
            self._next = time.monotonic() + self.interval
            try:
                found = [f for f in self.read() if f.state == "ALARM" and f.name not in self.ignore]
                self._errors = 0
            except AWSError as exc:
                self._errors += 1
                log.warning("verification window: %s (%d in a row)", exc, self._errors)
                if self._errors >= FAIL_AFTER_ERRORS:
                    self.tripped = Firing("(unreadable)", "ERROR", f"the alarms could not be read: {exc}")
                return self.tripped
            if found:
                self.tripped = found[0]
            return self.tripped
