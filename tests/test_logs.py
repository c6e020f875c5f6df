"""The log an operator reads from `deploybot serve`: JSON lines with the deployment's fields, secrets masked,
and no library's DEBUG chatter (botocore logs what it signs, urllib3 the URLs it calls) even at LOG_LEVEL=DEBUG."""

from __future__ import annotations

import json
import logging

import pytest

from bot import logs


@pytest.fixture
def served_logging(monkeypatch):
    monkeypatch.delenv("DEPLOYBOT_LOG_FORMAT", raising=False)
    root = logging.getLogger()
    before = root.handlers[:], root.level, {n: logging.getLogger(n).level for n in logs.QUIET_AT_DEBUG}
    yield
    root.handlers[:], root.level = before[0], before[1]
    for name, level in before[2].items():
        logging.getLogger(name).setLevel(level)


def test_debug_lines_carry_the_fields_and_mask_secrets_but_not_what_libraries_sign(served_logging, capsys):
    logs.setup("DEBUG")
    logging.getLogger("bot.engine.pipeline").debug(
        "stage done with xoxb-1234-5678-secretvalue", extra={"deployment": 7, "stage": "upload", "host": "h1"}
    )
    logging.getLogger("botocore.auth").debug("Signature: AWS4-HMAC-SHA256 Credential=AKIA/20261124")
    logging.getLogger("urllib3.connectionpool").debug("GET /shop.tar.gz?X-Amz-Signature=abc")
    logging.getLogger("botocore.credentials").info("Found credentials in environment variables.")

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(e["logger"], e["level"]) for e in lines] == [
        ("bot.engine.pipeline", "debug"),
        ("botocore.credentials", "info"),
    ]
    ours = lines[0]
    assert (ours["deployment"], ours["stage"], ours["host"]) == (7, "upload", "h1")
    assert "xoxb-1234-5678-secretvalue" not in ours["message"] and ours["message"].startswith("stage done with ")
