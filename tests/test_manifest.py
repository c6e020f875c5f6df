"""The Slack app manifests (manifest.yml for HTTP, manifest.socket.yml for Socket Mode) against Slack's rules
and against the code: the commands they register are exactly the ones the Bolt app answers, and the bot scopes
are exactly what the Web API methods the code calls need.

Slack rejects a whole manifest for one bad entry (a reserved command such as `/status`, a name too long), and
only when someone pastes it; these tests say so first. The field limits are the ones Slack's app manifest
reference gives. RESERVED is this project's list of Slack's built-in commands, as complete as we know it: it is
a list kept here, not Slack's word; Slack may reserve more.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
import yaml
from slack_bolt import App
from slack_bolt.request import BoltRequest
from slack_sdk import WebClient
from slack_sdk.web.base_client import BaseClient

from tests.slack_api import FakeSlack
from tests.slack_client import BOT_TOKEN, SIGNING_SECRET, SlackClient, sign

ROOT = Path(__file__).resolve().parents[1]
HTTP, SOCKET = ROOT / "manifest.yml", ROOT / "manifest.socket.yml"
SLACK_PATH = "/slack/events"

# Slack's built-in slash commands (and their aliases) as far as this project knows them. Not Slack's word.
RESERVED = frozenset(
    {
        "/active",
        "/apps",
        "/archive",
        "/away",
        "/call",
        "/clear",
        "/close",
        "/collapse",
        "/dm",
        "/dnd",
        "/expand",
        "/feed",
        "/feedback",
        "/help",
        "/invite",
        "/invite_people",
        "/join",
        "/keys",
        "/kick",
        "/leave",
        "/me",
        "/msg",
        "/mute",
        "/open",
        "/part",
        "/prefs",
        "/remind",
        "/remove",
        "/rename",
        "/search",
        "/shortcuts",
        "/shrug",
        "/star",
        "/status",
        "/topic",
        "/unarchive",
        "/who",
        "/whois",
        "/huddle",
    }
)
# Generic names other apps in a workspace are likely to register too: a clash means a chooser or the wrong app.
GENERIC = frozenset(
    {
        "/lock",
        "/unlock",
        "/history",
        "/log",
        "/logs",
        "/giphy",
        "/poll",
        "/todo",
        "/task",
        "/ticket",
        "/jira",
        "/github",
        "/zoom",
        "/meet",
        "/ping",
    }
)
COMMAND_NAME = re.compile(r"^/[a-z0-9_-]{1,31}$")  # '/', lowercase letters, digits, '-', '_'; at most 32 in all
COLOR = re.compile(r"^#[0-9A-Fa-f]{6}$")

# Web API method -> the bot scopes it needs. A method the code calls that is missing here fails the scope test:
# add it with its scope (from the method's page on api.slack.com), and the scope to both manifests.
SCOPES_OF = {
    "chat.postMessage": {"chat:write"},  # only where the bot is a member: no chat:write.public
    "chat.update": {"chat:write"},
    "chat.postEphemeral": {"chat:write"},
    "chat.delete": {"chat:write"},
    "views.open": set(),
    "views.publish": set(),
    "views.update": set(),
    "views.push": set(),
    "usergroups.users.list": {"usergroups:read"},
    "usergroups.list": {"usergroups:read"},
    "auth.test": set(),
}
# Called by the libraries, not in our code: Bolt's token check at start; Socket Mode's connection, made with the
# app-level token (connections:write, an app-level scope, not a bot scope).
CALLED_BY_LIBRARIES = {"auth.test": set(), "apps.connections.open": set()}
API_METHODS = {n for n in dir(WebClient) if not n.startswith("_") and n not in dir(BaseClient)}
CALL = re.compile(r"\.\s*([A-Za-z_]\w*)\s*\(")
API_CALL = re.compile(r"""api_call\(\s*(?:api_method\s*=\s*)?["']([\w.]+)["']""")


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


MANIFESTS = {"manifest.yml": load(HTTP), "manifest.socket.yml": load(SOCKET)}
each_manifest = pytest.mark.parametrize("name", list(MANIFESTS))


# ---- Slack's rules -----------------------------------------------------------------------------------------
def command_problems(command: object) -> list[str]:
    """Why Slack (or a workspace) would refuse this slash command name; empty when it is fine."""
    if not isinstance(command, str):
        return [f"{command!r} is not a string"]
    problems = []
    if not COMMAND_NAME.match(command):
        problems.append(f"{command!r}: must be '/' then at most 31 of a-z 0-9 - _")
    if command.lower() in RESERVED:
        problems.append(f"{command!r} is a Slack built-in command")
    if command.lower() in GENERIC:
        problems.append(f"{command!r} is generic enough to clash with other apps")
    return problems


def test_the_name_check_catches_reserved_and_malformed_commands():
    assert command_problems("/status") == ["'/status' is a Slack built-in command"]
    for bad in ("/Status", "/remind", "/me", "status", "/deploy now", "/" + "x" * 32, "/dépl", "/", "/lock"):
        assert command_problems(bad), bad
    assert command_problems("/deploy") == [] and command_problems("/rollback") == []
    assert command_problems("/" + "x" * 31) == []  # 32 characters in all


@each_manifest
def test_required_fields_and_slack_limits(name):
    m = MANIFESTS[name]
    info = m["display_information"]
    assert isinstance(info.get("name"), str) and 0 < len(info["name"]) <= 35
    assert isinstance(info.get("description"), str) and 0 < len(info["description"]) <= 140
    assert COLOR.match(info.get("background_color", "")), info.get("background_color")
    bot_user = m["features"]["bot_user"]
    assert isinstance(bot_user.get("display_name"), str) and 0 < len(bot_user["display_name"]) <= 80
    assert m["features"]["app_home"]["home_tab_enabled"] is True
    assert m["oauth_config"]["scopes"]["bot"]


@each_manifest
def test_slash_commands_follow_slack_rules(name):
    commands = MANIFESTS[name]["features"]["slash_commands"]
    names = [c.get("command") for c in commands]
    assert len(names) == len(set(names)), f"duplicate commands: {names}"
    for c in commands:
        assert command_problems(c.get("command")) == []
        assert isinstance(c.get("description"), str) and 0 < len(c["description"]) <= 2000, c
        assert isinstance(c.get("usage_hint"), str) and len(c["usage_hint"]) <= 1000, c
        assert isinstance(c.get("should_escape", False), bool)


@each_manifest
def test_interactivity_and_app_home_event(name):
    settings = MANIFESTS[name]["settings"]
    assert settings["interactivity"]["is_enabled"] is True
    assert "app_home_opened" in settings["event_subscriptions"]["bot_events"]


def _urls(node: object, key: str = "") -> list[tuple[str, object]]:
    if isinstance(node, dict):
        return [u for k, v in node.items() for u in _urls(v, k)]
    if isinstance(node, list):
        return [u for v in node for u in _urls(v, key)]
    return [(key, node)] if key in ("url", "request_url", "message_menu_options_url") else []


def test_http_manifest_sends_everything_to_the_slack_endpoint():
    m = MANIFESTS["manifest.yml"]
    assert m["settings"].get("socket_mode_enabled") is False
    urls = _urls(m)
    assert len(urls) == len(m["features"]["slash_commands"]) + 2  # every command, events, interactivity
    for key, url in urls:
        assert isinstance(url, str) and url.startswith("https://") and url.endswith(SLACK_PATH), (key, url)


def test_socket_manifest_has_socket_mode_and_no_request_urls():
    m = MANIFESTS["manifest.socket.yml"]
    assert m["settings"]["socket_mode_enabled"] is True
    assert _urls(m) == []


def test_both_manifests_describe_the_same_app():
    def without_transport(node: object) -> object:
        if isinstance(node, dict):
            return {
                k: without_transport(v)
                for k, v in node.items()
                if k not in ("url", "request_url", "socket_mode_enabled")
            }
        if isinstance(node, list):
            return [without_transport(v) for v in node]
        return node

    assert without_transport(MANIFESTS["manifest.yml"]) == without_transport(MANIFESTS["manifest.socket.yml"])


# ---- scopes: exactly what the code calls ---------------------------------------------------------------------
def called_methods(sources: dict[str, str]) -> dict[str, set[str]]:
    """Web API methods called in `sources` (file -> text): `client.chat_postMessage(` (any WebClient method) and
    `api_call("chat.postMessage"`; method -> the files calling it."""
    found: dict[str, set[str]] = {}
    for path, text in sources.items():
        names = {n.replace("_", ".") for n in CALL.findall(text) if n in API_METHODS} | set(API_CALL.findall(text))
        for method in names:
            found.setdefault(method, set()).add(path)
    return found


def required_scopes(methods: dict[str, set[str]], has_commands: bool) -> tuple[set[str], dict[str, set[str]]]:
    """The bot scopes those methods need (plus `commands` for slash commands), and the methods with no known
    scope."""
    unknown = {m: files for m, files in methods.items() if m not in SCOPES_OF}
    scopes = {s for m in methods if m in SCOPES_OF for s in SCOPES_OF[m]}
    scopes |= {s for needs in CALLED_BY_LIBRARIES.values() for s in needs}
    return scopes | ({"commands"} if has_commands else set()), unknown


def code_sources() -> dict[str, str]:
    files = [*ROOT.glob("bot/**/*.py"), *ROOT.glob("handlers/**/*.py")]
    return {str(p.relative_to(ROOT)): p.read_text() for p in files if "migrations" not in p.parts}


def test_scope_derivation_flags_a_call_it_cannot_map():
    methods = called_methods(
        {
            "x.py": "self.client.chat_postMessage(channel=c)\nclient.reactions_add(name='x')\n"
            'client.api_call("pins.add", json={})\nbot.groups.groups_of(user)'
        }
    )
    assert set(methods) == {"chat.postMessage", "reactions.add", "pins.add"}
    scopes, unknown = required_scopes(methods, has_commands=False)
    assert scopes == {"chat:write"} and set(unknown) == {"reactions.add", "pins.add"}


@each_manifest
def test_bot_scopes_are_exactly_what_the_code_calls(name):
    methods = called_methods(code_sources())
    assert {
        "chat.postMessage",
        "chat.update",
        "chat.postEphemeral",
        "views.open",
        "views.publish",
        "usergroups.users.list",
    } <= set(methods), methods  # the scan sees the calls we know of
    m = MANIFESTS[name]
    needed, unknown = required_scopes(methods, has_commands=bool(m["features"].get("slash_commands")))
    assert not unknown, f"Web API methods with no scope in SCOPES_OF (add them, and their scope): {unknown}"
    declared = m["oauth_config"]["scopes"]["bot"]
    assert len(declared) == len(set(declared))
    assert set(declared) == needed, f"declared {sorted(declared)}, the code needs {sorted(needed)}"


def test_without_chat_write_public_the_usage_says_to_invite_the_bot():
    from handlers.parsing import HELP

    for m in MANIFESTS.values():
        assert "chat:write.public" not in m["oauth_config"]["scopes"]["bot"]
    assert "invite @deploybot" in HELP.lower()


# ---- the commands Slack sends are the commands the Bolt app answers ---------------------------------------------
DEPLOY_YML = """
app: {name: shop, artifact: "/nonexistent/shop-{version}.tar.gz"}
environments:
  prod:
    hosts: [{host: local, name: web1}]
    path: "/nonexistent/{name}/app"
    restart: "true"
    health: {url: "http://127.0.0.1:9/health"}
"""


@pytest.fixture(scope="module")
def bolt(tmp_path_factory):
    """The real Bolt app from bot.app.build (dummy token, a local fake Slack Web API), and what it registered."""
    from bot.app import build
    from bot.config import load_config
    from bot.service import DeployService
    from bot.store import Store

    tmp = tmp_path_factory.mktemp("manifest")
    (tmp / "deploy.yml").write_text(DEPLOY_YML)
    registered: dict[str, list] = {"command": [], "event": [], "action": [], "view": []}

    def spy(kind: str):
        original = getattr(App, kind)

        def recording(self, constraint, *args, **kwargs):
            registered[kind].append(constraint)
            return original(self, constraint, *args, **kwargs)

        return recording

    service = DeployService(load_config(tmp / "deploy.yml"), Store(f"sqlite:///{tmp / 'd.db'}"))
    with FakeSlack() as fake, pytest.MonkeyPatch.context() as mp:
        for kind in registered:
            mp.setattr(App, kind, spy(kind))
        runtime = build(service, token=BOT_TOKEN, signing_secret=SIGNING_SECRET, base_url=fake.api_url)
        mp.undo()
        try:
            yield runtime.app, registered, fake
        finally:
            runtime.close()
            service.pool.close()
            service.store.close()


def dispatch(app: App, command: str, text: str) -> tuple[int, dict | str]:
    """A slash command as Slack sends it over HTTP (form-encoded, signed with the signing secret)."""
    body = urlencode(
        SlackClient("http://unused", SIGNING_SECRET, "http://127.0.0.1:9/response").command_fields(
            command, text, "U0DEV"
        )
    )
    ts = str(int(time.time()))
    response = app.dispatch(
        BoltRequest(
            body=body,
            headers={
                "content-type": ["application/x-www-form-urlencoded"],
                "x-slack-request-timestamp": [ts],
                "x-slack-signature": [sign(SIGNING_SECRET, ts, body)],
            },
        )
    )
    try:
        return response.status, json.loads(response.body) if response.body else ""
    except ValueError:
        return response.status, response.body


@each_manifest
def test_every_manifest_command_has_a_listener_and_every_listener_a_command(bolt, name):
    app, registered, _ = bolt
    listed = [c["command"] for c in MANIFESTS[name]["features"]["slash_commands"]]
    assert all(isinstance(c, str) for c in registered["command"]), registered["command"]  # no catch-all pattern
    assert sorted(registered["command"]) == sorted(listed)
    for command in listed:  # and Bolt really answers each one: a missing listener is a 404
        status, answer = dispatch(app, command, "help")
        assert status == 200 and answer["text"].startswith("Usage: `" + command), (command, status, answer)


def test_a_command_without_a_listener_is_unhandled(bolt):
    app, _, _ = bolt
    for old in ("/status", "/history", "/lock", "/unlock"):
        assert dispatch(app, old, "prod")[0] == 404, old


@each_manifest
def test_every_manifest_event_has_a_listener(bolt, name):
    _, registered, _ = bolt
    assert sorted(registered["event"]) == sorted(MANIFESTS[name]["settings"]["event_subscriptions"]["bot_events"])
    assert registered["action"] and registered["view"]  # buttons and modals: interactivity is needed


def test_each_subcommand_in_the_usage_hint_is_answered_and_listed_by_help(bolt):
    app, _, _ = bolt
    hint = next(
        c["usage_hint"] for c in MANIFESTS["manifest.yml"]["features"]["slash_commands"] if c["command"] == "/deploy"
    )
    subcommands = [alt.split()[0] for alt in hint.split("|") if re.match(r"^[a-z]+$", alt.split()[0])]
    status, answer = dispatch(app, "/deploy", "help")
    listed = re.findall(r"^`/deploy ([a-z]+)", answer["text"], re.M)  # one line each, first word the subcommand
    assert status == 200 and sorted(listed) == sorted(subcommands) and len(subcommands) >= 5, (hint, answer)
    for sub in subcommands:
        if sub != "help":
            status, answer = dispatch(app, "/deploy", f"{sub} help")
            assert status == 200 and answer["text"].startswith(f"Usage: `/deploy {sub}"), (sub, answer)


def test_an_environment_named_like_a_subcommand_is_deployable_with_double_dash(bolt):
    app, _, _ = bolt
    status, answer = dispatch(app, "/deploy", "-- status v1.0.0")
    assert status == 200 and "unknown environment 'status'" in answer["text"]  # a deploy request, refused
    status, answer = dispatch(app, "/deploy", "status v1.0.0")  # without it, the first word is the subcommand
    assert status == 200 and "unknown environment 'v1.0.0'" in answer["text"], answer
