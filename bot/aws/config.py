"""The AWS parts of deploy.yml, referenced by bot/config.py: where to reach AWS, which EC2 instances are the
hosts, which CloudWatch alarms gate a deploy, which secret fills shared/.env. Nothing here calls AWS."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from bot.host import Host, Strict

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


class CloudWatchMetrics(Strict):
    """`aws: {metrics: {namespace: deploybot}}`: when a deployment ends, its duration and outcome are published to
    CloudWatch (dimensions Environment and Kind; the outcome also as Outcome), for dashboards and alarms."""

    namespace: str = "deploybot"

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._/#:-]{1,255}", v) or v.startswith("AWS/"):
            raise ValueError("a CloudWatch namespace: letters, digits and ._/#:- (AWS/ is AWS's own)")
        return v


class AWSSettings(Strict):
    """`aws:` at the top of deploy.yml. Credentials are never here: boto3's default chain finds them (environment,
    shared files, the instance or task role)."""

    region: str | None = None  # else AWS_REGION / AWS_DEFAULT_REGION / the profile's region
    endpoint_url: str | None = None  # else AWS_ENDPOINT_URL; for a private endpoint or a local stand-in
    presign_seconds: int = Field(default=300, ge=30, le=3600)  # how long a host's download URL is valid
    metrics: CloudWatchMetrics | None = None  # publish each deployment's duration and outcome to CloudWatch

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


_PREFIX = re.compile(r"^[A-Za-z0-9!_.*'()/-]*$")
_RDS_ID = re.compile(r"^[A-Za-z](?!.*--)[A-Za-z0-9-]{0,62}(?<!-)$")


class S3Backups(Strict):
    """`backup: {s3: {...}}`: after the backup stage each host's set is uploaded, as one tar with a `.sha256`
    object beside it, to s3://bucket/PREFIX APP/ENV/SET/HOST.tar; the copies older than keep_days (by the time in
    SET's name) are deleted at cleanup, never the newest set."""

    bucket: str
    prefix: str = ""
    keep_days: int = Field(default=30, ge=1, le=3650)

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, v: str) -> str:
        if not _BUCKET.match(v) or ".." in v:
            raise ValueError(f"{v!r} is not an S3 bucket name")
        return v

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not _PREFIX.match(v) or v.startswith("/") or ".." in v or "//" in v:
            raise ValueError("prefix: letters, digits and !_.*'()/- only, not starting with / and without .. or //")
        return v if not v or v.endswith("/") else v + "/"


class RDSSnapshot(Strict):
    """`backup: {rds_snapshot: {instance: shop-prod}}`: a manual snapshot of that DB instance, taken from the bot
    before the migrate stage and awaited until available (at most wait_seconds)."""

    instance: str
    wait_seconds: float = Field(default=1800, gt=0, le=7200)
    interval: float = Field(default=15, ge=0.1, le=300)  # seconds between reads of the snapshot's status

    @field_validator("instance")
    @classmethod
    def _instance(cls, v: str) -> str:
        if not _RDS_ID.match(v):
            raise ValueError(f"{v!r} is not a DB instance identifier (a letter, then letters, digits, single hyphens)")
        return v


class OffsiteBackups(Strict):
    """The backup kinds that leave the hosts, part of `backup:` (bot.config.Backup)."""

    s3: S3Backups | None = None  # a copy of each host's set in S3, kept by its own days
    rds_snapshot: RDSSnapshot | None = None  # a snapshot of the DB instance before each migration


_ECS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$")
# what an SSH environment has and an ECS one cannot: the service's task definition says what runs and where
ECS_HAS_NO = (
    "hosts", "ec2", "path", "restart", "migrate", "migrate_on", "traffic", "backup", "required_env", "secrets_manager",
    "strategy", "ssh", "keep_releases", "min_free_mb", "gates",
)  # fmt: skip


class ECSService(Strict):
    """`kind: ecs` with `ecs: {cluster, service, container, image}`: a deploy registers a new revision of the
    service's task definition with `container`'s image set to `image` for the version, and updates the service."""

    cluster: str
    service: str
    container: str  # the container whose image carries the version
    image: str  # e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop:{version}; the tag names the version
    stable_timeout: float = Field(default=600.0, gt=0, le=3600)  # how long the service may take to be stable
    poll: float = Field(default=5.0, gt=0, le=60)  # seconds between readings of the service while waiting
    _aws: AWSSettings = PrivateAttr(default_factory=AWSSettings)  # the config's `aws:`, set by Config

    @field_validator("cluster", "service", "container")
    @classmethod
    def _names(cls, v: str) -> str:
        if not _ECS_NAME.match(v):
            raise ValueError(f"{v!r} is not an ECS name (letters, digits, `-` and `_`)")
        return v

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        name, _, tag = v.rpartition("/")[2].rpartition(":")
        if v.count("{version}") != 1 or "{version}" not in tag or not name or "@" in v:
            raise ValueError("image must put {version} in its tag, once: registry/app:{version}")
        return v

    @property
    def aws(self) -> AWSSettings:
        return self._aws

    def use(self, settings: AWSSettings) -> None:
        self._aws = settings

    @property
    def label(self) -> str:
        """The one pseudo-host an ECS environment has: in the plan, progress, the log page and status."""
        return f"ecs:{self.cluster}/{self.service}"

    def image_for(self, version: str) -> str:
        return self.image.replace("{version}", version)

    def version_of(self, image: str) -> str | None:
        """The version an image reference carries under this template (None: another image)."""
        head, _, tail = self.image.partition("{version}")
        found = re.fullmatch(re.escape(head) + r"([A-Za-z0-9_.+-]+)" + re.escape(tail), image)
        return found.group(1) if found else None


def ecs_target(env) -> Host:
    """An `kind: ecs` environment's one pseudo-host, once it is known to have an `ecs:` block and none of what
    only SSH hosts have. `env` is bot.config.Environment (not imported: it imports this module)."""
    if env.ecs is None:
        raise ValueError("kind ecs needs ecs: {cluster, service, container, image}")
    if env.kind != "ecs":
        raise ValueError("ecs: is for kind: ecs environments (add kind: ecs)")
    extra = [n.replace("ec2", "hosts") for n in ECS_HAS_NO if n in env.model_fields_set and getattr(env, n)]
    if extra:
        raise ValueError(
            f"kind ecs has no {', '.join(extra)}: the service's task definition says what runs, and ECS where"
        )
    label = env.ecs.label  # not a host name (`:` and `/`): built as is, never parsed or used in a path
    return Host.model_construct(name=label, address=f"{env.ecs.cluster}/{env.ecs.service}", user=None, port=0, vars={})
