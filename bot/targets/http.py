"""A host's health URL, asked from the bot: one probe, validated. An old version answering is a failure."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
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
