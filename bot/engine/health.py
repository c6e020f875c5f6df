"""Health gate: the running version must be the requested one. An old version answering is a failure."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, ValidationError

from bot.config import HealthCheck


class HealthAnswer(BaseModel):
    """What we accept from the app: JSON with a version string; anything else is a bad answer."""

    model_config = ConfigDict(extra="allow")
    version: str | None = None


@dataclass(frozen=True)
class Probe:
    ok: bool
    detail: str
    version: str | None = None


def probe(url: str, cfg: HealthCheck, expected: str | None, timeout: float = 2.0) -> Probe:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - http(s) checked in config
            body = resp.read(65536)
    except urllib.error.HTTPError as exc:
        return Probe(False, f"HTTP {exc.code} from {url}")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return Probe(False, f"no answer from {url}: {reason}")
    try:
        data = json.loads(body)
        version = HealthAnswer.model_validate({"version": data.get(cfg.version_field)}).version
    except (ValueError, AttributeError, ValidationError):
        return Probe(False, f"{url} did not answer JSON with a `{cfg.version_field}` field")
    if cfg.expect_version and expected and version != expected:
        return Probe(False, f"{url} answers version {version!r}, expected {expected!r}", version)
    return Probe(True, f"{url} answers {version}", version)


def wait_healthy(url: str, cfg: HealthCheck, expected: str | None,
                 sleep: Callable[[float], None] = time.sleep) -> Probe:
    """Poll until the expected version answers or the timeout passes; report the last thing seen."""
    deadline = time.monotonic() + cfg.timeout
    while True:
        remaining = deadline - time.monotonic()
        result = probe(url, cfg, expected, timeout=max(0.2, min(2.0, remaining)))
        if result.ok or remaining <= 0:
            if not result.ok:
                return Probe(False, f"not healthy after {cfg.timeout:g}s: {result.detail}", result.version)
            return result
        sleep(min(cfg.interval, max(0.0, deadline - time.monotonic())))


def watch(url: str, cfg: HealthCheck, expected: str | None, seconds: float,
          stop: Callable[[], bool] = lambda: False) -> Probe:
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
