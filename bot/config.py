"""deploy.yml as pydantic models: every value is checked before anything connects anywhere."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BeforeValidator, Field, ValidationError, ValidationInfo, field_validator, model_validator

from bot.artifact_template import check_template
from bot.aws.config import Alarms, AWSSettings, EC2Hosts, ECSService, SecretsSource, check_s3_location, is_s3
from bot.aws.config import OffsiteBackups as _OffsiteBackups
from bot.aws.config import ecs_target as _ecs_target
from bot.gates_config import Gates, check_gates
from bot.host import NAME as _NAME
from bot.host import Host, SSHOptions, Strict
from bot.traffic.config import Strategy, TrafficConfig

__all__ = ["Host", "SSHOptions"]  # part of the config, kept in bot/host.py

DEFAULT_VERSION_PATTERN = r"^v?\d+(\.\d+){1,3}(-[A-Za-z0-9]+(\.[A-Za-z0-9]+)*)?$"
MAX_VERSION_LENGTH = 64
_ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def is_url(location: str) -> bool:
    """An http(s) URL rather than a path on this machine."""
    return location.startswith(("http://", "https://"))


class ConfigError(ValueError):
    """Raised with every problem found, each prefixed by its location in deploy.yml."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class InvalidVersion(ValueError):
    """A version text that must never reach a shell or a path."""


class ApprovalPolicy(Strict):
    approvers: list[str] = Field(default_factory=list)  # Slack user IDs or usergroup IDs (S...)
    approvals_required: int = Field(default=1, ge=1, le=10)
    allow_self_approval: bool = False
    expires_after_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)
    required_for_rollback: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.approvers)


class Backup(_OffsiteBackups):  # s3 and rds_snapshot: bot/aws/config.py
    release_archive: bool = True
    commands: list[str] = Field(default_factory=list)  # run with $BACKUP_DIR set, e.g. pg_dump > $BACKUP_DIR/db.sql
    restore_commands: list[str] = Field(default_factory=list)  # run with $BACKUP_DIR set, by rollback --restore-db
    keep_days: int = Field(default=14, ge=0)
    keep_count: int = Field(default=5, ge=1)


class HealthCheck(Strict):
    url: str  # template: {host}, {name} and host vars, e.g. http://{host}:8000/health
    timeout: float = Field(default=30.0, gt=0)
    interval: float = Field(default=0.2, gt=0)
    expect_version: bool = True
    version_field: str = "version"

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not is_url(v):
            raise ValueError("health.url must start with http:// or https://")
        return v


