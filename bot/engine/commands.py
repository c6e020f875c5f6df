"""The shell each stage runs on a host. Every value is quoted; versions were validated before we got here.

Layout as Capistrano: {path}/releases/<v>, {path}/current -> releases/<v>, {path}/shared, {path}/backups.
"""

from __future__ import annotations

from shlex import quote as q

from bot.config import Backup, Environment
from bot.domain import Stage
from bot.engine import stdin_urls
from bot.targets.base import Command

CURRENT_MARK = "current="


def _env_prelude(path: str, release: str, version: str) -> str:
    """cd into the release with the deploy variables and shared/.env exported, as the app itself will run."""
    shared = f"{path}/shared"
    return (
        f"cd {q(release)} && export APP_PATH={q(path)} APP_SHARED={q(shared)} "
        f"RELEASE_PATH={q(release)} DEPLOY_VERSION={q(version)} && "
        f"if [ -f {q(shared + '/.env')} ]; then set -a; . {q(shared + '/.env')}; set +a; fi && "
    )


def preflight(
    env: Environment,
    path: str,
    *,
    expect_current: bool,
    need_release: str | None = None,
    fetch_url: str | None = None,
    ranged: bool = False,
    env_from_bot: tuple[str, ...] = (),
) -> Command:
    """Read-only checks: disk, required env var names (never values), the current release, a release to return to,
    and, when the host will download the artifact, that it can: a HEAD request, so nothing is downloaded twice, or
    (`ranged`, for a presigned URL, which answers GET only) a GET of its first byte. Names in `env_from_bot` are
    about to be written into shared/.env (from a secret), so they are not looked for; a private folder is made to
    receive them."""
    env_file = f"{path}/shared/.env"
    lines = [
        *([stdin_urls.read("U")] if fetch_url else []),
        f"P={q(path)}",
        'd="$P"; while [ ! -d "$d" ]; do d=$(dirname "$d"); done',
        """free=$(df -Pk "$d" | awk 'NR==2{print $4}')""",
        f'if [ "$free" -lt {env.min_free_mb * 1024} ]; then '
        f'echo "only $((free / 1024)) MB free at $d, need {env.min_free_mb} MB" >&2; exit 3; fi',
    ]
    looked_for = [n for n in env.required_env if n not in env_from_bot]
    if looked_for:
        names = " ".join(q(n) for n in looked_for)
        lines += [
            'missing=""',
            f'for v in {names}; do grep -Eq "^(export +)?$v=" {q(env_file)} 2>/dev/null || missing="$missing $v"; done',
            f'if [ -n "$missing" ]; then echo "missing in {env_file}:$missing" >&2; exit 4; fi',
        ]
    lines.append('cur=$(readlink "$P/current" 2>/dev/null || true)')
    if expect_current:
        lines.append(
            'if [ -z "$cur" ]; then echo "no current release at $P/current: is the environment path right?" >&2; '
            "exit 6; fi"
        )
    if need_release:
        rel = f"{path}/releases/{need_release}"
        lines.append(f'if [ ! -d {q(rel)} ]; then echo "release {need_release} is not on this host" >&2; exit 7; fi')
    if fetch_url:
        probe = (
            {
                "curl": "-r 0-0 --connect-timeout 5 --max-time 15 -o /dev/null",
                "wget": "--header='Range: bytes=0-0' -T 15 -t 1 -O /dev/null",
            }
            if ranged
            else {"curl": "-I --connect-timeout 5 --max-time 15 -o /dev/null", "wget": "--spider -T 15 -t 1"}
        )
        lines.append(
            stdin_urls.http("U", **probe)
            + ' || { echo "this host cannot download the artifact (app.upload: fetch)" >&2; exit 9; }'
        )
    if env_from_bot:
        lines.append(f"(umask 077 && mkdir -p {q(incoming_dir(path))} && chmod 700 {q(incoming_dir(path))}) || exit 9")
    lines.append(f'echo "{CURRENT_MARK}${{cur##*/}}"')
    stdin = stdin_urls.lines(fetch_url) if fetch_url else None
    return Command(Stage.PREFLIGHT, "\n".join(lines), need_release, timeout=env.ssh.connect_timeout + 30, stdin=stdin)


