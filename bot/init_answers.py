"""The answers to `deploybot init` (flags, or prompts in a terminal) and their validation.

The answers become the same mapping any deploy.yml is read into and are validated by the same models
(bot.config.parse_config), plus a few checks that only make sense for answers typed on a command line; every
problem names its flag and its place in the file.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.config import ConfigError, parse_config
from bot.host import NAME

SLACK_ID = re.compile(r"^[UWS][A-Z0-9]{2,20}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


class InitError(ValueError):
    """Every problem with the answers, each as `--flag: location in deploy.yml: what is wrong`."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass
class Answers:
    app: str | None = None
    artifact: str | None = None
    hosts: list[str] = field(default_factory=list)
    path: str | None = None
    restart: str | None = None
    health_url: str | None = None
    env: str = "prod"
    approvers: list[str] = field(default_factory=list)

    @property
    def all_local(self) -> bool:
        return bool(self.hosts) and all(h == "local" for h in self.hosts)


@dataclass(frozen=True)
class Question:
    name: str  # the attribute of Answers
    flag: str
    text: str  # the prompt, and what the flag is for
    default: Callable[[Answers], str | None] = lambda _: None

    def set(self, answers: Answers, value: str) -> None:
        setattr(
            answers, self.name, [h for h in re.split(r"[,\s]+", value) if h] if self.name == "hosts" else value.strip()
        )


QUESTIONS = [
    Question("app", "--app", "App name (letters, digits, `_.-`)"),
    Question(
        "artifact",
        "--artifact",
        "Artifact of each version, a path on this machine or an http(s) URL, with {version} in it",
    ),
    Question("hosts", "--host", "Hosts (user@host[:port], or local for this machine; several: comma-separated)"),
    Question(
        "path",
        "--path",
        "Base path on each host (releases/, current, shared/ go there)",
        lambda a: f"/srv/{a.app}" if a.app else None,
    ),
    Question("restart", "--restart", "Restart command (run inside the new release, with shared/.env exported)"),
    Question(
        "health_url",
        "--health-url",
        "Health URL (answers JSON that includes the version; {host}: the host)",
        lambda a: "http://127.0.0.1:8000/health" if a.all_local else "http://{host}:8000/health",
    ),
]


def fill(answers: Answers, ask: Callable[[str, str | None], str] | None) -> list[str]:
    """Complete the answers: `ask(question, default)` for each one missing, or without `ask` its default.
    Returns what is still missing, one line per flag, naming it."""
    lacking = []
    for q in QUESTIONS:
        if not getattr(answers, q.name):
            default = q.default(answers)
            if ask is not None:
                q.set(answers, ask(q.text, default))
            elif default is not None:
                q.set(answers, default)
            else:
                lacking.append(f"missing {q.flag}: {q.text}")
    return lacking


def build(a: Answers) -> dict:
    """The mapping deploy.yml holds; keys the answers leave out keep the models' defaults."""
    env: dict = {"hosts": list(a.hosts), "path": a.path, "restart": a.restart, "health": {"url": a.health_url}}
    if a.approvers:
        env["approval"] = {"approvers": list(a.approvers)}
    return {"app": {"name": a.app, "artifact": a.artifact, "upload": "sftp"}, "environments": {a.env: env}}


def _flag(location: str, env: str) -> str:
    at = f"environments.{env}"
    for prefix, flag in (
        ("app.name", "--app"),
        ("app.", "--artifact"),
        (f"{at}.hosts", "--host"),
        (f"{at}.path", "--path"),
        (f"{at}.restart", "--restart"),
        (f"{at}.health", "--health-url"),
        (f"{at}.approval", "--approver"),
        (at, "--host"),
        ("", "--env"),
    ):
        if location.startswith(prefix):
            return flag
    return "--env"


def _own_checks(a: Answers) -> list[str]:
    """What the models accept in a file someone wrote but a flag should not carry."""
    found = []
    at = f"environments.{a.env}"
    single = [
        ("--app", "app.name", a.app),
        ("--artifact", "app.artifact", a.artifact),
        ("--env", "environments", a.env),
        ("--path", f"{at}.path", a.path),
        ("--restart", f"{at}.restart", a.restart),
        ("--health-url", f"{at}.health.url", a.health_url),
    ]
    single += [("--host", f"{at}.hosts[{i}]", h) for i, h in enumerate(a.hosts)]
    single += [("--approver", f"{at}.approval.approvers[{i}]", s) for i, s in enumerate(a.approvers)]
    for flag, where, value in single:
        if value and _CONTROL.search(value):
            found.append(f"{flag}: {where}: control or bidirectional characters are not allowed")
    for i, who in enumerate(a.approvers):
        if not SLACK_ID.match(who):
            found.append(
                f"--approver: {at}.approval.approvers[{i}]: {who!r} is not a Slack user or user group ID "
                "(U..., W... or S...)"
            )
    if a.env and not NAME.match(a.env):
        found.append(f"--env: environments: {a.env!r} must be letters, digits, `_.-`")
    return found


def validate(a: Answers) -> dict:
    """The mapping, or InitError with every problem: the models' own and this module's."""
    mapping = build(a)
    found = _own_checks(a)
    try:
        parse_config(mapping)
    except ConfigError as exc:
        found += [
            f"{_flag(p, a.env)}: {p}"
            for p in exc.problems
            if not p.startswith("(top level): Value error, environment name")
        ]
    if found:
        raise InitError(sorted(set(found), key=found.index))
    return mapping
