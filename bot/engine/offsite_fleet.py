"""OffsiteFleet: the fleet a run with offsite backups goes through. Its targets carry out the ops of
bot/engine/offsite.py from the bot (signing URLs, checking and pruning S3, RDS snapshots) and run the host's part
through the real target, under the deployment's tag; every other command passes through untouched."""

from __future__ import annotations

import re
from collections.abc import Callable

from bot.aws.config import AWSSettings
from bot.config import Environment, Host
from bot.domain import Stage
from bot.engine import offsite, stdin_urls
from bot.engine.plan import Plan
from bot.targets.base import Command, Result, Target

_UPLOADED = re.compile(r"uploaded sha256=([0-9a-f]{64}) md5=([0-9a-f]{32}) size=(\d+)")


class OffsiteFleet:
    """`fleet` with the offsite ops carried out. `restore_snapshot`: {"snapshot", "instance"} a rollback restores
    (resolved by the service when the rollback was asked); `records` is what the audit row names."""

    def __init__(
        self,
        fleet,
        plan: Plan,
        aws: AWSSettings,
        restore_snapshot: dict | None = None,
        stopping: Callable[[], bool] = lambda: False,
    ):
        self.fleet, self.plan, self.aws = fleet, plan, aws
        self.restore_snapshot, self.stopping = restore_snapshot, stopping
        self.records = offsite.Records()

    def get(self, env: Environment, host: Host) -> Target:
        return _OffsiteTarget(self, env, host, self.fleet.get(env, host))

    def probe(self, *args, **kwargs):
        return self.fleet.probe(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.fleet, name)

    # ---- the ops ------------------------------------------------------------------------------------------
    def execute(self, env: Environment, host: Host, inner: Target, command: Command) -> Result:
        from bot.aws.session import AWSError

        try:
            if command.op == offsite.S3_UPLOAD:
                return self._upload(env, host, inner, command)
            if command.op == offsite.S3_FETCH:
                return self._fetch(env, host, inner, command)
            if command.op == offsite.S3_PRUNE:
                return self._prune(env, host, command)
            if command.op == Stage.SNAPSHOT:
                return self._snapshot(env, host, command)
            return self._restore_snapshot(host, command)
        except AWSError as exc:
            return Result(host.name, command, None, error=str(exc))

    def _upload(self, env: Environment, host: Host, inner: Target, command: Command) -> Result:
        from bot.aws import backups

        cfg, name = env.backup.s3, command.version or ""
        key = backups.key_for(cfg, self.plan.app, env.name, name, host.name)
        put = backups.presigned(self.aws, "PUT", cfg.bucket, key)
        put_sha = backups.presigned(self.aws, "PUT", cfg.bucket, key + backups.SHA_SUFFIX)
        shell = offsite.pack_and_put(env.host_path(host), name, host.name)
        urls = stdin_urls.lines(put, put_sha)
        res = inner.run(Command(command.op, shell, name, command.timeout, tag=command.tag, stdin=urls))
        if not res.ok:
            return Result(host.name, command, res.exit_code, res.stdout, res.stderr, res.error)
        if "uploaded=none" in res.stdout:
            return Result(host.name, command, 0, res.stdout)
        found = _UPLOADED.search(res.stdout)
        if not found:
            return Result(host.name, command, 1, res.stdout, "the host did not report the upload", "")
        sha, md5, size = found[1], found[2], int(found[3])
        backups.check_uploaded(self.aws, cfg.bucket, key, size, sha, md5)
        location = f"s3://{cfg.bucket}/{key}"
        self.records.add("s3_backups", location, host.name)
        return Result(host.name, command, 0, f"uploaded {location} ({size} bytes, sha256 {sha})")

    def _fetch(self, env: Environment, host: Host, inner: Target, command: Command) -> Result:
        from bot.aws import backups

        path, version = env.host_path(host), command.version or ""
        local = inner.run(Command(command.op, offsite.has_set(path, version).shell, version, tag=command.tag))
        if local.ok and local.stdout.strip():
            return Result(host.name, command, 0, f"backup set {local.stdout.strip()} is on this host")
        stored = backups.newest_of(
            backups.list_sets(self.aws, env.backup.s3, self.plan.app, env.name), version, host.name
        )
        if stored is None:
            missing = f"no backup of {version} on this host, nor in {offsite.where(env, self.plan.app)}"
            return Result(host.name, command, 8, stderr=missing)
        sha = backups.read_sha256(self.aws, stored)
        url = backups.presigned(self.aws, "GET", stored.bucket, stored.key)
        shell, urls = offsite.fetch_set(path, stored.name, sha), stdin_urls.lines(url)
        res = inner.run(Command(command.op, shell, version, tag=command.tag, stdin=urls))
        if res.ok:
            self.records.add("s3_restored_from", stored.location)
        return Result(host.name, command, res.exit_code, f"{res.stdout}\nfrom {stored.location}", res.stderr, res.error)

    def _prune(self, env: Environment, host: Host, command: Command) -> Result:
        from bot.aws import backups

        removed = backups.prune(self.aws, env.backup.s3, self.plan.app, env.name)
        self.records.add("s3_pruned", removed)
        text = "\n".join(f"removed S3 backup set {n}" for n in removed)
        return Result(host.name, command, 0, text or f"no S3 backup set older than {env.backup.s3.keep_days} days")

    def _snapshot(self, env: Environment, host: Host, command: Command) -> Result:
        from bot.aws import rds

        cfg, name = env.backup.rds_snapshot, command.version or ""
        tags = {"deploybot:app": self.plan.app, "deploybot:environment": env.name}
        rds.create_snapshot(
            self.aws, cfg.instance, name, {**tags, "deploybot:deployment": str(self.plan.deployment_id)}
        )
        rds.wait_available(self.aws, name, cfg.wait_seconds, cfg.interval, self.stopping)
        self.records.add("rds_snapshot", name)
        self.records.add("rds_instance", cfg.instance)
        return Result(host.name, command, 0, f"RDS snapshot {name} of {cfg.instance} is available")

    def _restore_snapshot(self, host: Host, command: Command) -> Result:
        from bot.aws import rds

        chosen = self.restore_snapshot
        if not chosen:
            return Result(host.name, command, 0, f"no RDS snapshot taken since {command.version}: nothing to restore")
        status = rds.restore(self.aws, chosen["snapshot"], chosen["instance"])
        self.records.add("rds_restored", {"snapshot": chosen["snapshot"], "instance": chosen["instance"]})
        return Result(
            host.name,
            command,
            0,
            f"restoring RDS snapshot {chosen['snapshot']} into the new DB instance {chosen['instance']} ({status}); "
            "point the app at it once it is available",
        )


class _OffsiteTarget:
    def __init__(self, owner: OffsiteFleet, env: Environment, host: Host, inner: Target):
        self.owner, self.env, self.host, self.inner = owner, env, host, inner
        self.name = getattr(inner, "name", host.name)

    def run(self, command: Command) -> Result:
        if command.op in offsite.OPS:
            return self.owner.execute(self.env, self.host, self.inner, command)
        return self.inner.run(command)

    def put(self, local, remote: str) -> Result:
        return self.inner.put(local, remote)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str):
        return getattr(self.inner, name)