def merge_env(path: str, incoming: str, keys: tuple[str, ...]) -> Command:
    """Merge the KEY=value lines just sent to `incoming` into shared/.env: those keys replaced, every other line
    kept, the file left mode 0600 and replaced in one rename. The values travel in the file, never in this command;
    it prints only the key names and the current release (this is preflight's last step)."""
    env_file = f"{path}/shared/.env"
    return Command(
        Stage.PREFLIGHT,
        "\n".join(
            [
                "set -e",
                "umask 077",
                f"f={q(incoming)}",
                f"E={q(env_file)}",
                """trap 'rm -f "$f" "$E.tmp"' EXIT""",
                f"mkdir -p {q(path + '/shared')}",
                'touch "$E"',
                # keep the lines whose key is not in the new file (with or without `export `), then add the new ones
                """awk 'NR == FNR { if (match($0, /^[A-Za-z_][A-Za-z0-9_]*=/)) """
                """new[substr($0, 1, RLENGTH - 1)] = 1; next }"""
                """ { l = $0; sub(/^export +/, "", l); if (match(l, /^[A-Za-z_][A-Za-z0-9_]*=/) && """
                '(substr(l, 1, RLENGTH - 1) in new)) next; print }\' "$f" "$E" > "$E.tmp"',
                'cat "$f" >> "$E.tmp"',
                'chmod 600 "$E.tmp"',
                'mv -f "$E.tmp" "$E"',
                f'echo "wrote {" ".join(keys)} into {env_file} (mode 0600)"',
                f'cur=$(readlink {q(path + "/current")} 2>/dev/null || true); echo "{CURRENT_MARK}${{cur##*/}}"',
            ]
        ),
    )


def parse_current(stdout: str) -> str | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(CURRENT_MARK):
            return line[len(CURRENT_MARK) :].strip() or None
    return None


def backup(path: str, stamp: str, current: str | None, cfg: Backup) -> Command:
    """Archive the current release and run the DB dump commands into one folder, then checksum and verify it.

    The release is archived uncompressed: it is an unpacked artifact, mostly compressed already (jars, images,
    the artifact's own gzip), and gzip cost 2 s of the two cores per 20-host deploy for a few percent of disk."""
    folder = f"{path}/backups/{stamp}-{current or 'none'}"
    lines = [
        "set -e",
        f"B={q(folder)}",
        'mkdir -p "$B"',
        "trap 'rc=$?; if [ $rc -ne 0 ]; then rm -rf \"$B\"; fi' EXIT",
    ]
    if current and cfg.release_archive:
        lines.append(f'tar -cf "$B/release.tar" -C {q(path + "/releases")} {q(current)}')
    for cmd in cfg.commands:
        lines.append(f'( export BACKUP_DIR="$B"; {_env_prelude(path, path, current or "")}{cmd} )')
    lines += [
        'cd "$B"',
        "find . -type f ! -name SHA256SUMS -exec sha256sum {} + > SHA256SUMS",
        'if [ ! -s SHA256SUMS ]; then cd / && rm -rf "$B" && echo "nothing to back up yet" && exit 0; fi',
        "sha256sum -c --quiet SHA256SUMS",
        'echo "backup=$B"',
        "cat SHA256SUMS",
    ]
    return Command(Stage.BACKUP, "\n".join(lines), current)


def incoming_dir(path: str) -> str:
    return f"{path}/.incoming"


def _folders(path: str) -> str:
    return f"mkdir -p {q(incoming_dir(path))} {q(path + '/releases')} {q(path + '/shared')}"


def prepare_upload(path: str) -> Command:
    return Command(Stage.UPLOAD, _folders(path))


def download(path: str, remote_file: str) -> str:
    """The host fetches the artifact itself (app.upload: fetch; the URL on stdin); unpack() checks it as an upload."""
    return "\n".join(
        [
            stdin_urls.read("U"),
            _folders(path) + " || exit 9",
            f"f={q(remote_file)}",
            # a store that stalls (under 1 KB/s for 30 s) is given up instead of holding the stage for command_timeout
            stdin_urls.http(
                "U",
                curl='--connect-timeout 10 --speed-limit 1024 --speed-time 30 -o "$f"',
                wget='-T 30 -t 1 -O "$f"',
            )
            + ' || { rm -f "$f"; echo "download of the artifact failed on this host" >&2; exit 9; }',
        ]
    )


def unpack(path: str, remote_file: str, sha256: str, version: str, download_from: str | None = None) -> Command:
    """Verify the checksum on the host, then unpack beside the final folder and move it in: never half a release."""
    rel = f"{path}/releases/{version}"
    lines = [download(path, remote_file)] if download_from else []
    return Command(
        Stage.UPLOAD,
        "\n".join(
            [
                *lines,
                "set -e",
                f"f={q(remote_file)}",
                "got=$(sha256sum \"$f\" | cut -d' ' -f1)",
                f'if [ "$got" != {q(sha256)} ]; then rm -f "$f"; '
                f'echo "checksum mismatch: expected {sha256}, got $got (partial or corrupted upload)" >&2; exit 5; fi',
                f'if [ "$(readlink {q(path + "/current")})" = {q("releases/" + version)} ]; then rm -f "$f"; '
                f'echo "{version} is the current release; kept as is"; exit 0; fi',
                f"rm -rf {q(rel + '.tmp')} && mkdir -p {q(rel + '.tmp')}",
                f'tar -xzf "$f" -C {q(rel + ".tmp")}',
                f"ln -sfn {q(path + '/shared/.env')} {q(rel + '.tmp/.env')}",
                f"rm -rf {q(rel)} && mv {q(rel + '.tmp')} {q(rel)}",
                'rm -f "$f"',
                f'echo "unpacked {version} sha256={sha256}"',
            ]
        ),
        version,
        stdin=stdin_urls.lines(download_from) if download_from else None,
    )


