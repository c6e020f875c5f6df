"""Secrets never leave the bot: every excerpt, message and audit detail passes through here."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

_PATTERNS = [
    (re.compile(r"(?i)\b([A-Z0-9_]*(?:PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_KEY|CREDENTIALS?)[A-Z0-9_]*)"
                r"(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|\S+)"), r"\1\2***"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s]+):[^@\s]+@"), r"\1:***@"),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]+|\bxapp-[A-Za-z0-9-]+"), "***"),
    (re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b"), "***"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S), "***"),
]
_DEFAULT_SECRET_ENV = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "AWS_SECRET_ACCESS_KEY",
                       "AWS_SESSION_TOKEN", "DATABASE_URL")


class Redactor:
    """Masks known secret values (from named env vars) and anything shaped like a credential."""

    def __init__(self, secret_env_names: Iterable[str] = ()):
        names = set(_DEFAULT_SECRET_ENV) | set(secret_env_names)
        self._values = sorted({v for n in names if len(v := os.environ.get(n, "")) >= 6}, key=len, reverse=True)

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
