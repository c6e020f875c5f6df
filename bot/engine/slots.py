"""Blue-green slots on each host: two releases side by side, each on its own port, behind the host's own nginx.

Layout beside Capistrano's: {path}/slots/<slot> -> ../releases/<v>, and {path}/current follows the live slot, so
status, preflight and rollbacks read it as ever. Which slot is live is one file nginx itself reads: the second
slot serves while {path}/slots/<second>.live exists, the first otherwise (the snippet below, included in the
app's nginx `server {}`, checks it on each request). A flip creates or removes that file: traffic moves at once,
with no reload; requests in flight finish on the slot they reached.

Publishing a release on a host: switch points the idle slot at the release, restart starts that slot (its own
PORT and APP_SLOT), health asks that slot's own URL for the version, and only then flip moves the marker. A
slot that already runs the release and answers healthy (the old slot during the verification window, or one
kept warm) is flipped to without switch or restart: a revert, or a rollback to it, is one command per host.
nginx is reloaded (gracefully, tested first) only when the snippet itself must change: the first flip on a
host, or new slot ports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from shlex import quote as q
from typing import TYPE_CHECKING

from bot.config import Environment, Host
from bot.domain import Stage
from bot.engine import commands, gates
from bot.targets.base import Command

if TYPE_CHECKING:
    from bot.engine.plan import Plan

LIVE_MARK, LINK_MARK = "live_slot=", "slot:"
NOTE = "note"  # a step with nothing to do on the host: said, not run
STAGES = frozenset({Stage.SWITCH, Stage.RESTART, Stage.HEALTH, Stage.FLIP, Stage.RETIRE})


@dataclass(frozen=True)
class Target:
    """Where one host's publish goes."""

    slot: str
    port: int
    old: str | None  # the slot serving before: flipped back to on a revert, stopped after the window
    warm: bool = False  # already runs the release and answers healthy: no switch, no restart


@dataclass
class HostSlots:
    """What a host's slots hold, as read by preflight and kept up to date by the steps that change it."""

    known: bool = False
    live: str | None = None
    links: dict[str, str | None] = field(default_factory=dict)  # slot -> the release it points at
    target: Target | None = None

    def read(self, stdout: str) -> None:
        for line in stdout.splitlines():
            if line.startswith(LIVE_MARK):
                self.live, self.known = line[len(LIVE_MARK) :].strip() or None, True
            elif line.startswith(LINK_MARK):
                slot, _, version = line[len(LINK_MARK) :].partition("=")
                self.links[slot] = version.strip() or None

    def port_for(self, op: str) -> int | None:
        """The port a health check asks: the slot being published; None for the proxy's (what users reach)."""
        return self.target.port if op == Stage.HEALTH and self.target else None

    def ran(self, stage: Stage, version: str) -> None:
        """Record what a step that passed changed on the host."""
        if self.target and stage is Stage.SWITCH:
            self.links[self.target.slot] = version
        elif self.target and stage is Stage.FLIP:
            self.live = self.target.slot


def is_blue_green(env: Environment) -> bool:
    return env.strategy.kind == "blue-green"


def serving_stage(env: Environment) -> Stage:
    """The step after which a host serves the new release: a blue-green host only once its proxy flipped."""
    return Stage.FLIP if is_blue_green(env) else Stage.SWITCH


def choose(env: Environment, host: Host, seen: HostSlots, version: str, probe: Callable) -> Target:
    """A slot already on `version` and healthy is flipped to as it is; otherwise the idle slot gets it."""
    ports = env.strategy.slots or {}
    for slot, port in ports.items():
        if seen.links.get(slot) == version:
            answer = probe(env.health_url(host, port), env.health, version, timeout=min(1.0, env.health.timeout))
            if answer.ok:
                return Target(slot, port, seen.live if seen.live != slot else None, warm=True)
    idle = next(s for s in ports if s != seen.live)
    return Target(idle, ports[idle], seen.live)


def prepare(env: Environment, host: Host, seen: HostSlots, version: str, pool) -> Target:
    """Where this host's publish of `version` goes; what its slots hold is read first if preflight did not (a
    take-over reverting a run another process started)."""
    if not seen.known:
        res = pool.get(env, host).run(read(env, env.host_path(host)))
        if res.ok:
            seen.read(res.stdout)
    return choose(env, host, seen, version, pool.probe)