def in_release(stage: Stage, path: str, version: str, command: str) -> Command:
    """Run a configured command (migrate, restart) inside a release with the app's environment."""
    return Command(stage, _env_prelude(path, f"{path}/releases/{version}", version) + command, version)


def switch(path: str, version: str) -> Command:
    """Atomic flip: a new symlink renamed over `current`, so there is never a moment without one."""
    return Command(
        Stage.SWITCH,
        f"cd {q(path)} && test -d {q('releases/' + version)} && "
        f"ln -sfn {q('releases/' + version)} current.tmp && mv -Tf current.tmp current && readlink current",
        version,
    )


def restore_db(path: str, backup_glob_version: str, commands: list[str]) -> Command:
    """Run restore commands against the newest backup taken while `version` was current."""
    lines = [
        "set -e",
        f"B=$(ls -1d {q(path + '/backups')}/*-{q(backup_glob_version)} 2>/dev/null | sort | tail -n 1)",
        f'if [ -z "$B" ]; then echo "no backup of {backup_glob_version} found" >&2; exit 8; fi',
        '(cd "$B" && sha256sum -c --quiet SHA256SUMS)',
    ]
    for cmd in commands:
        lines.append(f'( export BACKUP_DIR="$B"; {_env_prelude(path, path, backup_glob_version)}{cmd} )')
    lines.append('echo "restored from $B"')
    return Command(Stage.RESTORE_DB, "\n".join(lines), backup_glob_version)


def cleanup(path: str, keep_releases: int, protect: list[str], backup: Backup) -> Command:
    """Keep the newest N releases and backups; never the current, the previous good one, or the newest backup."""
    keep = " ".join(q(p) for p in protect if p) or "''"
    return Command(
        Stage.CLEANUP,
        "\n".join(
            [
                f"cd {q(path + '/releases')} || exit 0",
                "cur=$(readlink ../current 2>/dev/null); cur=${cur##*/}",
                "n=0",
                "for r in $(ls -1t); do",
                '  case "$r" in *.tmp) continue;; esac',
                "  n=$((n + 1))",
                f'  for k in "$cur" {keep}; do [ "$r" = "$k" ] && continue 2; done',
                f'  if [ $n -gt {keep_releases} ]; then rm -rf -- "$r"; echo "removed release $r"; fi',
                "done",
                f"find {q(incoming_dir(path))} -type f -mmin +1440 -delete 2>/dev/null",
                f"cd {q(path + '/backups')} 2>/dev/null || exit 0",
                "n=0",
                "for b in $(ls -1t); do",
                "  n=$((n + 1)); [ $n -eq 1 ] && continue",
                f'  old=$(find "$b" -maxdepth 0 -mtime +{backup.keep_days} 2>/dev/null)',
                f'  if [ $n -gt {backup.keep_count} ] || [ -n "$old" ]; then',
                '    rm -rf -- "$b"; echo "removed backup $b"',
                "  fi",
                "done",
            ]
        ),
    )


def read_current(path: str, timeout: float) -> Command:
    return Command(
        "read_current",
        f'cur=$(readlink {q(path + "/current")} 2>/dev/null || true); echo "{CURRENT_MARK}${{cur##*/}}"',
        timeout=timeout,
    )


def tag(deployment_id: int) -> str:
    """The name a deployment's commands run under on a host (`sh -c SCRIPT deploybot-d42`)."""
    return f"deploybot-d{deployment_id}"


def stop_leftovers(deployment_id: int) -> Command:
    """Stop whatever a stopped bot left running on this host for that deployment (a restart halfway, say), with
    its process group; apps started detached (setsid) are not in it. `[d]` keeps pgrep from matching itself."""
    pattern = q(f"deploybot-[d]{deployment_id}$")
    return Command(
        "stop_leftovers",
        f"for p in $(pgrep -f {pattern}); do g=$(ps -o pgid= -p \"$p\" | tr -d ' '); "
        '[ -n "$g" ] && kill -TERM "-$g" 2>/dev/null; done; true',
        timeout=30,
    )
