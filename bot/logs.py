"""Logs an operator can use: one JSON object per line (the default for `deploybot serve`; DEPLOYBOT_LOG_FORMAT=text
for people), with the deployment id, environment, stage, host, transition or refusal as fields, every value
passed through the redactor, so a secret in a command's output or a refusal never reaches the log."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime

from bot.redact import redact

FIELDS = (
    "deployment",
    "environment",
    "version",
    "stage",
    "host",
    "transition",
    "state",
    "actor",
    "action",
    "seconds",
    "ok",
    "ref",
)


QUIET_AT_DEBUG = ("botocore", "boto3", "urllib3", "paramiko", "slack_sdk", "slack_bolt")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["error"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup(level: str | None = None) -> None:
    handler = logging.StreamHandler()
    if (os.environ.get("DEPLOYBOT_LOG_FORMAT") or "json") == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level or os.environ.get("LOG_LEVEL", "INFO"), handlers=[handler], force=True)
    for chatty in QUIET_AT_DEBUG:  # their DEBUG lines carry request headers, signed URLs and bodies
        logging.getLogger(chatty).setLevel(max(logging.INFO, logging.getLogger().level))
