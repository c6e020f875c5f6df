"""Backups that leave the hosts: each host's backup set copied to S3, its retention there, fetching it back for
`rollback --restore-db`, and RDS snapshots before a migration (restored into a new instance on request).

The flow table lists these as commands (`commands_for` returns them, so the dry run shows them); they are
carried out from the bot by OffsiteFleet, a fleet around the real one whose targets take these ops and pass
every other command through. The bot signs a URL for each object a host PUTs or GETs (valid
aws.presign_seconds), so no credential reaches a host; the URLs reach the host's command on its stdin, never in
any process list there (bot/engine/stdin_urls.py), and the signature is masked wherever deploybot shows one
(bot/redact.py).
"""

from __future__ import annotations

import threading
from shlex import quote as q

from bot.config import Environment, Host
from bot.domain import Kind, Stage
from bot.engine import commands, stdin_urls
from bot.targets.base import Command

S3_UPLOAD, S3_FETCH, S3_PRUNE, RDS_RESTORE = "s3_backup", "s3_fetch", "s3_prune", "rds_restore"
OPS = (S3_UPLOAD, S3_FETCH, S3_PRUNE, Stage.SNAPSHOT, RDS_RESTORE)
_CURL = "-fsS --globoff --connect-timeout 10 --speed-limit 1024 --speed-time 30"  # curl's options


def set_name(stamp: str, current: str | None) -> str:
    """The folder commands.backup makes: backups/<stamp>-<release> (stamp: 20261124T091600-d42)."""
    return f"{stamp}-{current or 'none'}"


def where(env: Environment, app: str) -> str:
    s3 = env.backup.s3
    return f"s3://{s3.bucket}/{s3.prefix}{app}/{env.name}/" if s3 else ""


# ---- what the flow table lists ----------------------------------------------------------------------------
def after_backup(app: str, env: Environment, host: Host, stamp: str, current: str | None) -> list[Command]:
    if env.backup.s3 is None:
        return []
    name = set_name(stamp, current)
    shell = pack_and_put(env.host_path(host), name, host.name)
    text = (
        f"# copy to {where(env, app)}{name}/{host.name}.tar (+ .sha256), then the bot checks the object; "
        f"the presigned PUT URLs come on stdin\n{shell}"
    )
    return [Command(S3_UPLOAD, text, name)]


def at_cleanup(app: str, env: Environment, first: bool) -> list[Command]:
    s3 = env.backup.s3
    if s3 is None or not first:
        return []
    text = f"delete the sets under {where(env, app)} older than {s3.keep_days} days (never the newest)"
    return [Command(S3_PRUNE, text)]


def before_restore(app: str, env: Environment, version: str) -> list[Command]:
    """Restoring a set the host no longer has: fetch the newest of that release from S3 first."""
    if env.backup.s3 is None or not env.backup.restore_commands:
        return []
    text = (
        f"if no backup set of {version} is on this host: GET the newest from {where(env, app)} (presigned URL), "
        "check its sha256 and SHA256SUMS, unpack it into backups/"
    )
    return [Command(S3_FETCH, text, version)]


def snapshot(env: Environment, deployment_id: int, stamp: str) -> list[Command]:
    from bot.aws.rds import snapshot_name

    rds = env.backup.rds_snapshot
    assert rds is not None, "the snapshot step is planned only with backup.rds_snapshot"
    name = snapshot_name(rds.instance, deployment_id, stamp)
    text = f"create RDS snapshot {name} of {rds.instance}; wait until available (at most {rds.wait_seconds:g}s)"
    return [Command(Stage.SNAPSHOT, text, name)]


def restore_snapshot(env: Environment, version: str) -> list[Command]:
    rds = env.backup.rds_snapshot
    if rds is None:
        return []
    text = (
        f"restore the RDS snapshot of {rds.instance} taken before the first migration after {version} into a NEW "
        f"DB instance (restore_db_instance_from_db_snapshot); {rds.instance} is left as it is"
    )
    return [Command(RDS_RESTORE, text, version)]


