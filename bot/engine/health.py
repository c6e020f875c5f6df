"""Health gate: poll until the requested version answers, or watch it for the verification window."""

from __future__ import annotations

import time
from collections.abc import Callable

from bot.config import HealthCheck
from bot.targets.http import Probe, probe

Prober = Callable[..., Probe]  # probe()'s signature; the in-memory fleet of the unit tests brings its own


def wait_healthy(url: str, cfg: HealthCheck, expected: str | None, probe: Prober = probe) -> Probe:
    """Poll until the expected version answers or the timeout passes; report the last thing seen."""
    deadline = time.monotonic() + cfg.timeout
    while True:
        remaining = deadline - time.monotonic()
        result = probe(url, cfg, expected, timeout=max(0.2, min(2.0, remaining)))
        if result.ok or remaining <= 0:
            if not result.ok:
                return Probe(False, f"not healthy after {cfg.timeout:g}s: {result.detail}", result.version)
            return result
        time.sleep(min(cfg.interval, max(0.0, deadline - time.monotonic())))


def watch(
    url: str,
    cfg: HealthCheck,
    expected: str | None,
    seconds: float,
    stop: Callable[[], bool] = lambda: False,
    probe: Prober = probe,
) -> Probe:
    """Verification window: keep polling; the first bad answer fails the window."""
    end = time.monotonic() + seconds
    checks = 0
    while time.monotonic() < end and not stop():
        result = probe(url, cfg, expected)
        checks += 1
        if not result.ok:
            return Probe(False, f"failed during the verification window: {result.detail}", result.version)
        time.sleep(min(cfg.interval, max(0.0, end - time.monotonic())))
    return Probe(True, f"healthy for {seconds:g}s ({checks} checks)", expected)
