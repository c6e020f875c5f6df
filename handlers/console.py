"""The console adapter (like Hubot's shell adapter): the same Bolt app and handlers, driven from a terminal.

Slack-shaped payloads (slash commands, button clicks, modal submissions) are dispatched in-process into a
Bolt app that the composition root built (signature checks off for this in-process path only) around a
ConsoleWebClient (handlers/console_client.py), an in-process stand-in for the Slack Web API that prints what the
bot posts, edits and opens as plain text. No Slack account.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Protocol
from urllib.parse import urlencode

from slack_bolt import App
from slack_bolt.request import BoltRequest

from handlers.console_client import ConsoleWebClient
from handlers.terminal import plain

CHANNEL = "C0DEPLOYS"


class Running(Protocol):
    """What the console needs of the running bot (bot.app.Runtime)."""

    app: App

    def settle(self, timeout: float = 60) -> bool: ...

    def close(self) -> None: ...


class Console:
    """A terminal user's Slack: type commands, click buttons, fill modals; see what the bot answers."""

    def __init__(self, runtime: Running, client: ConsoleWebClient):
        self.runtime = runtime
        self.client = client
        self._n = itertools.count(1)

    def close(self) -> None:
        self.runtime.close()

    def _dispatch(self, body: str, content_type: str = "application/x-www-form-urlencoded") -> dict | str:
        res = self.runtime.app.dispatch(BoltRequest(body=body, headers={"content-type": [content_type]}))
        try:
            return json.loads(res.body) if res.body else ""
        except ValueError:
            return res.body

    def settle(self, timeout: float = 120) -> None:
        self.runtime.settle(timeout)

    # ---- what a user does ------------------------------------------------------------------------------
    def command(self, user: str, line: str) -> None:
        self.client.say(f"\n@{user}> {line}")
        name, _, text = line.partition(" ")
        n = next(self._n)
        answer = self._dispatch(
            urlencode(
                {
                    "team_id": "T0CONSOLE",
                    "channel_id": CHANNEL,
                    "channel_name": "deploys",
                    "user_id": user,
                    "user_name": user,
                    "command": name,
                    "text": text,
                    "response_url": f"console://response/{n}",
                    "trigger_id": f"console.{n}",
                    "api_app_id": "A0CONSOLE",
                }
            )
        )
        if isinstance(answer, dict) and answer.get("text"):
            self.client.say("  (only you see) " + plain(answer["text"]))

    def click(self, user: str, action_id: str, ts: str) -> None:
        """Click the button `action_id` on message `ts` as `user` (a confirm dialog is confirmed)."""
        button = self.button(ts, action_id)
        self.client.say(f"\n@{user} clicks [ {button['text']['text']} ]")
        if button.get("confirm"):
            self.client.say(
                f"  [{plain(button['confirm']['title']['text'])}] "
                f"{plain(button['confirm']['text']['text'])} -> {button['confirm']['confirm']['text']}"
            )
        n = next(self._n)
        self._dispatch(
            urlencode(
                {
                    "payload": json.dumps(
                        {
                            "type": "block_actions",
                            "user": {"id": user, "name": user, "team_id": "T0CONSOLE"},
                            "team": {"id": "T0CONSOLE"},
                            "channel": {"id": CHANNEL},
                            "trigger_id": f"console.{n}",
                            "container": {"type": "message", "message_ts": ts, "channel_id": CHANNEL},
                            "actions": [
                                {
                                    "action_id": action_id,
                                    "value": button["value"],
                                    "type": "button",
                                    "block_id": "b",
                                    "action_ts": str(time.time()),
                                }
                            ],
                        }
                    )
                }
            )
        )

    def submit(self, user: str, values: dict[str, dict]) -> dict | str:
        """Submit the last modal the bot opened."""
        view = self.client.views[-1]
        self.client.say(f"\n@{user} submits: " + ", ".join(f"{k}={_shown(v)}" for k, v in values.items()))
        return self._dispatch(
            urlencode(
                {
                    "payload": json.dumps(
                        {
                            "type": "view_submission",
                            "user": {"id": user, "name": user, "team_id": "T0CONSOLE"},
                            "team": {"id": "T0CONSOLE"},
                            "view": {**view, "id": "V0", "state": {"values": {b: {b: v} for b, v in values.items()}}},
                        }
                    )
                }
            )
        )

    def rollback(self, user: str, line: str, reason: str) -> None:
        """`/rollback ...` typed, then its form submitted as it opened (the version it offers) with `reason`."""
        self.command(user, line)
        self.settle()
        version = next(b for b in self.client.views[-1]["blocks"] if b.get("block_id") == "version")["element"]
        self.submit(
            user,
            {
                "version": {"type": "static_select", "selected_option": version["initial_option"]},
                "reason": {"type": "plain_text_input", "value": reason},
            },
        )
        self.settle()

    def open_home(self, user: str) -> None:
        """Open deploybot's App Home tab as `user` (an app_home_opened event)."""
        self.client.say(f"\n@{user} opens deploybot's Home tab")
        self._dispatch(
            json.dumps(
                {
                    "type": "event_callback",
                    "team_id": "T0CONSOLE",
                    "api_app_id": "A0CONSOLE",
                    "event": {
                        "type": "app_home_opened",
                        "user": user,
                        "channel": "D0HOME",
                        "tab": "home",
                        "event_ts": str(time.time()),
                    },
                    "event_id": f"Ev{next(self._n)}",
                    "event_time": int(time.time()),
                }
            ),
            "application/json",
        )

    def last_message(self) -> str:
        return list(self.client.messages)[-1]

    def button(self, ts: str, action_id: str) -> dict:
        for block in self.client.blocks.get(ts, []):
            for el in block.get("elements", []) if block.get("type") == "actions" else []:
                if el.get("action_id") == action_id:
                    return el
        raise LookupError(f"no [{action_id}] button on message {ts}")

    def text(self, ts: str) -> str:
        return "\n".join(self.client.messages.get(ts, []))