def snapshots(plan) -> bool:
    """The snapshot step: a deploy that migrates, with backup.rds_snapshot."""
    return plan.kind is Kind.DEPLOY and bool(plan.env.migrate) and plan.env.backup.rds_snapshot is not None


# ---- the host's side ----------------------------------------------------------------------------------------
def pack_and_put(path: str, name: str, host: str) -> str:
    """Tar the set, checksum it, PUT both through the presigned URLs on stdin (the set's, then its .sha256's);
    print what the bot checks S3 against."""
    backups, incoming = f"{path}/backups", commands.incoming_dir(path)
    return "\n".join(
        [
            "set -e",
            stdin_urls.read("put", "put_sha"),
            f'if [ ! -d {q(backups + "/" + name)} ]; then echo "no backup set {name} here: nothing to upload"; '
            'echo "uploaded=none"; exit 0; fi',
            'command -v curl >/dev/null 2>&1 || { echo "backup.s3 needs curl on the host" >&2; exit 9; }',
            f"mkdir -p {q(incoming)}",
            f"f={q(f'{incoming}/backup-{name}.tar')}",
            """trap 'rm -f "$f" "$f.sha256"' EXIT""",
            f'tar -cf "$f" -C {q(backups)} {q(name)}',
            "sha=$(sha256sum \"$f\" | cut -d' ' -f1)",
            f'printf \'%s  %s\\n\' "$sha" {q(host + ".tar")} > "$f.sha256"',
            stdin_urls.curl_for("put", f'{_CURL} -T "$f" -o /dev/null'),
            stdin_urls.curl_for("put_sha", f'{_CURL} -T "$f.sha256" -o /dev/null'),
            'echo "uploaded sha256=$sha md5=$(md5sum "$f" | cut -d\' \' -f1) size=$(wc -c < "$f" | tr -d \' \')"',
        ]
    )


def fetch_set(path: str, name: str, sha256: str) -> str:
    """Download a set (from the presigned URL on stdin), check it against its published sha256 and its own
    SHA256SUMS, then move it into backups/."""
    backups, incoming = f"{path}/backups", commands.incoming_dir(path)
    tmp = f"{backups}/.{name}.tmp"
    return "\n".join(
        [
            "set -e",
            stdin_urls.read("url"),
            f"mkdir -p {q(incoming)} {q(backups)}",
            f"f={q(f'{incoming}/restore-{name}.tar')}",
            f"""trap 'rm -rf "$f" {q(tmp)}' EXIT""",
            stdin_urls.curl_for("url", f'{_CURL} -o "$f"'),
            "got=$(sha256sum \"$f\" | cut -d' ' -f1)",
            f'if [ "$got" != {q(sha256)} ]; then echo "checksum mismatch: expected {sha256}, got $got" >&2; exit 5; fi',
            f'rm -rf {q(tmp)} && mkdir -p {q(tmp)} && tar -xf "$f" -C {q(tmp)}',
            f"(cd {q(tmp + '/' + name)} && sha256sum -c --quiet SHA256SUMS)",
            f"mv {q(tmp + '/' + name)} {q(backups + '/' + name)}",
            f'echo "fetched {name} (sha256 {sha256})"',
        ]
    )


def has_set(path: str, version: str) -> Command:
    return Command(
        S3_FETCH, f"ls -1d {q(path + '/backups')}/*-{q(version)} 2>/dev/null | sort | tail -n 1; true", version
    )


class Records:
    """What the deployment's audit row names: each host's S3 key, the snapshot, the sets pruned. Thread-safe."""

    def __init__(self) -> None:
        self._lock, self.data = threading.Lock(), {}

    def add(self, key: str, value, host: str | None = None) -> None:
        with self._lock:
            if host is None:
                self.data[key] = value
            else:
                self.data.setdefault(key, {})[host] = value