def example(env: Environment) -> HostSlots:
    """The dry run's host: the first slot live, so the commands shown publish on the second."""
    first, second = list(env.strategy.slots or {})
    return HostSlots(True, first, {first: "<current>"}, Target(second, env.strategy.slots[second], first))


def read(env: Environment, path: str) -> Command:
    """Read the live slot and what each slot points at (with `current`, as preflight's last word)."""
    first, second = list(env.strategy.slots or {})
    lines = [
        f"P={q(path)}",
        f'if [ -f {q(marker(env, path))} ]; then echo "{LIVE_MARK}{second}"; else echo "{LIVE_MARK}{first}"; fi',
    ]
    for slot in env.strategy.slots or {}:
        lines.append(f'l=$(readlink "$P/slots/{slot}" 2>/dev/null || true); echo "{LINK_MARK}{slot}=${{l##*/}}"')
    lines.append(f'cur=$(readlink "$P/current" 2>/dev/null || true); echo "{commands.CURRENT_MARK}${{cur##*/}}"')
    return Command(Stage.PREFLIGHT, "\n".join(lines), timeout=env.ssh.connect_timeout + 30)


def preflight(env: Environment, path: str, steps: list[Command]) -> list[Command]:
    """Preflight's commands, the last one also reading the slots on a blue-green host (no extra round trip)."""
    if not is_blue_green(env):
        return steps
    last = steps[-1]
    return [*steps[:-1], replace(last, shell=f"{last.shell}\n{read(env, path).shell}")]


def commands_for(stage: Stage, plan: Plan, host: Host, seen: HostSlots | None, version: str) -> list[Command]:
    """What a blue-green step runs on `host` (flow.commands_for hands these stages here)."""
    env, path = plan.env, plan.env.host_path(host)
    seen = seen or example(env)
    target = seen.target
    if target is None:  # a step of the chain ran without its switch: a bug, failed loudly rather than guessed at
        raise RuntimeError(f"{stage.value} on {host.name}: no slot was chosen (switch comes first)")
    if stage is Stage.RETIRE:
        old = target.old
        if not old or not seen.links.get(old):
            return [Command(NOTE, "no old slot to stop")]
        run = f"export APP_SLOT={q(old)} PORT={env.strategy.slots[old]} && {env.strategy.stop}"
        return [commands.in_release(Stage.RETIRE, path, seen.links[old], run)]
    if stage is Stage.HEALTH:
        url = env.health_url(host, target.port)
        return [
            Command(
                Stage.HEALTH,
                f"GET {url} (slot {target.slot}) until it answers version {version} "
                f"(every {env.health.interval:g}s, at most {env.health.timeout:g}s)",
                version,
            )
        ]
    if stage is Stage.FLIP:  # then ask through nginx: a proxy that ignores the marker must not pass unseen
        url = env.health_url(host)
        said = f"GET {url} until it answers version {version} (through the host's nginx: what users reach)"
        return [flip(env, path, target, version), Command(gates.THROUGH_PROXY, said, version)]
    if target.warm:
        said = "nothing to switch" if stage is Stage.SWITCH else "no restart"
        return [Command(NOTE, f"slot {target.slot} already runs {version} and answers healthy: {said}", version)]
    if stage is Stage.SWITCH:
        link = f"slots/{target.slot}"
        return [
            Command(
                Stage.SWITCH,
                f"cd {q(path)} && test -d {q('releases/' + version)} && mkdir -p slots && "
                f"ln -sfn {q('../releases/' + version)} {q(link + '.tmp')} && mv -Tf {q(link + '.tmp')} {q(link)} && "
                f"echo {q(f'slot {target.slot} -> releases/{version} (idle: nothing serves from it yet)')}",
                version,
            )
        ]
    run = f"export APP_SLOT={q(target.slot)} PORT={target.port} && {env.restart}"
    return [commands.in_release(Stage.RESTART, path, version, run)]


def marker(env: Environment, path: str) -> str:
    """The file whose presence makes the second slot live."""
    return f"{path}/slots/{list(env.strategy.slots or {})[1]}.live"


