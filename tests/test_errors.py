"""An unexpected failure inside a Slack listener (here: a database that lost a table) is answered with a short
message and a reference that the bot's log holds too, never Slack's bare "dispatch_failed"."""

from __future__ import annotations

import logging
import re
import sqlite3

from tests.slack_api import FakeSlack
from tests.slack_client import BotUnderTest


def test_an_unexpected_failure_answers_with_a_reference_found_in_the_log(tmp_path, make_config, hosts, caplog):
    config = make_config(hosts=hosts[:1])
    db = tmp_path / "broken.db"
    with FakeSlack() as fake, BotUnderTest(config, f"sqlite:///{db}", fake) as bot:
        with sqlite3.connect(db) as raw:
            raw.execute("DROP TABLE locks")
        with caplog.at_level(logging.ERROR):
            answer = bot.slack.command("/deploy", "lock prod release freeze", "U0DEV")
        assert answer.status_code == 200, answer.text
        text = answer.json()["text"]
        assert "went wrong" in text and "nothing was started" in text
        ref = re.search(r"ref `(\w+)`", text).group(1)
        assert f"ref {ref}" in caplog.text and "no such table" in caplog.text
