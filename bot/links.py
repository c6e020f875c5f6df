"""Signed links to a deployment's log page: `/deployments/<id>?exp=<unix>&sig=<hex>`.

The signature is HMAC-SHA256 over "<id>:<exp>" with a server secret, so a link opens one deployment until it
expires and can be neither forged nor moved to another deployment or a later expiry. Nothing else is needed to
read the page: whoever holds the link can read it (it is posted where the deployment's message is).

    DEPLOYBOT_LINK_SECRET  the secret (any string; replicas share it). Unset: a random one per process, and every
                           link handed out dies when the process restarts.
    DEPLOYBOT_LINK_TTL     how long a link lives: seconds, or 30m / 12h / 7d (default 7d)
    DEPLOYBOT_PUBLIC_URL   where people reach the bot (https://deploybot.example.com); unset: no link is shown
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

log = logging.getLogger(__name__)
DEFAULT_TTL = 7 * 24 * 3600
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DIGITS = re.compile(r"[0-9]{1,12}")
_HEX = re.compile(r"[0-9a-f]{64}")
SKEW = 60  # seconds a link may claim beyond now + ttl (clocks of replicas differ a little)


def parse_ttl(text: str) -> int:
    """'3600', '90m', '12h', '7d' -> seconds; ValueError on anything else or on zero."""
    m = re.fullmatch(r"\s*([0-9]+)\s*([smhd]?)\s*", text or "")
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f"DEPLOYBOT_LINK_TTL must be a positive number of seconds or like 30m, 12h, 7d, not {text!r}")
    return int(m.group(1)) * _UNITS[m.group(2)]


@dataclass
class LinkSigner:
    secret: bytes = field(repr=False)
    ttl: int = DEFAULT_TTL
    base_url: str | None = None  # None: links are checked but never handed out
    ephemeral: bool = False  # the secret was made up at start: links die with this process

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LinkSigner:
        env = os.environ if environ is None else environ
        secret = env.get("DEPLOYBOT_LINK_SECRET", "")
        ttl = parse_ttl(env["DEPLOYBOT_LINK_TTL"]) if env.get("DEPLOYBOT_LINK_TTL") else DEFAULT_TTL
        base = (env.get("DEPLOYBOT_PUBLIC_URL") or "").strip().rstrip("/") or None
        if base and not re.match(r"https?://[^\s/]+", base):
            raise ValueError(f"DEPLOYBOT_PUBLIC_URL must be an http(s) URL, not {base!r}")
        signer = cls(secret.encode() if secret else secrets.token_bytes(32), ttl, base, ephemeral=not secret)
        if base and not secret:
            log.warning(
                "DEPLOYBOT_LINK_SECRET is not set: log links are signed with a random secret and stop "
                "working when this process restarts"
            )
        return signer

    def signature(self, deployment_id: int, exp: int) -> str:
        return hmac.new(self.secret, f"{deployment_id}:{exp}".encode(), hashlib.sha256).hexdigest()

    def path(self, deployment_id: int, now: float | None = None) -> str:
        """/deployments/<id>?exp=..&sig=.. valid for `ttl` seconds from now."""
        exp = int(time.time() if now is None else now) + self.ttl
        return f"/deployments/{deployment_id}?exp={exp}&sig={self.signature(deployment_id, exp)}"

    def url(self, deployment_id: int, now: float | None = None) -> str | None:
        """The full link, or None when DEPLOYBOT_PUBLIC_URL is not set (then nothing shows a link)."""
        return self.base_url + self.path(deployment_id, now) if self.base_url else None

    def check(self, deployment_id: int, exp: str, sig: str, now: float | None = None) -> bool:
        """True iff `sig` signs this id and `exp`, and `exp` has not passed (nor lies beyond now + ttl)."""
        if not (isinstance(exp, str) and isinstance(sig, str) and _DIGITS.fullmatch(exp) and _HEX.fullmatch(sig)):
            return False
        good = hmac.compare_digest(self.signature(deployment_id, int(exp)), sig)
        moment = time.time() if now is None else now
        return good and moment <= int(exp) <= moment + self.ttl + SKEW
