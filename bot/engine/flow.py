"""The flow table: every deployment is this one short list of phases, as Capistrano's framework tasks are.

A deploy is starting / updating / publishing / verifying / finishing. A rollback is the same list with
reverting in place of updating. An automatic revert is publishing again, with each host's previous release.
Plan.stages, --dry-run (Plan.describe) and the Pipeline all iterate FLOW, and `commands_for` is the only place
that says what a step runs on a host, so the plan printed is the plan that runs. Adding a stage is one Step
here plus its commands below; a strategy decides how publishing walks the hosts (Plan.batches).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.config import Host
from bot.domain import Kind, Phase, Stage
from bot.engine import commands, ecs_commands, gates, offsite, slots
from bot.targets.base import Command, put_command

if TYPE_CHECKING:
    from bot.engine.plan import Plan

UNKNOWN = "<current>"  # what a host's current release is called before preflight has read it (dry run)


def _always(plan: Plan) -> bool:
    return True


def _all_hosts(plan: Plan) -> list[Host]:
    return list(plan.hosts)


def _first_host(plan: Plan) -> list[Host]:
    return list(plan.hosts[:1])


@dataclass(frozen=True)
class Step:
    stage: Stage
    when: Callable[[Plan], bool] = _always  # is this step part of that plan?
    hosts: Callable[[Plan], list[Host]] = _all_hosts
    must_pass: bool = True  # a failure stops the deployment (cleanup's does not)
    barrier: bool = False  # in a chained phase: every host of the batch finishes this step before any goes on
    first_batch_only: bool = False  # the canary's window: its batch alone, and never repeated by a revert


@dataclass(frozen=True)
class PhaseRow:
    phase: Phase
    steps: tuple[Step, ...]
    kinds: tuple[Kind, ...] = (Kind.DEPLOY, Kind.ROLLBACK)
    per_batch: bool = False  # publishing: the strategy's batches, one chain of steps per host


def _deploying(plan: Plan) -> bool:
    return plan.kind is Kind.DEPLOY


def _not_warm(plan: Plan) -> bool:
    """A blue-green rollback to slots that already run the release and answer healthy is only the flip."""
    return not plan.warm_slots


def _balanced(plan: Plan) -> bool:
    """A balancer fronts the hosts: each batch leaves it before switching and comes back once healthy."""
    return plan.env.traffic is not None


FLOW: tuple[PhaseRow, ...] = (
    PhaseRow(Phase.STARTING, (Step(Stage.PREFLIGHT, when=_not_warm), Step(Stage.BACKUP, when=_deploying))),
    PhaseRow(
        Phase.UPDATING,
        (
            Step(Stage.UPLOAD),
            Step(Stage.SNAPSHOT, when=offsite.snapshots, hosts=_first_host),  # from the bot: RDS, before migrating
            Step(
                Stage.MIGRATE,
                when=lambda p: bool(p.env.migrate),
                hosts=lambda p: list(p.hosts) if p.env.migrate_on == "all" else list(p.hosts[:1]),
            ),
        ),
        kinds=(Kind.DEPLOY,),
    ),
    PhaseRow(
        Phase.REVERTING,
        (Step(Stage.RESTORE_DB, when=lambda p: bool(p.restore_db_from), hosts=_first_host),),
        kinds=(Kind.ROLLBACK,),
    ),
    PhaseRow(
        Phase.PUBLISHING,
        (
            Step(Stage.DRAIN, when=_balanced, barrier=True),
            Step(Stage.SWITCH, when=_not_warm),
            Step(Stage.RESTART, when=_not_warm),
            Step(Stage.HEALTH, when=_not_warm),
            Step(Stage.FLIP, when=lambda p: slots.is_blue_green(p.env)),
            Step(Stage.RESTORE, when=_balanced),
            Step(Stage.CANARY, when=lambda p: _deploying(p) and p.env.strategy.kind == "canary", first_batch_only=True),
        ),
        per_batch=True,
    ),
    PhaseRow(Phase.VERIFYING, (Step(Stage.VERIFY, when=lambda p: _deploying(p) and p.env.verify_seconds > 0),)),
    PhaseRow(
        Phase.FINISHING,
        (
            # blue-green: the old slot served through the window; stopped now unless kept warm for a rollback
            Step(
                Stage.RETIRE,
                when=lambda p: slots.is_blue_green(p.env) and not p.env.strategy.keep_old_slot,
                must_pass=False,
            ),
            Step(Stage.CLEANUP, when=_deploying, must_pass=False),
        ),
    ),
)
PUBLISHING = next(row for row in FLOW if row.phase is Phase.PUBLISHING)


def rows(plan: Plan) -> list[PhaseRow]:
    """The phases of this plan, each with only the steps that apply to it; empty phases left out."""
    out = []
    for row in FLOW:
        steps = tuple(s for s in row.steps if s.when(plan) and (not plan.env.ecs or s.stage in ecs_commands.STAGES))
        if plan.kind in row.kinds and steps:
            out.append(PhaseRow(row.phase, steps, row.kinds, row.per_batch))
    return out


def groups(steps: tuple[Step, ...], first_batch: bool = True) -> list[tuple[Step, ...]]:
    """A chained phase split after each barrier step: (drain) then (switch, restart, health, restore[, canary]);
    the canary's window only in the first batch."""
    groups, current = [], []
    for step in (s for s in steps if first_batch or not s.first_batch_only):
        current.append(step)
        if step.barrier:
            groups.append(tuple(current))
            current = []
    return [*groups, tuple(current)] if current else groups


