"""The Slack Web API in-process, for the console adapter: it answers as Slack would and prints what the bot posts,
edits and opens as plain text, so a terminal user reads the channel. No network, no Slack account.
"""

from __future__ import annotations

import itertools
import threading
from typing import TextIO

from slack_sdk import WebClient
from slack_sdk.web import SlackResponse

from handlers.terminal import lines as text_lines
from handlers.terminal import view_lines


class ConsoleWebClient(WebClient):
    """The Slack Web API, in-process: answers like Slack and prints each message, edit and view."""

    def __init__(self, out: TextIO):
        super().__init__(token="xoxb-console")
        self.out = out
        self._ts = itertools.count(1)
        self._seen: dict[str, list[str]] = {}
        self._print = threading.Lock()
        self.views: list[dict] = []
        self.messages: dict[str, list[str]] = {}
        self.blocks: dict[str, list[dict]] = {}

    def say(self, text: str) -> None:
        with self._print:
            print(text, file=self.out, flush=True)

    def api_call(
        self,
        api_method: str,
        *,
        http_verb: str = "POST",
        files=None,
        data=None,
        params=None,
        json=None,
        headers=None,
        auth=None,
    ) -> SlackResponse:  # noqa: A002 - WebClient's signature
        args = {**(params or {}), **(data or {}), **(json or {})}
        body = self._answer(api_method, args)
        return SlackResponse(
            client=self, http_verb=http_verb, api_url=api_method, req_args={}, data=body, headers={}, status_code=200
        )

    def _answer(self, method: str, a: dict) -> dict:
        if method == "chat.postMessage":
            ts = f"1732270000.{next(self._ts):06d}"
            lines = text_lines(a)
            if a.get("thread_ts"):
                self.say("\n".join(f"      | {line}" for line in lines))
            else:
                self.messages[ts] = self._seen[ts] = lines
                self.blocks[ts] = a.get("blocks") or []
                self.say("\n  deploybot in #deploys:\n" + "\n".join(f"    {line}" for line in lines))
            return {"ok": True, "channel": a.get("channel"), "ts": ts}
        if method == "chat.update":
            ts, lines = a["ts"], text_lines(a)
            before = self._seen.get(ts, [])
            new = [line for line in lines if line not in before]
            self.messages[ts] = self._seen[ts] = lines
            self.blocks[ts] = a.get("blocks") or []
            if new:
                self.say("  (message edited)\n" + "\n".join(f"    {line}" for line in new))
            return {"ok": True, "channel": a.get("channel"), "ts": ts}
        if method == "chat.postEphemeral":
            self.say(f"  (only @{a.get('user')} sees) " + " ".join(text_lines(a)))
            return {"ok": True, "message_ts": "1732270000.000000"}
        if method in ("views.open", "views.publish", "views.update"):
            self.views.append(a.get("view") or {})
            who = f" for @{a['user_id']}" if a.get("user_id") else ""
            lines = view_lines(a.get("view") or {})
            self.say(f"  {lines[0]}{who}\n" + "\n".join(f"    {line}" for line in lines[1:]))
            return {"ok": True, "view": {"id": f"V{next(self._ts)}"}}
        if method == "auth.test":
            return {"ok": True, "user_id": "U0BOT", "bot_id": "B0BOT", "team_id": "T0CONSOLE"}
        if method == "usergroups.users.list":
            return {"ok": True, "users": []}
        return {"ok": True}

    def respond(self, _url: str, payload: dict) -> None:
        """Where the bot's answers through a command's response_url go: printed for the one who typed it."""
        self.say("  (only you see) " + "\n    ".join(text_lines(payload)))
