"""Backup sets in S3 (`backup: {s3: {bucket, prefix, keep_days}}`).

Layout: s3://BUCKET/PREFIX APP/ENV/SET/HOST.tar and HOST.tar.sha256 beside it (`sha256sum` format), where SET is
the folder name the backup stage made on the host: `20261124T091600-d42-v1.0.0` (its UTC time, the deployment,
the release it backed up). Hosts never hold credentials: they PUT and GET through presigned URLs made here, each
for one object and valid aws.presign_seconds. The age used for retention is the time in SET's name, not the
object's LastModified, so a copy made later (replication, a restore of the bucket) keeps its age.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.aws.config import AWSSettings, S3Backups
from bot.aws.session import AWSError, asking, client

SET_NAME = re.compile(r"^(?P<at>\d{8}T\d{6})-d(?P<deployment>\d+)-(?P<release>[^/]+)$")
SHA_SUFFIX = ".sha256"


@dataclass(frozen=True)
class StoredSet:
    """One host's copy of one backup set in S3."""

    name: str  # 20261124T091600-d42-v1.0.0
    host: str
    bucket: str
    key: str
    size: int

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def at(self) -> datetime:
        return parse_set(self.name)[0]

    @property
    def deployment_id(self) -> int:
        return parse_set(self.name)[1]

    @property
    def release(self) -> str:
        return parse_set(self.name)[2]


def parse_set(name: str) -> tuple[datetime, int, str]:
    """(when, deployment id, release) of a set's name; ValueError when it is not one."""
    found = SET_NAME.match(name)
    if not found:
        raise ValueError(f"{name!r} is not a backup set name")
    at = datetime.strptime(found["at"], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    return at, int(found["deployment"]), found["release"]


def env_prefix(cfg: S3Backups, app: str, env: str) -> str:
    return f"{cfg.prefix}{app}/{env}/"


def key_for(cfg: S3Backups, app: str, env: str, set_name: str, host: str) -> str:
    return f"{env_prefix(cfg, app, env)}{set_name}/{host}.tar"


def presigned(settings: AWSSettings, method: str, bucket: str, key: str) -> str:
    """A URL a host PUTs or GETs one object with, valid aws.presign_seconds; its signature is masked wherever
    deploybot shows a URL (bot/redact.py)."""
    with asking(f"signing a {method} URL for s3://{bucket}/{key}"):
        return client("s3", settings).generate_presigned_url(
            "put_object" if method == "PUT" else "get_object",
            Params={"Bucket": bucket, "Key": key},
            ExpiresIn=settings.presign_seconds,
        )


def check_uploaded(settings: AWSSettings, bucket: str, key: str, size: int, sha256: str, md5: str) -> None:
    """What the host sent is what S3 holds: the size, the ETag (the MD5 of a single PUT, unless S3 encrypted it
    with KMS) and the `.sha256` object. AWSError naming the difference otherwise."""
    s3 = client("s3", settings)
    where = f"s3://{bucket}/{key}"
    with asking(f"checking {where}"):
        head = s3.head_object(Bucket=bucket, Key=key)
        sidecar = s3.get_object(Bucket=bucket, Key=key + SHA_SUFFIX)["Body"].read(400).decode(errors="replace")
    if int(head.get("ContentLength", -1)) != size:
        raise AWSError(f"{where} holds {head.get('ContentLength')} bytes, the host sent {size}")
    etag = str(head.get("ETag", "")).strip('"')
    if head.get("ServerSideEncryption") != "aws:kms" and "-" not in etag and etag != md5:
        raise AWSError(f"{where} differs from what the host sent (ETag {etag}, MD5 {md5})")
    if (sidecar.split() or [""])[0] != sha256:
        raise AWSError(f"{where}{SHA_SUFFIX} does not hold the set's sha256 {sha256}")


def read_sha256(settings: AWSSettings, stored: StoredSet) -> str:
    with asking(f"reading {stored.location}{SHA_SUFFIX}"):
        body = client("s3", settings).get_object(Bucket=stored.bucket, Key=stored.key + SHA_SUFFIX)["Body"]
        sha = (body.read(400).decode(errors="replace").split() or [""])[0].lower()
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise AWSError(f"{stored.location}{SHA_SUFFIX} does not hold a sha256")
    return sha


def list_sets(settings: AWSSettings, cfg: S3Backups, app: str, env: str) -> list[StoredSet]:
    """Every host's copy of every set under the environment's prefix, newest first."""
    prefix = env_prefix(cfg, app, env)
    found = []
    with asking(f"listing s3://{cfg.bucket}/{prefix}"):
        pages = client("s3", settings).get_paginator("list_objects_v2").paginate(Bucket=cfg.bucket, Prefix=prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                rest = obj["Key"][len(prefix) :]
                name, _, file = rest.partition("/")
                if not file.endswith(".tar") or "/" in file or not SET_NAME.match(name):
                    continue  # the .sha256 objects, and anything not put there by deploybot
                found.append(StoredSet(name, file.removesuffix(".tar"), cfg.bucket, obj["Key"], int(obj["Size"])))
    return sorted(found, key=lambda s: (s.at, s.name, s.host), reverse=True)


def newest_of(sets: list[StoredSet], release: str, host: str) -> StoredSet | None:
    """The newest copy of a set taken while `release` ran: the host's own, else another host's of that set."""
    of_release = [s for s in sets if s.release == release]
    if not of_release:
        return None
    newest = max(of_release, key=lambda s: (s.at, s.name)).name
    same = [s for s in of_release if s.name == newest]
    return next((s for s in same if s.host == host), same[0])


def prune(settings: AWSSettings, cfg: S3Backups, app: str, env: str, now: datetime | None = None) -> list[str]:
    """Delete the sets older than keep_days (every host's copy and its .sha256), never the newest set; the names of
    the sets deleted."""
    sets = list_sets(settings, cfg, app, env)
    if not sets:
        return []
    cutoff = (now or datetime.now(UTC)) - timedelta(days=cfg.keep_days)
    newest = sets[0].name
    old = [s for s in sets if s.at < cutoff and s.name != newest]
    keys = [k for s in old for k in (s.key, s.key + SHA_SUFFIX)]
    s3 = client("s3", settings)
    for i in range(0, len(keys), 1000):
        with asking(f"deleting old backups under s3://{cfg.bucket}/{env_prefix(cfg, app, env)}"):
            answer = s3.delete_objects(
                Bucket=cfg.bucket, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True}
            )
        if answer.get("Errors"):
            first = answer["Errors"][0]
            raise AWSError(f"deleting {first.get('Key')}: {first.get('Code')}: {first.get('Message')}")
    return sorted({s.name for s in old})
