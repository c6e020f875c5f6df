"""A plan: everything a deployment will do, decided before anything runs (and printed by --dry-run)."""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path

from bot.config import Config, Environment, Host, is_url
from bot.domain import Kind, Stage
from bot.engine import commands


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

    @property
    def name(self) -> str:
        return _file_name(self.source)

    @property
    def fetched_by_hosts(self) -> bool:
        return self.local is None


@dataclass(frozen=True)
class Plan:
    deployment_id: int
    app: str
    env: Environment
    version: str
    kind: Kind
    artifact: Artifact | None = None
    restore_db_from: str | None = None  # rollback: restore the DB backup taken while this version ran
    expect_current: bool = False  # a good deploy happened before: a host without `current` means a wrong path
    hosts: tuple[Host, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.hosts:
            object.__setattr__(self, "hosts", tuple(self.env.hosts))

    @property
    def stages(self) -> list[Stage]:
        if self.kind is Kind.ROLLBACK:
            middle = [Stage.RESTORE_DB] if self.restore_db_from else []
            return [Stage.PREFLIGHT, *middle, Stage.SWITCH, Stage.RESTART, Stage.HEALTH]
        stages = [Stage.PREFLIGHT, Stage.BACKUP, Stage.UPLOAD]
        if self.env.migrate:
            stages.append(Stage.MIGRATE)
        stages += [Stage.SWITCH, Stage.RESTART, Stage.HEALTH]
        if self.env.verify_seconds:
            stages.append(Stage.VERIFY)
        return [*stages, Stage.CLEANUP]

    def batches(self) -> list[list[Host]]:
        hosts = list(self.hosts)
        if self.env.strategy.kind == "rolling" and self.kind is Kind.DEPLOY:
            size = self.env.strategy.batch_size
            return [hosts[i:i + size] for i in range(0, len(hosts), size)]
        return [hosts]

    def describe(self) -> list[str]:
        """Human-readable plan: hosts, stages and the exact commands, for --dry-run."""
        env, v = self.env, self.version
        lines = [f"{self.kind.value} {self.app} {v} to {env.name} ({env.strategy.kind}"
                 + (f", batches of {env.strategy.batch_size}" if env.strategy.kind == "rolling" else "") + ")"]
        if self.artifact:
            size = f"{self.artifact.size} bytes, " if self.artifact.size is not None else ""
            lines.append(f"artifact: {self.artifact.source} ({size}sha256 {self.artifact.sha256})")
        for i, batch in enumerate(self.batches(), 1):
            lines.append(f"batch {i}: " + ", ".join(f"{h.name} ({h.address})" for h in batch))
        host = self.hosts[0]
        path = env.host_path(host)
        lines.append(f"stages: {' -> '.join(s.value for s in self.stages)}")
        lines.append(f"commands on {host.name} (path {path}):")
        for stage in self.stages:
            for cmd in stage_commands(self, stage, path):
                lines.append(f"  [{stage.value}] {cmd}")
        return lines


def stage_commands(plan: Plan, stage: Stage, path: str) -> list[str]:
    env, v = plan.env, plan.version
    if stage is Stage.MIGRATE and env.migrate:
        return [commands.in_release(path, v, env.migrate)]
    if stage is Stage.SWITCH:
        return [commands.switch(path, v)]
    if stage is Stage.RESTART:
        return [commands.in_release(path, v, env.restart)]
    if stage is Stage.UPLOAD and plan.artifact:
        how = "host downloads" if plan.artifact.fetched_by_hosts else "sftp put"
        return [f"{how} {plan.artifact.source} -> {commands.incoming_dir(path)}/",
                f"verify sha256, unpack into {path}/releases/{v}"]
    if stage in (Stage.HEALTH, Stage.VERIFY):
        return [f"GET {env.health.url} until version == {v}"]
    if stage is Stage.BACKUP:
        return ["archive current release", *env.backup.commands, "sha256sum -c"]
    if stage is Stage.CLEANUP:
        return [f"keep {env.keep_releases} releases, {env.backup.keep_count} backups / {env.backup.keep_days} days"]
    if stage is Stage.RESTORE_DB:
        return env.backup.restore_commands
    if stage is Stage.PREFLIGHT:
        return [f"reachable, disk >= {env.min_free_mb} MB, env vars {env.required_env} in shared/.env"]
    return []


def check_artifact(config: Config, version: str) -> None:
    """Does the artifact exist? A stat or an HTTP HEAD: cheap enough for every request and approval."""
    location = config.artifact_for(version)
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
    if is_url(location):
        published = _published_sha256_url(location)
        fetch = config.app.upload == "fetch"
        if published and fetch:
            return Artifact(location, published, None, None)
        folder = Path(tempfile.mkdtemp(prefix="deploybot-artifact-"))
        try:
            copy = _download(location, folder)
            sha, size = published or _sha256(copy), copy.stat().st_size
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        if fetch:
            shutil.rmtree(folder, ignore_errors=True)
            return Artifact(location, sha, size, None)
        return Artifact(location, sha, size, copy)
    path = Path(location)
    if not path.is_file():
        raise ArtifactMissing(f"artifact for {version} not found: {path}")
    sidecar = path.with_name(path.name + ".sha256")
    sha = _checked_sha256(sidecar.read_text(), str(sidecar)) if sidecar.is_file() else _sha256(path)
    return Artifact(location, sha, path.stat().st_size, path)


def release_artifact(artifact: Artifact | None) -> None:
    """Remove the bot's temporary copy of a downloaded artifact, if it made one."""
    if artifact and artifact.local and is_url(artifact.source):
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


def _download(url: str, folder: Path) -> Path:
    dest = folder / _file_name(url)
    try:
        urllib.request.urlretrieve(url, dest)  # noqa: S310 - scheme checked by the caller
    except _URL_ERRORS as exc:
        raise ArtifactMissing(f"artifact not downloadable: {url}: {exc}") from None
    return dest