class Environment(Strict):
    name: str = ""
    hosts: list[Annotated[Host, BeforeValidator(lambda h: Host.parse(h) if isinstance(h, str | dict) else h)]] = Field(
        default_factory=list
    )
    ec2: EC2Hosts | None = Field(default=None, alias="hosts.ec2")  # `hosts: {ec2: ...}`: found when planned
    kind: Literal["ssh", "ecs"] = "ssh"  # ecs: one ECS service (its one pseudo-host), no hosts/path/restart
    ecs: ECSService | None = None
    ssh: SSHOptions = SSHOptions()
    path: str | None = None  # base path on each host; may use {name} and host vars (required with kind ssh)
    strategy: Strategy = Strategy()
    traffic: TrafficConfig | None = None  # a balancer in front of the hosts: rolling batches are drained first
    deployers: list[str] = Field(default_factory=lambda: ["*"])  # Slack user IDs, or "*"
    approval: ApprovalPolicy = ApprovalPolicy()
    required_env: list[str] = Field(default_factory=list)
    backup: Backup = Backup()
    migrate: str | None = None
    migrate_on: Literal["first", "all"] = "first"
    # expand-contract: the old release works on the new schema; unchecked: confirm each zero-downtime migration
    migrations: Literal["unchecked", "expand-contract"] = "unchecked"
    gates: Gates = Gates()
    restart: str | None = None  # required with kind ssh
    health: HealthCheck
    verify_seconds: float = Field(default=0.0, ge=0, le=3600)
    keep_releases: int = Field(default=5, ge=2, le=100)
    min_free_mb: int = Field(default=100, ge=0)
    production: bool = False
    alarms: Alarms | None = None  # CloudWatch alarms gating the start and the verification window
    secrets_manager: SecretsSource | None = None  # shared/.env values written from a secret during preflight

    @model_validator(mode="before")
    @classmethod
    def _discovered_hosts(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("hosts"), dict):
            found = dict(data["hosts"])
            if set(found) != {"ec2"}:
                raise ValueError("hosts must be a list, or {ec2: {tags: {...}}} to use the tagged EC2 instances")
            data = {**data, "hosts": [], "hosts.ec2": found["ec2"]}
        return data

    @field_validator("path")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not v.startswith("/"):
            raise ValueError("path must be absolute (start with /)")
        if ".." in v.split("/") or "//" in v or v.rstrip("/") in ("", "/"):
            raise ValueError("path must not contain `..`, `//` or be `/`")
        if not re.match(r"^[A-Za-z0-9_./{}-]+$", v):
            raise ValueError("path may only hold letters, digits and `_./-{}`")
        return v.rstrip("/")

    @field_validator("required_env")
    @classmethod
    def _env_names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not _ENV_VAR.match(name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return v

    @model_validator(mode="after")
    def _unique_hosts(self) -> Environment:
        if self.kind == "ecs" or self.ecs is not None:
            object.__setattr__(self, "hosts", [_ecs_target(self)])
            return self
        if self.path is None or self.restart is None:
            raise ValueError("path and restart are required for hosts reached over SSH (kind: ecs has neither)")
        if not self.hosts and self.ec2 is None:
            raise ValueError("hosts: list at least one host, or {ec2: {tags: {...}}}")
        names = [h.name for h in self.hosts]
        if len(set(names)) != len(names):
            raise ValueError("host names must be unique within an environment")
        check_gates(self.gates, self.strategy, self.traffic, self.hosts)
        return self

    def host_path(self, host: Host) -> str:
        try:
            return self.path.format(**host.template_vars()) if self.path else ""
        except (KeyError, IndexError) as exc:
            raise ConfigError([f"environments.{self.name}.path: unknown placeholder {exc}"]) from None

    def health_url(self, host: Host, port: int | None = None) -> str:
        """blue-green: {port} is the slot's port when a slot is checked, else the host's proxy (what users reach)."""
        port = port or (self.strategy.proxy.port if self.strategy.proxy else None)
        return self.health.url.format(**{**host.template_vars(), **({"port": port} if port else {})})

    def may_deploy(self, user: str) -> bool:
        return "*" in self.deployers or user in self.deployers


class App(Strict):
    name: str
    artifact: str  # local path, http(s) URL or s3://bucket/key template with {version}
    # sftp: the bot sends the artifact to each host; fetch: each host downloads the artifact URL itself, so the
    # bot is not the pipe (20 hosts x 100 MB through one SSH client is CPU-bound); sha256 is checked on the host.
    upload: Literal["sftp", "fetch"] = "sftp"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("app name must be letters, digits, `_.-`")
        return v

    @field_validator("artifact")
    @classmethod
    def _artifact(cls, v: str) -> str:
        check_template(v)
        if is_s3(v):
            check_s3_location(v)
        if is_url(v) and "@" in urlsplit(v).netloc:
            raise ValueError(
                "credentials in the artifact URL are not supported: they would show in every host's "
                "process list and in error messages; use a signed URL"
            )
        return v

    @field_validator("upload")
    @classmethod
    def _upload(cls, v: str, info: ValidationInfo) -> str:
        artifact = info.data.get("artifact")
        if v == "fetch" and artifact is not None and not (is_url(artifact) or is_s3(artifact)):
            raise ValueError(
                "fetch needs an http(s) artifact URL (or s3://) the hosts can download; a local path is sent with sftp"
            )
        return v


class Config(Strict):
    app: App
    version_pattern: str = DEFAULT_VERSION_PATTERN
    environments: dict[str, Environment] = Field(min_length=1)
    secrets: list[str] = Field(default_factory=list)  # names of env vars whose values are redacted everywhere
    aws: AWSSettings = AWSSettings()  # region, endpoint, presigned URL lifetime; credentials: boto3's chain

    @field_validator("version_pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return v

    @model_validator(mode="after")
    def _name_environments(self) -> Config:
        for name, env in self.environments.items():
            if not _NAME.match(name):
                raise ValueError(f"environment name {name!r} must be letters, digits, `_.-`")
            object.__setattr__(env, "name", name)
            if env.ecs is not None:
                env.ecs.use(self.aws)
            if env.traffic is not None:
                env.traffic.use(self.aws)  # a target group is asked through AWS's API
        return self

    def environment(self, name: str) -> Environment:
        if name not in self.environments:
            known = ", ".join(sorted(self.environments))
            raise KeyError(f"unknown environment {name!r} (known: {known})")
        return self.environments[name]

    def check_version(self, version: str) -> str:
        """Refuse anything that is not a plain version, before any connection is made."""
        if not isinstance(version, str) or not version:
            raise InvalidVersion("a version is required")
        if len(version) > MAX_VERSION_LENGTH:
            raise InvalidVersion(f"version is longer than {MAX_VERSION_LENGTH} characters")
        if not version.isascii() or ".." in version or "/" in version:
            raise InvalidVersion(f"{_show(version)} is not a valid version")
        if not re.fullmatch(self.version_pattern, version):
            raise InvalidVersion(f"{_show(version)} does not match the version pattern {self.version_pattern}")
        return version

    def artifact_for(self, version: str) -> str:
        return self.app.artifact.format(version=self.check_version(version))


def _show(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "…")


def _location(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-", "model-")):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def parse_config(data: object, source: str = "deploy.yml") -> Config:
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: expected a mapping at the top level"])
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([f"{_location(e['loc'])}: {e['msg']}" for e in exc.errors()]) from None


def load_config(path: str | Path | None = None) -> Config:
    path = Path(path or os.environ.get("DEPLOYBOT_CONFIG", "deploy.yml"))
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file (set DEPLOYBOT_CONFIG or pass --config)"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML: {exc}"]) from None
    return parse_config(data, str(path))
