"""Health: poll until the requested version answers (the health stage); the windows after it are gates.py's."""

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
