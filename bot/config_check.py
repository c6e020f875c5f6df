"""Checks that need more than one field at a time, or the local disk: the second half of check-config."""

from __future__ import annotations

import string
from collections.abc import Callable
from pathlib import Path

from bot.aws.config import EC2_VARS, is_s3
from bot.config import Config, Environment, is_url


def _placeholders(template: str | None) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template or "") if name}


def problems(cfg: Config) -> list[str]:
    found: list[str] = []
    artifact = cfg.app.artifact
    by_ssh = any(not e.ecs for e in cfg.environments.values())  # an ECS service never reads the artifact
    if by_ssh and not is_url(artifact) and not is_s3(artifact):
        folder = Path(artifact.split("{version}")[0]).parent if "/" in artifact else Path(".")
        if not folder.is_dir():
            found.append(f"app.artifact: folder {folder} does not exist")
    for name, env in cfg.environments.items():
        at = f"environments.{name}"
        found += _blue_green(env, at)
        if env.ec2 is not None:  # hosts found when planned: check the templates against what every one will have
            known = {"host", "name", *EC2_VARS, *_slot_vars(env)}
            for field, template in (("path", env.path), ("health.url", env.health.url)):
                if _placeholders(template) - known:
                    found.append(
                        f"{at}.{field}: {{{', '.join(sorted(_placeholders(template) - known))}}} is not "
                        f"defined for EC2 hosts (they have {', '.join(sorted(known))})"
                    )
        for i, host in enumerate(env.hosts):
            known = set(host.template_vars()) | _slot_vars(env)
            for field, template in (("path", env.path), ("health.url", env.health.url)):
                missing = _placeholders(template) - known
                if missing:
                    found.append(
                        f"{at}.{field}: {{{', '.join(sorted(missing))}}} is not defined for hosts[{i}] ({host.name})"
                    )
        remote = None if env.ecs else [h for h in env.hosts if not h.is_local] or env.ec2
        if remote and env.ssh.key_file and not Path(env.ssh.key_file).is_file():
            found.append(f"{at}.ssh.key_file: {env.ssh.key_file} does not exist")
        if remote and not env.ssh.accept_unknown_hosts:
            known_hosts = env.ssh.known_hosts or Path.home() / ".ssh" / "known_hosts"
            if not Path(known_hosts).is_file():
                found.append(
                    f"{at}.ssh.known_hosts: {known_hosts} does not exist (host keys are verified; "
                    "set ssh.accept_unknown_hosts: true to opt out)"
                )
        if env.traffic and (  # EC2 hosts are known when planned (every balancer refuses to drain its last server)
            env.strategy.kind not in ("rolling", "canary")
            or (not env.ec2 and env.strategy.batch_size >= len(env.hosts))
        ):
            found.append(
                f"{at}.traffic: draining needs strategy rolling (or canary) with batches smaller than the "
                f"{len(env.hosts)} hosts, so some always stay in service"
            )
        if env.strategy.kind == "rolling" and env.strategy.batch_size >= len(env.hosts) > 1:
            found.append(
                f"{at}.strategy.batch_size: {env.strategy.batch_size} covers every host; use in-place "
                "or a smaller batch"
            )
        users = [a for a in env.approval.approvers if not a.startswith("S")]
        groups = [a for a in env.approval.approvers if a.startswith("S")]
        if env.approval.enabled and not groups and env.approval.approvals_required > len(users):
            found.append(
                f"{at}.approval.approvals_required: {env.approval.approvals_required} approvals needed "
                f"but only {len(users)} approvers listed"
            )
        paths = {env.host_path(h) for h in env.hosts if not _placeholders(env.path) - set(h.template_vars())}
        if len(env.hosts) > 1 and all(h.is_local for h in env.hosts) and len(paths) < len(env.hosts):
            found.append(f"{at}.path: local hosts share one path; put {{name}} in it")
    found += _region(cfg)
    return found


def _slot_vars(env: Environment) -> set[str]:
    """blue-green: {port} in the health URL is each slot's port (or the host's proxy's)."""
    return {"port"} if env.strategy.kind == "blue-green" else set()


def _blue_green(env: Environment, at: str) -> list[str]:
    """What a blue-green environment needs beyond its own fields (those pydantic checks: two slots with distinct
    ports, the proxy's file and its test and reload commands, a stop command or keep_old_slot)."""
    if env.strategy.kind != "blue-green":
        return []
    found = []
    if "port" not in _placeholders(env.health.url):
        found.append(
            f"{at}.health.url: blue-green checks each slot on its own port before traffic moves; put {{port}} "
            "where the port goes (http://{host}:{port}/health)"
        )
    return found


def _region(cfg: Config) -> list[str]:
    """EC2, CloudWatch and Secrets Manager need a region (S3 can do without); boto3 finds it without calling AWS."""
    needs = (
        e.ec2 or e.alarms or e.secrets_manager or e.ecs or e.backup.rds_snapshot for e in cfg.environments.values()
    )
    if not (any(needs) or cfg.aws.metrics) or cfg.aws.region:
        return []
    import boto3

    if boto3.session.Session().region_name:
        return []
    return [
        "aws.region: no AWS region is set (aws.region in deploy.yml, AWS_REGION or AWS_DEFAULT_REGION, or the "
        "profile's region); EC2, ECS, CloudWatch, Secrets Manager and RDS need one"
    ]


def _hosts(env: Environment) -> str:
    if env.ecs:
        return f"ECS service {env.ecs.service} in cluster {env.ecs.cluster}"
    return f"EC2 instances tagged {env.ec2.describe()}" if env.ec2 else f"{len(env.hosts)} hosts"


def report(cfg: Config, echo: Callable[..., None]) -> int:
    """check-config's lines: every problem (on stderr), or one ok line naming the environments; how many problems."""
    found = problems(cfg)
    for problem in found:
        echo(f"config error: {problem}", err=True)
    if not found:
        envs = ", ".join(f"{n} ({_hosts(e)})" for n, e in cfg.environments.items())
        echo(f"ok: {cfg.app.name}: {envs}")
    return len(found)
