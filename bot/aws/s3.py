"""Artifacts in S3 (`app.artifact: s3://bucket/app-{version}.tar.gz`): does it exist, its published sha256,
a copy on this machine (app.upload: sftp), and a short-lived presigned GET URL for hosts (app.upload: fetch).

The published checksum is the object's metadata `sha256` (x-amz-meta-sha256) or a `<key>.sha256` object beside
it, in that order; the caller computes one when neither exists. Presigned URLs are SigV4 (their signature and
credential scope sit in X-Amz-Signature and X-Amz-Credential, which the redactor masks) and only GET the
object: S3 answers 403 to a HEAD with them, which is why a host's preflight probe asks for one byte instead."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bot.aws.config import AWSSettings, split_s3
from bot.aws.session import AWSError, asking, client, error_code

_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}


class NotFound(AWSError):
    """The object (or its bucket) is not there."""


@dataclass(frozen=True)
class S3Object:
    location: str  # s3://bucket/key
    size: int
    metadata: dict[str, str]


def head(settings: AWSSettings, location: str) -> S3Object:
    """The object's size and metadata; NotFound when it is not there."""
    bucket, key = split_s3(location)
    from botocore.exceptions import ClientError

    with asking(f"reading {location}"):
        try:
            found = client("s3", settings).head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if error_code(exc) in _MISSING:
                raise NotFound(f"artifact not found: {location}") from None
            raise
    return S3Object(
        location, int(found.get("ContentLength", 0)), {k.lower(): v for k, v in (found.get("Metadata") or {}).items()}
    )


def published_sha256(settings: AWSSettings, obj: S3Object) -> tuple[str, str] | None:
    """(text, where it came from) of the published checksum, or None when none is published."""
    if obj.metadata.get("sha256"):
        return obj.metadata["sha256"], f"{obj.location} metadata sha256"
    bucket, key = split_s3(obj.location)
    sidecar = f"{obj.location}.sha256"
    from botocore.exceptions import ClientError

    with asking(f"reading {sidecar}"):
        try:
            body = client("s3", settings).get_object(Bucket=bucket, Key=key + ".sha256", Range="bytes=0-199")["Body"]
        except ClientError as exc:
            if error_code(exc) in _MISSING or error_code(exc) == "AccessDenied":
                return None  # none published (S3 answers 403 for a missing key without ListBucket)
            raise
        return body.read(200).decode(errors="replace"), sidecar


def download(settings: AWSSettings, location: str, dest: Path) -> Path:
    bucket, key = split_s3(location)
    with asking(f"downloading {location}"):
        client("s3", settings).download_file(bucket, key, str(dest))
    return dest


def presigned_url(settings: AWSSettings, location: str) -> str:
    """A GET URL for the object, valid for aws.presign_seconds: what a host downloads with curl or wget."""
    bucket, key = split_s3(location)
    with asking(f"signing a download URL for {location}"):
        return client("s3", settings).generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=settings.presign_seconds
        )