def snippet(env: Environment, path: str) -> str:
    """What the app's nginx `server {}` includes (the proxy's `config`): the live slot's address in a variable, by
    the marker. The file check is a stat per request; open_file_cache is off here so that no cache hides a flip."""
    proxy = env.strategy.proxy
    assert proxy is not None
    (first, one), (second, other) = (env.strategy.slots or {}).items()
    var = f"${proxy.variable}"
    return "\n".join(
        [
            f"# written by deploybot: slot {first} serves, or slot {second} while the marker below exists",
            "open_file_cache off;",
            f"set {var} 127.0.0.1:{one};",
            f"if (-f {marker(env, path)}) {{ set {var} 127.0.0.1:{other}; }}",
        ]
    )


def flip(env: Environment, path: str, target: Target, version: str) -> Command:
    """Send the host's traffic to the slot: check the slot holds the release, make sure nginx runs the current
    snippet (written, tested and reloaded gracefully only if it differs: a refusal puts the file back and nothing
    moves), then create or remove the marker and move `current` with it."""
    proxy = env.strategy.proxy
    assert proxy is not None
    limit = int(proxy.reload_timeout * 100)
    second = list(env.strategy.slots or {})[1]
    move = ': > "$M"' if target.slot == second else 'rm -f "$M"'
    said = f"live slot {target.slot} (port {target.port}) serves {version}"
    lines = [
        "set -e",
        f"P={q(path)}; F={q(proxy.config)}; M={q(marker(env, path))}",
        f'if [ "$(readlink "$P/slots/{target.slot}" 2>/dev/null)" != {q("../releases/" + version)} ]; then '
        f'echo "slot {target.slot} does not hold {version}: nothing flipped" >&2; exit 12; fi',
        f"want={q(snippet(env, path))}",
        'if [ "$(cat "$F" 2>/dev/null || true)" != "$want" ]; then',
        f"master=$(cat {q(proxy.pid_file)} 2>/dev/null || true); old=''",
        'if [ -n "$master" ]; then old=$(ps -o pid=,args= --ppid "$master" | '
        "awk '/worker process/ && !/shutting down/ {print $1}'); fi",
        'before=$(cat "$F" 2>/dev/null || true)',
        'printf \'%s\\n\' "$want" > "$F"',
        f'if ! out=$({proxy.test} 2>&1); then printf \'%s\\n\' "$before" > "$F"; printf \'%s\\n\' "$out" >&2; '
        f'echo "the proxy refused deploybot\'s snippet; $F was put back and traffic did not move" >&2; exit 10; fi',
        proxy.reload,
        # a worker from before is done taking requests once gone, a zombie, or titled "shutting down" (nginx tells
        # the old workers so about 0.1 s after the reload, once the new ones run); read from /proc, no ps per poll
        'gone() { read -r _ _ st _ 2>/dev/null < "/proc/$1/stat" || return 0; [ "$st" = Z ] || '
        'grep -q "shutting down" "/proc/$1/cmdline" 2>/dev/null; }',
        "n=0",
        f'for w in $old; do while [ $n -lt {limit} ] && ! gone "$w"; do sleep 0.01; n=$((n + 1)); done; done',
        f'if [ $n -ge {limit} ]; then echo "nginx did not take up $F within {proxy.reload_timeout:g}s of the reload '
        '(its workers from before still take requests); see its error log" >&2; exit 11; fi',
        "fi",
        move,
        f'ln -sfn {q("releases/" + version)} "$P/current.tmp" && mv -Tf "$P/current.tmp" "$P/current"',
        f"echo {q(said + (': it already ran, no restart' if target.warm else ''))}",
    ]
    return Command(Stage.FLIP, "\n".join(lines), version)


def warm(env: Environment, hosts, version: str, fleet) -> dict[str, Target] | None:
    """A rollback that only flips: on every host, a slot already answering `version` healthy (asked over HTTP,
    nothing over SSH; the flip itself checks the slot holds that release). None when a host has no such slot:
    that rollback takes the whole path, preflight, start and check on the idle slot."""
    from bot.targets.pool import on_hosts

    def find(host: Host) -> Target | None:
        for slot, port in (env.strategy.slots or {}).items():
            if fleet.probe(env.health_url(host, port), env.health, version, timeout=min(1.0, env.health.timeout)).ok:
                return Target(slot, port, None, warm=True)
        return None

    found = on_hosts(list(hosts), find, env.ssh.parallel)
    return None if None in found else {h.name: t for h, t in zip(hosts, found, strict=True)}