def _shown(v: dict) -> str:
    return str(
        v.get("value")
        or (v.get("selected_option") or {}).get("value")
        or [o["value"] for o in v.get("selected_options", [])]
    )


def run_story(
    console: Console,
    developer: str = "U0DEV",
    pm: str = "U0PM",
    good: list[str] | None = None,
    bad: str = "v1.2.0",
    env: str = "prod",
) -> bool:
    """The demo script: request, approve, watch progress, /deploy status, a bad version auto-rolls back, /rollback.
    Returns True when every step ended as expected."""
    good = good or ["v1.0.0", "v1.1.0"]
    results: list[bool] = []
    say = console.client.say
    say(
        f"This terminal plays the Slack channel #deploys: @{developer} is a developer, @{pm} approves deploys to "
        f"{env}. Lines starting with | are replies in the thread of the message above them."
    )
    try:
        for version, expect in [(v, "Succeeded") for v in good] + [(bad, "Failed and rolled back")]:
            say(
                f"\n== @{developer} asks for {version}; @{pm} approves it"
                if version != bad
                else f"\n== {version} is broken: its health check fails, and deploybot rolls it back on its own"
            )
            console.command(developer, f"/deploy {env} {version}")
            console.settle()
            ts = console.last_message()
            console.click(pm, "approve", ts)
            console.settle()
            results.append(expect in console.text(ts))
            if version == good[-1]:
                say("\n== what each host runs now, read live from the hosts")
                console.command(developer, f"/deploy status {env}")
                console.settle()
        say(f"\n== @{developer} rolls {env} back to the previous good release with /rollback (a form opens)")
        console.rollback(developer, f"/rollback {env}", "demo: back to the previous release")
        results.append("Succeeded" in console.text(console.last_message()))
        say("\n== the Home tab: every environment at a glance, with buttons for what the commands do")
        console.open_home(pm)
        console.settle()
        results.append(bool(console.client.views) and console.client.views[-1].get("type") == "home")
    finally:
        console.close()
    return all(results)
