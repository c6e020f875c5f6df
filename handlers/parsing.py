"""Slash-command text -> pydantic models, so every handler starts from checked, typed arguments.

Only the shape is checked here (how many words, an environment *name*); whether a version is valid, an
environment exists or a caller may act is the service's decision, so that refusal is audited in one place.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

ENV_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_TEXT = 500

USAGE = {
    "/deploy": "`/deploy ENV VERSION [--dry-run]`: ask to deploy VERSION to ENV (approvers are asked in the "
               "channel). `--dry-run` shows the plan; nothing runs. Example: `/deploy prod v1.4.2`",
    "/rollback": "`/rollback [ENV] [VERSION]`: open the rollback form (target preselected to the previous good "
                 "release). Example: `/rollback prod`",
    "/status": "`/status [ENV]`: what each host runs now (read live), the last and the running deployment, locks.",
    "/history": "`/history [ENV]`: recent deployments, newest first.",
    "/lock": "`/lock ENV REASON`: freeze ENV; no deploy starts until `/unlock ENV`. Example: "
             "`/lock prod release freeze`",
    "/unlock": "`/unlock ENV`: lift a freeze set with `/lock`.",
}


class UsageError(ValueError):
    """Bad or missing arguments, or `help`: the caller gets the usage text (and the problem, if any)."""

    def __init__(self, command: str, problem: str = ""):
        self.command = command
        self.problem = problem
        super().__init__(problem or "help")

    @property
    def text(self) -> str:
        usage = USAGE.get(self.command, "")
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

    _check_env = field_validator("env")(classmethod(lambda cls, v: _env(v)))


class RollbackArgs(Args):
    env: str | None = None
    version: str | None = None

    _check_env = field_validator("env")(classmethod(lambda cls, v: _env(v)))


class EnvArgs(Args):
    env: str | None = None

    _check_env = field_validator("env")(classmethod(lambda cls, v: _env(v)))


class LockArgs(Args):
    env: str
    reason: str

    _check_env = field_validator("env")(classmethod(lambda cls, v: _env(v)))


def _words(command: str, text: str) -> list[str]:
    text = (text or "").strip()
    if len(text) > MAX_TEXT:
        raise UsageError(command, f"that is longer than {MAX_TEXT} characters")
    words = text.split()
    if words[:1] in (["help"], ["-h"], ["--help"]):
        raise UsageError(command)
    return words


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
        dry_run = "--dry-run" in words
        words = [w for w in words if w != "--dry-run"]
        if len(words) != 2:
            raise UsageError(command, "I need an environment and a version." if len(words) < 2
                             else "Too many words: a version is one word.")
        return _build(command, DeployArgs, env=words[0], version=words[1], dry_run=dry_run)
    if command == "/rollback":
        if len(words) > 2:
            raise UsageError(command, "Too many words.")
        return _build(command, RollbackArgs, env=words[0] if words else None,
                      version=words[1] if len(words) > 1 else None)
    if command in ("/status", "/history"):
        if len(words) > 1:
            raise UsageError(command, "At most one environment.")
        return _build(command, EnvArgs, env=words[0] if words else None)
    if command == "/lock":
        if len(words) < 2:
            raise UsageError(command, "I need an environment and a reason.")
        return _build(command, LockArgs, env=words[0], reason=" ".join(words[1:]))
    if command == "/unlock":
        if len(words) != 1:
            raise UsageError(command, "I need exactly one environment.")
        return _build(command, EnvArgs, env=words[0])
    raise UsageError(command, f"unknown command {command}")
