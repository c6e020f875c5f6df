"""Slash-command text -> pydantic models, so every handler starts from checked, typed arguments.

Two slash commands: `/deploy` and `/rollback`. Slack reserves names such as `/status`, and generic ones such as
`/lock` or `/history` clash with other apps, so reading and freezing are subcommands of `/deploy`: its first word
picks the subcommand (`status`, `history`, `lock`, `unlock`, `help`, in any letter case); any other first word is
an environment (the short form `/deploy ENV VERSION`). `--` ends subcommand parsing, so an environment that is
named like a subcommand is still deployable: `/deploy -- status v1.2.0`.

Only the shape is checked here (how many words, an environment *name*); whether a version is valid, an
environment exists or a caller may act is the service's decision, so that refusal is audited in one place.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

ENV_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_TEXT = 500
COMMANDS = ("/deploy", "/rollback")  # the slash commands the bot registers (and manifest*.yml lists)
CONFIRM_MIGRATION = ("confirm-migration", "--confirm-migration")
OVERRIDE_ALARMS = ("override-alarms", "--override-alarms")  # the rest of the text is the reason
MAX_REASON = 200
SUBCOMMANDS = ("status", "history", "lock", "unlock", "help")  # first words of `/deploy` that are not an ENV
HELP_WORDS = ("help", "-h", "--help")
INVITE = "Invite @deploybot to the channel first (`/invite @deploybot`): it posts approval requests and progress there."

USAGE = {
    "/deploy": "`/deploy ENV VERSION [--dry-run] [confirm-migration] [override-alarms REASON]`: ask to deploy "
    "VERSION to ENV (approvers are asked in the channel). `--dry-run` shows the plan; nothing runs. "
    "`confirm-migration`: the old release works on the new schema (asked where a migration runs while it keeps "
    "serving). `override-alarms REASON` (last): start although a CloudWatch alarm fires; the reason is audited. "
    "Example: `/deploy prod v1.4.2`",
    "/deploy status": "`/deploy status [ENV]`: what each host runs now (read live), the last and the running "
    "deployment, locks.",
    "/deploy history": "`/deploy history [ENV]`: recent deployments, newest first.",
    "/deploy lock": "`/deploy lock ENV REASON`: freeze ENV; no deploy starts until `/deploy unlock ENV`. "
    "Example: `/deploy lock prod release freeze`",
    "/deploy unlock": "`/deploy unlock ENV`: lift a freeze set with `/deploy lock`.",
    "/deploy help": "`/deploy help`: this list. `help` after a subcommand shows its line.",
    "/rollback": "`/rollback [ENV] [VERSION]`: open the rollback form (target preselected to the previous good "
    "release). Example: `/rollback prod`",
}
HELP = "\n".join(
    [
        *USAGE.values(),
        "The first word after `/deploy` picks the subcommand, so an environment named "
        + ", ".join(SUBCOMMANDS)
        + " is deployed with `/deploy -- ENV VERSION`.",
        INVITE,
    ]
)


class UsageError(ValueError):
    """Bad or missing arguments, or `help`: the caller gets the usage text (and the problem, if any).

    `command` is a key of USAGE (`/deploy lock`); a plain `/deploy` shows the whole HELP."""

    def __init__(self, command: str, problem: str = ""):
        self.command = command
        self.problem = problem
        super().__init__(problem or "help")

    @property
    def text(self) -> str:
        usage = HELP if self.command in ("/deploy", "/deploy help") else USAGE.get(self.command, HELP)
        return f"{self.problem}\nUsage: {usage}" if self.problem else f"Usage: {usage}"


class Args(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _env(value: str | None) -> str | None:
    if value is not None and not ENV_NAME.match(value):
        raise ValueError(f"{value[:40]!r} is not an environment name")
    return value


class DeployArgs(Args):
    env: str
    version: str  # validated by the service (audited refusal), never here
    dry_run: bool = False
    confirm_migration: bool = False  # the requester checked that the old release survives the new schema
    override_alarms: str = ""  # a reason to start although an alarm fires (audited, redacted)

    _check_env = field_validator("env")(classmethod(lambda cls, v: _env(v)))

    @field_validator("override_alarms")
    @classmethod
    def _reason(cls, v: str) -> str:
        if len(v) > MAX_REASON or not v.isprintable():
            raise ValueError(f"the override reason must be plain text of at most {MAX_REASON} characters")
        return v


class RollbackArgs(Args):
    env: str | None = None
    version: str | None = None

    _check_env = field_validator("env")(classmethod(lambda cls, v: _env(v)))


class EnvArgs(Args):
    env: str | None = None

    _check_env = field_validator("env")(classmethod(lambda cls, v: _env(v)))


class StatusArgs(EnvArgs):
    """`/deploy status [ENV]`"""


class HistoryArgs(EnvArgs):
    """`/deploy history [ENV]`"""


class LockArgs(Args):
    env: str
    reason: str

    _check_env = field_validator("env")(classmethod(lambda cls, v: _env(v)))


class UnlockArgs(Args):
    env: str

    _check_env = field_validator("env")(classmethod(lambda cls, v: _env(v)))


def _words(command: str, text: str) -> list[str]:
    text = (text or "").strip()
    if len(text) > MAX_TEXT:
        raise UsageError(command, f"that is longer than {MAX_TEXT} characters")
    return text.split()


def _build(command: str, model: type[Args], **values) -> Args:
    try:
        return model(**values)
    except ValidationError as exc:
        problem = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise UsageError(command, problem) from None


def parse(command: str, text: str) -> Args:
    """One entry point per slash command; raises UsageError with the usage text on `help` or bad input."""
    words = _words(command, text)
    if command == "/deploy":
        return _deploy(words)
    if command == "/rollback":
        if words[:1] and words[0].lower() in HELP_WORDS:
            raise UsageError(command)
        if len(words) > 2:
            raise UsageError(command, "Too many words.")
        return _build(
            command, RollbackArgs, env=words[0] if words else None, version=words[1] if len(words) > 1 else None
        )
    raise UsageError("/deploy", f"unknown command {command[:40]}")


def _deploy(words: list[str]) -> Args:
    first = words[0].lower() if words else ""
    if first in HELP_WORDS:
        raise UsageError("/deploy")
    if first in SUBCOMMANDS:
        return _subcommand(f"/deploy {first}", words[1:])
    if first == "--":  # an environment named like a subcommand
        words = words[1:]
    override = ""
    at = next((i for i, w in enumerate(words) if w.lower() in OVERRIDE_ALARMS), None)
    if at is not None:  # `override-alarms REASON`: every word after it is the reason
        words, override = words[:at], " ".join(words[at + 1 :]).strip("\"'“”‘’ ")
        if not override:
            raise UsageError("/deploy", "override-alarms needs a reason: `/deploy prod v1.4.2 override-alarms hotfix`")
    dry_run = "--dry-run" in words
    confirm = any(w.lower() in CONFIRM_MIGRATION for w in words)
    words = [w for w in words if w != "--dry-run" and w.lower() not in CONFIRM_MIGRATION]
    if len(words) != 2:
        raise UsageError(
            "/deploy",
            "I need an environment and a version." if len(words) < 2 else "Too many words: a version is one word.",
        )
    return _build(
        "/deploy",
        DeployArgs,
        env=words[0],
        version=words[1],
        dry_run=dry_run,
        confirm_migration=confirm,
        override_alarms=override,
    )


def _subcommand(name: str, words: list[str]) -> Args:
    if words[:1] and words[0].lower() in HELP_WORDS:
        raise UsageError(name)
    if name in ("/deploy status", "/deploy history"):
        if len(words) > 1:
            raise UsageError(name, "At most one environment.")
        return _build(name, StatusArgs if name == "/deploy status" else HistoryArgs, env=words[0] if words else None)
    if name == "/deploy lock":
        if len(words) < 2:
            raise UsageError(name, "I need an environment and a reason.")
        return _build(name, LockArgs, env=words[0], reason=" ".join(words[1:]))
    if name == "/deploy unlock":
        if len(words) != 1:
            raise UsageError(name, "I need exactly one environment.")
        return _build(name, UnlockArgs, env=words[0])
    raise UsageError("/deploy")  # `/deploy help ...`
