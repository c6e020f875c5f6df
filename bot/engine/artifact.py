"""The artifact of a version: where it is, its sha256 (published or computed), a local copy to send when needed.

Where: a path on this machine, an http(s) URL, or an S3 object (s3://bucket/key, read with boto3; hosts that
fetch it themselves get a presigned GET URL, made afresh each time a command needs one)."""

from __future__ import annotations

import functools
import hashlib
import re
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path

from bot.aws.config import is_s3
from bot.config import Config, is_url


class ArtifactMissing(FileNotFoundError):
    pass


# what urllib raises for a URL it cannot fetch: OSError (URLError, HTTPError, timeouts), and ValueError or
# http.client.InvalidURL for a malformed one
_URL_ERRORS = (OSError, ValueError, HTTPException)


@dataclass(frozen=True)
class Artifact:
    source: str  # the configured path or URL, for this version
    sha256: str  # the published checksum (sidecar .sha256) when there is one, else computed here
    size: int | None  # None when hosts fetch it and only the published checksum was read
    local: Path | None  # a copy on this machine to send over SFTP; None when hosts fetch `source` themselves
    signer: Callable[[], str] | None = field(default=None, compare=False, repr=False)  # S3: a presigned URL

    @property
    def name(self) -> str:
        return _file_name(self.source)

    @property
    def signed(self) -> bool:
        """Hosts download a presigned URL, which answers GET only (a HEAD is refused: it is not what was signed)."""
        return self.signer is not None

    def download_url(self) -> str:
        """What a host downloads: the URL, or a fresh presigned one (valid aws.presign_seconds) for S3."""
        return self.signer() if self.signer else self.source

    @property
    def fetched_by_hosts(self) -> bool:
        return self.local is None


def check_artifact(config: Config, version: str) -> None:
    """Does the artifact exist? A stat or an HTTP HEAD: cheap enough for every request and approval."""
    location = config.artifact_for(version)
    if is_s3(location):
        _s3_object(config, location)
        return
    if is_url(location):
        try:
            with urllib.request.urlopen(urllib.request.Request(location, method="HEAD"), timeout=5):  # noqa: S310
                return
        except _URL_ERRORS as exc:
            raise ArtifactMissing(f"artifact not downloadable: {location}: {exc}") from None
    if not Path(location).is_file():
        raise ArtifactMissing(f"artifact for {version} not found: {location}")


def resolve_artifact(config: Config, version: str) -> Artifact:
    """Find the artifact for a version (local path or URL), with its published checksum (a `.sha256` file beside
    it) when there is one.

    With `app.upload: fetch` the hosts download the URL themselves: the bot reads the published checksum and
    downloads the artifact only when there is none, to compute it. With sftp a URL is downloaded to a temporary
    copy, which release_artifact() removes after the run."""
    location = config.artifact_for(version)
    fetch = config.app.upload == "fetch"
    if is_s3(location):
        from bot.aws import s3

        obj = _s3_object(config, location)
        published = _aws(lambda: s3.published_sha256(config.aws, obj))
        signer = functools.partial(s3.presigned_url, config.aws, location) if fetch else None
        return _remote(
            location,
            _checked_sha256(*published) if published else None,
            obj.size,
            fetch,
            lambda dest: _aws(lambda: s3.download(config.aws, location, dest)),
            signer,
        )
    if is_url(location):
        return _remote(location, _published_sha256_url(location), None, fetch, lambda dest: _download(location, dest))
    path = Path(location)
    if not path.is_file():
        raise ArtifactMissing(f"artifact for {version} not found: {path}")
    sidecar = path.with_name(path.name + ".sha256")
    sha = _checked_sha256(sidecar.read_text(), str(sidecar)) if sidecar.is_file() else _sha256(path)
    return Artifact(location, sha, path.stat().st_size, path)


def _remote(
    location: str,
    published: str | None,
    size: int | None,
    fetch: bool,
    download: Callable[[Path], Path],
    signer: Callable[[], str] | None = None,
) -> Artifact:
    """Hosts fetching a published checksum: nothing to download here. Else one download to a temporary copy (sent
    with sftp, or only hashed and removed when the hosts fetch it)."""
    if published and fetch:
        return Artifact(location, published, size, None, signer)
    folder = Path(tempfile.mkdtemp(prefix="deploybot-artifact-"))
    try:
        copy = download(folder / _file_name(location))
        sha, size = published or _sha256(copy), copy.stat().st_size
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if fetch:
        shutil.rmtree(folder, ignore_errors=True)
        return Artifact(location, sha, size, None, signer)
    return Artifact(location, sha, size, copy)


def _aws(ask):
    """An AWS call whose failure means the artifact cannot be had."""
    from bot.aws.session import AWSError

    try:
        return ask()
    except AWSError as exc:
        raise ArtifactMissing(str(exc)) from None


def _s3_object(config: Config, location: str):
    from bot.aws import s3

    return _aws(lambda: s3.head(config.aws, location))


def release_artifact(artifact: Artifact | None) -> None:
    """Remove the bot's temporary copy of a downloaded artifact, if it made one."""
    if artifact and artifact.local and (is_url(artifact.source) or is_s3(artifact.source)):
        shutil.rmtree(artifact.local.parent, ignore_errors=True)


def _checked_sha256(text: str, source: str) -> str:
    """A published checksum goes into a host's shell: it must be exactly 64 hex digits."""
    sha = (text.split() or [""])[0].strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise ArtifactMissing(f"published checksum {source} is not a sha256")
    return sha


def _published_sha256_url(url: str) -> str | None:
    """`<path>.sha256` beside the artifact (query kept). A 4xx means none is published (S3 answers 403 for a
    missing object); not reaching the store at all is an error."""
    parts = urllib.parse.urlsplit(url)
    sidecar = urllib.parse.urlunsplit(parts._replace(path=parts.path + ".sha256"))
    try:
        with urllib.request.urlopen(sidecar, timeout=10) as resp:  # noqa: S310 - scheme checked by the caller
            return _checked_sha256(resp.read(200).decode(errors="replace"), sidecar)
    except urllib.error.HTTPError as exc:
        if 400 <= exc.code < 500:
            return None
        raise ArtifactMissing(f"published checksum not readable: {sidecar}: {exc}") from None
    except _URL_ERRORS as exc:
        raise ArtifactMissing(f"published checksum not readable: {sidecar}: {exc}") from None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _file_name(location: str) -> str:
    """The artifact's file name, without a URL's query (a signed URL's signature is not a name)."""
    if is_url(location):
        location = urllib.parse.urlsplit(location).path
    return location.rsplit("/", 1)[-1] or "artifact"


def _download(url: str, dest: Path) -> Path:
    try:
        urllib.request.urlretrieve(url, dest)  # noqa: S310 - scheme checked by the caller
    except _URL_ERRORS as exc:
        raise ArtifactMissing(f"artifact not downloadable: {url}: {exc}") from None
    return dest
