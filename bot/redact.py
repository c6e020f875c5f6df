"""Secrets never leave the bot: every excerpt, message and audit detail passes through here."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable

_PATTERNS = [
    # a presigned URL's signature and credential scope (S3 SigV4, and SigV2's Signature / AWSAccessKeyId)
    (
        re.compile(r"(?i)([?&](?:X-Amz-(?:Signature|Credential|Security-Token)|Signature|AWSAccessKeyId)=)[^&\s'\"]+"),
        r"\1***",
    ),
    (
        re.compile(
            r"(?i)\b([A-Z0-9_]*(?:PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_KEY|CREDENTIALS?)[A-Z0-9_]*)"
            r"(\s*[=:]\s*)(?!\*\*\*(?:&|\s|$))(\"[^\"]*\"|'[^']*'|\S+)"
        ),
        r"\1\2***",
    ),  # not one masked already
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s]+):[^@\s]+@"), r"\1:***@"),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]+|\bxapp-[A-Za-z0-9-]+"), "***"),
    (re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b"), "***"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S), "***"),
]
MIN_LENGTH = 6
_DEFAULT_SECRET_ENV = (
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "DATABASE_URL",
)


class Redactor:
    """Masks known secret values (from named env vars) and anything shaped like a credential."""

    def __init__(self, secret_env_names: Iterable[str] = ()):
        names = set(_DEFAULT_SECRET_ENV) | set(secret_env_names)
        self._values = sorted(
            {v for n in names if len(v := os.environ.get(n, "")) >= MIN_LENGTH}, key=len, reverse=True
        )
        self._lock = threading.Lock()

    def remember(self, values: Iterable[str]) -> None:
        """Mask these values too from now on (e.g. a secret just read for a deployment); shorter ones than
        MIN_LENGTH characters are left, as they would mask ordinary words and numbers."""
        new = {v for v in values if len(v) >= MIN_LENGTH}
        with self._lock:
            if not new <= set(self._values):
                self._values = sorted(set(self._values) | new, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        if not text:
            return text
        for value in self._values:
            text = text.replace(value, "***")
        for pattern, repl in _PATTERNS:
            text = pattern.sub(repl, text)
        return text

    def excerpt(self, text: str, lines: int = 20, chars: int = 2000) -> str:
        tail = "\n".join(text.strip().splitlines()[-lines:])
        return self(tail[-chars:])


redact = Redactor()
