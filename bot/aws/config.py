"""The AWS parts of deploy.yml, referenced by bot/config.py: where to reach AWS, which EC2 instances are the
hosts, which CloudWatch alarms gate a deploy, which secret fills shared/.env. Nothing here calls AWS."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from bot.host import Strict

S3_PREFIX = "s3://"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TAG = re.compile(r"^[\w .:/=+@-]{1,128}$")
# what discovered hosts add to the {placeholders} of path and health.url, beside host and name
EC2_VARS = ("instance_id", "private_ip", "public_ip", "availability_zone")


def is_s3(location: str) -> bool:
    return location.startswith(S3_PREFIX)


def split_s3(location: str) -> tuple[str, str]:
    """`s3://bucket/key` -> (bucket, key)."""
    bucket, _, key = location[len(S3_PREFIX) :].partition("/")
    return bucket, key


def check_s3_location(location: str) -> None:
    bucket, key = split_s3(location)
    if "{version}" in bucket:
        raise ValueError("{version} belongs in the key, not in the bucket name")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise ValueError(f"{bucket!r} is not an S3 bucket name (s3://bucket/key-{{version}}.tar.gz)")
    if not key or key.endswith("/"):
        raise ValueError("an S3 artifact needs a key after the bucket: s3://bucket/app-{version}.tar.gz")


class AWSSettings(Strict):
    """`aws:` at the top of deploy.yml. Credentials are never here: boto3's default chain finds them (environment,
    shared files, the instance or task role)."""

    region: str | None = None  # else AWS_REGION / AWS_DEFAULT_REGION / the profile's region
    endpoint_url: str | None = None  # else AWS_ENDPOINT_URL; for a private endpoint or a local stand-in
    presign_seconds: int = Field(default=300, ge=30, le=3600)  # how long a host's download URL is valid

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("endpoint_url must start with http:// or https://")
        return v


class EC2Hosts(Strict):
    """`hosts: {ec2: {...}}`: the running instances carrying all these tags, resolved when a deployment is planned
    (and for status). Each is named by its instance id (or its Name tag) and keeps the id as the host var
    `instance_id`."""

    tags: dict[str, str] = Field(min_length=1)
    address: Literal["private", "public"] = "private"
    user: str | None = None
    port: int = Field(default=22, gt=0, lt=65536)
    name: Literal["instance_id", "Name"] = "instance_id"  # Name: the Name tag, where it is a valid, unique name

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if not _TAG.match(key) or not _TAG.match(str(value)):
                raise ValueError(f"tag {key}={value} has characters a tag cannot hold")
        return v

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.tags.items())


class Alarms(Strict):
    """`alarms:`: CloudWatch alarms that gate a deploy. One in ALARM refuses the start (unless the request gives an
    override reason); one going to ALARM during the verification window fails verify, which rolls back."""

    names: list[str] = Field(default_factory=list)
    prefix: str | None = None
    interval: float = Field(default=10.0, ge=0.1, le=300)  # seconds between reads during the verification window

    @model_validator(mode="after")
    def _some(self) -> Alarms:
        if not self.names and not self.prefix:
            raise ValueError("alarms needs names, a prefix, or both")
        if len(self.names) > 100:
            raise ValueError("at most 100 alarm names (use a prefix for more)")
        return self


class SecretsSource(Strict):
    """`secrets_manager:`: a JSON key/value secret whose `keys` are written into shared/.env (mode 0600) on every
    host during preflight, replacing those keys and keeping the others. The values are masked everywhere."""

    secret_id: str = Field(min_length=1, max_length=2048)
    keys: list[str] = Field(min_length=1)

    @field_validator("keys")
    @classmethod
    def _keys(cls, v: list[str]) -> list[str]:
        for name in v:
            if not _ENV_VAR.match(name):
                raise ValueError(f"{name!r} is not an environment variable name")
        if len(set(v)) != len(v):
            raise ValueError("keys must be unique")
        return v
