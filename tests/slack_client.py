"""Plays Slack's side of the wire: signs requests exactly as Slack does (v0 HMAC-SHA256 over
`v0:{timestamp}:{body}`, X-Slack-Request-Timestamp / X-Slack-Signature), sends slash commands form-encoded
and interactive payloads as `payload=<json>`, shaped like Slack's real block_actions, view_submission and
event_callback payloads.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from urllib.parse import urlencode

import requests

TEAM = {"id": "T0TEAM", "domain": "example"}
_ids = itertools.count(1)


def sign(secret: str, timestamp: str, body: str) -> str:
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


class SlackClient:
    def __init__(self, bot_url: str, signing_secret: str, response_base: str):
        self.url = bot_url.rstrip("/") + "/slack/events"
        self.secret = signing_secret
        self.response_base = response_base.rstrip("/")
        self.session = requests.Session()

    # ---- the wire ----------------------------------------------------------------------------------
    def post(
        self,
        body: str,
        content_type: str,
        *,
        timestamp: int | None = None,
        signature: str | None = None,
        signed: bool = True,
    ) -> requests.Response:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        headers = {"Content-Type": content_type, "X-Slack-Request-Timestamp": ts}
        if signed:
            headers["X-Slack-Signature"] = signature or sign(self.secret, ts, body)
        else:
            headers.pop("X-Slack-Request-Timestamp")
        return self.session.post(self.url, data=body.encode(), headers=headers, timeout=10)

    def form(self, fields: dict, **kw) -> requests.Response:
        return self.post(urlencode(fields), "application/x-www-form-urlencoded", **kw)

    def payload(self, payload: dict, **kw) -> requests.Response:
        return self.form({"payload": json.dumps(payload)}, **kw)

    # ---- what users do -----------------------------------------------------------------------------
    def command_fields(self, command: str, text: str, user: str, channel: str = "C0DEPLOY") -> dict:
        n = next(_ids)
        return {
            "token": "legacy-verification-token",
            "team_id": TEAM["id"],
            "team_domain": TEAM["domain"],
            "channel_id": channel,
            "channel_name": "deploys",
            "user_id": user,
            "user_name": user.lower(),
            "command": command,
            "text": text,
            "api_app_id": "A0DEPLOYBOT",
            "is_enterprise_install": "false",
            "response_url": f"{self.response_base}/cmd-{n}",
            "trigger_id": f"{n}.1732270000.{'a' * 32}",
        }

    def command(self, command: str, text: str, user: str, channel: str = "C0DEPLOY", **kw) -> requests.Response:
        return self.form(self.command_fields(command, text, user, channel), **kw)

    def click(
        self, action_id: str, value: str, user: str, message_ts: str, channel: str = "C0DEPLOY", **kw
    ) -> requests.Response:
        n = next(_ids)
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": TEAM["id"]},
            "api_app_id": "A0DEPLOYBOT",
            "token": "legacy-verification-token",
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False},
            "trigger_id": f"{n}.1732270000.{'b' * 32}",
            "team": TEAM,
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel, "name": "deploys"},
            "message": {"type": "message", "ts": message_ts, "bot_id": "B0BOT", "text": "", "blocks": []},
            "state": {"values": {}},
            "response_url": f"{self.response_base}/action-{n}",
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": f"blk{n}",
                    "value": value,
                    "type": "button",
                    "text": {"type": "plain_text", "text": action_id, "emoji": True},
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        return self.payload(payload, **kw)

    def submit(self, view: dict, values: dict, user: str, **kw) -> requests.Response:
        """Submit a modal the bot opened: `values` maps block_id to the submitted element state."""
        n = next(_ids)
        payload = {
            "type": "view_submission",
            "team": TEAM,
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": TEAM["id"]},
            "api_app_id": "A0DEPLOYBOT",
            "token": "legacy-verification-token",
            "trigger_id": f"{n}.1732270000.{'c' * 32}",
            "is_enterprise_install": False,
            "enterprise": None,
            "view": {
                "id": f"V0{n}",
                "team_id": TEAM["id"],
                "type": "modal",
                "blocks": view.get("blocks", []),
                "private_metadata": view.get("private_metadata", ""),
                "callback_id": view["callback_id"],
                "state": {"values": {block: {block: value} for block, value in values.items()}},
                "hash": f"{n}.abc",
                "title": view.get("title"),
                "close": view.get("close"),
                "submit": view.get("submit"),
                "previous_view_id": None,
                "root_view_id": f"V0{n}",
                "app_id": "A0DEPLOYBOT",
                "external_id": "",
                "app_installed_team_id": TEAM["id"],
                "bot_id": "B0BOT",
            },
            "response_urls": [],
        }
        return self.payload(payload, **kw)

    def event(self, event: dict, **kw) -> requests.Response:
        body = {
            "token": "legacy-verification-token",
            "team_id": TEAM["id"],
            "api_app_id": "A0DEPLOYBOT",
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev0{next(_ids)}",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM["id"], "user_id": "U0BOT", "is_bot": True}],
        }
        return self.post(json.dumps(body), "application/json", **kw)

    def home_opened(self, user: str) -> requests.Response:
        return self.event(
            {
                "type": "app_home_opened",
                "user": user,
                "channel": "D0HOME",
                "tab": "home",
                "event_ts": f"{time.time():.6f}",
            }
        )


def text_input(value: str) -> dict:
    return {"type": "plain_text_input", "value": value}


def selected(value: str) -> dict:
    return {"type": "static_select", "selected_option": {"text": {"type": "plain_text", "text": value}, "value": value}}


def checked(*values: str) -> dict:
    return {
        "type": "checkboxes",
        "selected_options": [{"text": {"type": "plain_text", "text": v}, "value": v} for v in values],
    }


# ---- the bot under test: the production WSGI app under waitress, talking to a FakeSlack ---------------
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-0000000000-1111111111-testtoken000000000000"


class BotUnderTest:
    """bot.app.build + bot.web under waitress on 127.0.0.1:<free port>, Slack Web API = `fake`."""

    def __init__(self, config_path, db_url: str, fake, interval: float = 0.2, **build_options):
        from bot.app import build
        from bot.config import load_config
        from bot.service import DeployService
        from bot.store import Store

        self.fake = fake
        self.service = DeployService(load_config(config_path), Store(db_url))
        self.runtime = build(
            self.service,
            token=BOT_TOKEN,
            signing_secret=SIGNING_SECRET,
            base_url=fake.api_url,
            interval=interval,
            **build_options,
        )
        self.server = None
        self.thread = None

    def __enter__(self) -> BotUnderTest:
        import threading

        import waitress

        from bot.app import serve_metrics
        from tests.serving import free_port

        self.metrics_url = f"http://{serve_metrics(self.runtime.metrics, f'127.0.0.1:{free_port()}')}/"
        self.server = waitress.create_server(self.runtime.wsgi(), host="127.0.0.1", port=0, threads=16)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        self.slack = SlackClient(self.url, SIGNING_SECRET, self.fake.url + "/response")
        return self

    def __exit__(self, *exc) -> None:
        self.runtime.close()
        self.server.close()
        self.service.pool.close()
        self.service.store.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.effective_port}"

    def settle(self, timeout: float = 60) -> None:
        assert self.runtime.settle(timeout), "bot did not settle"
