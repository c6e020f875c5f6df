"""`deploybot serve` in Socket Mode (SLACK_APP_TOKEN set): the real serve process, a WebSocket endpoint speaking
Slack's envelope protocol, the fake Web API, and a deploy over SSH to the namespace hosts."""

from __future__ import annotations

import pytest
import requests

from tests.serving import deploybot_serve, free_port
from tests.slack_api import FakeSlack
from tests.slack_client import SlackClient
from tests.slack_socket import FakeSocketMode

DEV = "U0DEV"


class SocketModeSlack(FakeSlack):
    """The fake Web API, also handing out the Socket Mode URL as apps.connections.open does."""

    def __init__(self, socket_url: str):
        super().__init__()
        self.socket_url = socket_url

    def _answer(self, method: str, params: dict) -> dict:
        if method == "apps.connections.open":
            return {"ok": True, "url": self.socket_url}
        return super()._answer(method, params)


@pytest.fixture
def socket_bot(tmp_path, make_config, cli_env, hosts):
    config = make_config(hosts=hosts[:2])
    with FakeSocketMode() as ws, SocketModeSlack(ws.url) as fake:
        env = {
            **cli_env(config),
            "SLACK_BOT_TOKEN": "xoxb-test-token",
            "SLACK_APP_TOKEN": "xapp-test-token",
            "SLACK_API_URL": fake.api_url,
            "LOG_LEVEL": "WARNING",
        }
        env.pop("SLACK_SIGNING_SECRET", None)
        port = free_port()
        with deploybot_serve(env, tmp_path, port, capture=True) as proc:
            ws.wait_connected()
            yield ws, fake, f"http://127.0.0.1:{port}", SlackClient("http://unused", "unused", fake.url + "/response")
        assert "xoxb-test-token" not in proc.output and "xapp-test-token" not in proc.output


def test_socket_mode_serves_commands_and_deploys(socket_bot, hosts):
    ws, fake, http, slack = socket_bot
    assert fake.of("apps.connections.open")  # the bot asked Slack for its WebSocket URL

    ack = ws.send("slash_commands", slack.command_fields("/deploy", "prod v1.0.0", DEV))
    assert ack["response_type"] == "ephemeral" and "Checking" in ack["text"]
    posted = fake.wait_for(lambda: [c for c in fake.of("chat.postMessage") if not c.params.get("thread_ts")])[0]
    ts = posted.params["_ts"]
    final = fake.wait_for(lambda: "Succeeded* in" in fake.message(ts).text and fake.message(ts), 90)
    assert "prod" in final.text
    assert [h.answering() for h in hosts[:2]] == ["v1.0.0"] * 2

    mark = fake.mark()
    ack = ws.send("slash_commands", slack.command_fields("/deploy", "status prod", DEV))
    assert "Reading the hosts" in ack["text"]
    answer = fake.wait_for(lambda: fake.of("response_url", since=mark))[0]
    assert f"`{hosts[0].name}` current v1.0.0, answers v1.0.0" in answer.text

    assert requests.get(http + "/healthz", timeout=5).json()["ok"] is True
    # Socket Mode has no signing secret, so the HTTP Slack endpoint is not served at all: no request over HTTP,
    # whatever it is signed with, reaches the handlers
    mark = fake.mark()
    for secret in ("", "a-guessed-secret"):
        r = SlackClient(http, secret, fake.url + "/response").command("/deploy", "lock prod sneaky", DEV)
        assert r.status_code == 404
    assert fake.of("response_url", "chat.postMessage", since=mark) == []