def stages(plan: Plan) -> list[Stage]:
    return [step.stage for row in rows(plan) for step in row.steps]


def commands_for(
    stage: Stage,
    plan: Plan,
    host: Host,
    *,
    current: str | None,
    version: str | None = None,
    stamp: str = "",
    host_slots: slots.HostSlots | None = None,
) -> list[Command]:
    """What `stage` runs on `host`, in order: shell commands, a file put, or a health check made from the bot.
    `current` is what the host ran before (read by preflight), `version` the release to publish (the plan's,
    or the previous one when reverting); `host_slots` what a blue-green host's slots hold (dry run: an example)."""
    if plan.env.ecs and stage in ecs_commands.OWN:  # an ECS service: the same phases, ECS operations
        return ecs_commands.commands_for(stage, plan, current=current, version=version or plan.version)
    env, path = plan.env, plan.env.host_path(host)
    version = version or plan.version
    if stage in slots.STAGES and slots.is_blue_green(env):
        return slots.commands_for(stage, plan, host, host_slots, version)
    url = env.health_url(host)
    if stage is Stage.PREFLIGHT:
        artifact, shared = plan.artifact, plan.shared_env
        fetching = bool(artifact and artifact.fetched_by_hosts)
        check = commands.preflight(
            env,
            path,
            expect_current=plan.expect_current,
            need_release=plan.version if plan.kind is Kind.ROLLBACK else None,
            fetch_url=artifact.download_url() if fetching else None,
            ranged=fetching and artifact.signed,
            env_from_bot=shared.keys if shared else (),
        )
        if shared is None:
            return slots.preflight(env, path, [check])
        # values from a secret: sent as a file over SFTP, merged into shared/.env; never on a command line
        remote = f"{commands.incoming_dir(path)}/env.d{plan.deployment_id}"
        return slots.preflight(
            env,
            path,
            [
                check,
                Command("put", f"sftp put <{shared.describe()}> {remote}", files=(shared.path, remote)),
                commands.merge_env(path, remote, shared.keys),
            ],
        )
    if stage is Stage.BACKUP:
        return [
            commands.backup(path, stamp, current, env.backup),
            *offsite.after_backup(plan.app, env, host, stamp, current),
        ]
    if stage is Stage.SNAPSHOT:
        return offsite.snapshot(env, plan.deployment_id, stamp)
    if stage is Stage.UPLOAD:
        artifact = plan.artifact
        assert artifact is not None, "a deploy plan has an artifact"
        remote = f"{commands.incoming_dir(path)}/{artifact.name}.d{plan.deployment_id}"
        if artifact.fetched_by_hosts:
            return [commands.unpack(path, remote, artifact.sha256, version, download_from=artifact.download_url())]
        assert artifact.local is not None
        return [
            commands.prepare_upload(path),
            put_command(artifact.local, remote),
            commands.unpack(path, remote, artifact.sha256, version),
        ]
    if stage is Stage.MIGRATE:
        return [commands.in_release(Stage.MIGRATE, path, version, env.migrate or "")]
    if stage is Stage.RESTORE_DB:
        of = plan.restore_db_from or version
        by_rds_only = env.backup.rds_snapshot is not None and not env.backup.restore_commands
        on_host = [] if by_rds_only else [commands.restore_db(path, of, env.backup.restore_commands)]
        return [*offsite.before_restore(plan.app, env, of), *on_host, *offsite.restore_snapshot(env, of)]
    if stage is Stage.SWITCH:
        return [commands.switch(path, version)]
    if stage is Stage.RESTART:
        return [commands.in_release(Stage.RESTART, path, version, env.restart)]
    if stage is Stage.HEALTH:
        return [
            Command(
                Stage.HEALTH,
                f"GET {url} until it answers version {version} "
                f"(every {env.health.interval:g}s, at most {env.health.timeout:g}s)",
                version,
            )
        ]
    if stage in (Stage.VERIFY, Stage.CANARY):
        return gates.window_commands(stage, plan, host, version)
    if stage in (Stage.DRAIN, Stage.RESTORE):
        t = env.traffic
        assert t is not None, "drain and restore are steps only where a balancer is configured"
        where = {"haproxy": f"haproxy backend {t.backend}", "nginx": f"nginx {t.upstream_file}"}.get(
            t.balancer, f"target group {t.target_group_arn}"
        )
        if stage is Stage.DRAIN:
            return [
                Command(
                    Stage.DRAIN,
                    f"take {host.name} out of {where}, then wait up to {t.drain_timeout:g}s for its requests in flight",
                )
            ]
        healthy = (
            f", then wait up to {t.healthy_timeout:g}s until it is healthy" if t.balancer == "target-group" else ""
        )
        return [Command(Stage.RESTORE, f"put {host.name} back into {where}{healthy}")]
    if stage is Stage.CLEANUP:
        keep = [plan.version, current or ""]
        first = host == plan.hosts[0]
        return [commands.cleanup(path, env.keep_releases, keep, env.backup), *offsite.at_cleanup(plan.app, env, first)]
    raise ValueError(f"no commands for stage {stage}")
