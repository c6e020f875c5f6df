"""Backups: the sets an environment has (on each host and in S3), and the RDS snapshot a rollback would restore.

A set is what one deploy's backup stage made on a host, `backups/<UTC time>-d<deployment>-<release>` (the
release that ran when it was taken); with `backup.s3` every host's copy is also in S3 (bot/aws/backups.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from bot.config import Environment, Host
from bot.domain import Kind, State
from bot.redact import redact
from bot.service.base import UseCases


@dataclass(frozen=True)
class BackupSet:
    name: str  # 20261124T091600-d42-v1.0.0
    at: datetime | None  # when it was taken (UTC), from its name
    release: str | None  # what ran when it was taken
    deployment_id: int | None  # the deploy that took it
    size: int  # bytes (on a host: its disk use)
    where: str  # `h1:/srv/app/backups/<name>` or `s3://bucket/key`


@dataclass(frozen=True)
class BackupListing:
    environment: str
    sets: list[BackupSet]  # newest first
    problems: list[str]  # hosts or S3 that could not be read, and why


def _parsed(name: str) -> tuple[datetime | None, int | None, str | None]:
    from bot.aws.backups import parse_set

    try:
        return parse_set(name)
    except ValueError:
        return None, None, None


class Backups(UseCases):
    def snapshot_for(self, env_name: str, version: str) -> dict | None:
        """The RDS snapshot `rollback --restore-db` to `version` would restore (see snapshot_since)."""
        return snapshot_since(self.store, self.environment(env_name), version)

    def list(self, env_name: str) -> BackupListing:
        """Every set of the environment: read live on each host (in parallel) and listed in S3."""
        from bot.targets.pool import on_hosts

        env = self.environment(env_name)
        problems: list[str] = []

        def read(host: Host) -> list[BackupSet]:
            res = self.ctx.pool.get(env, host).run(_list_command(env.host_path(host), env.ssh.connect_timeout + 20))
            if not res.ok:
                problems.append(f"{host.name}: {redact(res.describe())}")
                return []
            return [_local(host, env.host_path(host), line) for line in res.stdout.splitlines() if line.strip()]

        sets = [s for found in on_hosts(self.hosts(env), read, env.ssh.parallel) for s in found]
        if env.backup.s3 is not None:
            from bot.aws.backups import list_sets
            from bot.aws.session import AWSError

            try:
                stored = list_sets(self.config.aws, env.backup.s3, self.config.app.name, env_name)
            except AWSError as exc:
                problems.append(redact(str(exc)))
                stored = []
            sets += [BackupSet(s.name, s.at, s.release, s.deployment_id, s.size, s.location) for s in stored]
        oldest = datetime.min.replace(tzinfo=UTC)
        sets.sort(key=lambda s: (s.at or oldest, s.name, s.where), reverse=True)
        return BackupListing(env_name, sets, sorted(problems))


def _list_command(path: str, timeout: float):
    from shlex import quote

    from bot.targets.base import Command

    return Command(
        "list_backups",
        f"cd {quote(path + '/backups')} 2>/dev/null || exit 0\n"
        'for b in *; do [ -d "$b" ] || continue; case "$b" in .*) continue;; esac; '
        'echo "$(du -sk "$b" | cut -f1) $b"; done',
        timeout=timeout,
    )


def _local(host: Host, path: str, line: str) -> BackupSet:
    kb, _, name = line.strip().partition(" ")
    at, deployment_id, release = _parsed(name)
    size = int(kb) * 1024 if kb.isdigit() else 0
    return BackupSet(name, at, release, deployment_id, size, f"{host.name}:{path}/backups/{name}")


def snapshot_since(store, env: Environment, version: str) -> dict | None:
    """The RDS snapshot a rollback to `version` restores: the one the first deploy after `version` last ran took
    before migrating (the database as `version` knew it). {"snapshot", "of", "instance" (the new one)}, or None."""
    rds = env.backup.rds_snapshot
    if rds is None:
        return None
    from bot.aws.rds import restored_name

    history = store.list_deployments(env.name, limit=500)
    ran = [d.id for d in history if d.version == version and d.state is State.SUCCEEDED]
    if not ran:
        return None
    taken = [d for d in history if d.kind is Kind.DEPLOY and d.id > ran[0] and d.meta.get("rds_snapshot")]
    if not taken:
        return None
    first = min(taken, key=lambda d: d.id)
    return {
        "snapshot": first.meta["rds_snapshot"],
        "of": rds.instance,
        "instance": restored_name(rds.instance, first.id),
    }
