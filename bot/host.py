"""A target host as deploy.yml names it (`user@host[:port]`, `local`, or a mapping) and how to reach it over SSH."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HOST = re.compile(
    r"^(?:(?P<user>[A-Za-z_][A-Za-z0-9_.-]{0,31})@)?"
    r"(?P<host>[A-Za-z0-9_.-]{1,253}|\[[0-9a-fA-F:]+\])(?::(?P<port>\d{1,5}))?$"
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Host(Strict):
    """One target: `user@host[:port]` over SSH, or `local` (same stages on this machine)."""

    name: str
    address: str
    user: str | None = None
    port: int = 22
    vars: dict[str, str | int] = Field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        return self.address == "local"

    @classmethod
    def parse(cls, spec: str | dict) -> Host:
        if isinstance(spec, dict):
            spec = dict(spec)
            target = spec.pop("host", None) or spec.pop("address", None)
            if not isinstance(target, str):
                raise ValueError("a host entry needs `host: user@host[:port]` or `host: local`")
            base = cls.parse(target)
            return cls(**{**base.model_dump(), **spec})
        if not isinstance(spec, str):
            raise ValueError("a host must be `user@host[:port]`, `local`, or a mapping")
        if spec == "local":
            return cls(name="local", address="local")
        m = _HOST.match(spec)
        if not m:
            raise ValueError(f"{spec!r} is not `user@host[:port]`")
        port = int(m["port"] or 22)
        if not 0 < port < 65536:
            raise ValueError(f"port {port} out of range")
        return cls(name=m["host"], address=m["host"], user=m["user"], port=port)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME.match(v):
            raise ValueError(f"host name {v!r} must be letters, digits, `_.-`")
        return v

    def template_vars(self) -> dict[str, str]:
        return {"host": self.address, "name": self.name, **{k: str(v) for k, v in self.vars.items()}}


class SSHOptions(Strict):
    key_file: Path | None = None
    known_hosts: Path | None = None
    connect_timeout: float = Field(default=5.0, gt=0, le=120)
    command_timeout: float = Field(default=600.0, gt=0)
    dead_after: float = Field(default=30.0, ge=2, le=600)  # a silent host mid-command is given up after this
    accept_unknown_hosts: bool = False  # explicit opt-in; host keys are verified by default
    parallel: int = Field(default=20, ge=1, le=200)
