"""`deploybot init`: a first deploy.yml from a few answers (asked and validated in bot/init_answers.py).

The text written carries comments (as examples/single-server.yml does), is read back and validated again, and
never replaces an existing file unless asked to.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import yaml

from bot.config import Host, is_url, parse_config
from bot.init_answers import Answers, InitError, fill, validate


def _yaml(value: object) -> str:
    return (
        yaml.safe_dump(value, default_flow_style=True, width=float("inf"), allow_unicode=True)
        .removesuffix("\n...\n")
        .strip()
    )


def _line(indent: int, key: str, value: object, comment: str = "") -> str:
    text = f"{' ' * indent}{key}: {_yaml(value)}"
    return f"{text:<50}  # {comment}" if comment else text


def render(mapping: dict, a: Answers) -> str:
    app, env = mapping["app"], mapping["environments"][a.env]
    remote = [h for h in a.hosts if h != "local"]
    lines = [
        f"# deploy.yml for {a.app}, written by `deploybot init`: one environment, every host at once (in-place).",
        "# Check it with `deploybot check-config`; it names every problem with its location, and unknown keys are",
        "# errors, never skipped. The project's examples/deploy.yml explains every key (rolling batches, backups,",
        "# migrations, required environment variables, the verification window, retention).",
        "app:",
        _line(2, "name", app["name"], "letters, digits, `_.-`"),
        "  # Where the artifact of each version is; {version} is replaced by the version asked for (v1.2.0).",
        "  # A path on the bot's machine (its folder must exist) or an http(s) URL; a .sha256 file beside it is",
        "  # used as its published checksum.",
        _line(2, "artifact", app["artifact"]),
        _line(2, "upload", app["upload"], "or fetch: each host downloads an http(s) artifact itself"),
        "environments:",
        f"  {_yaml(a.env)}:",
        _line(4, "hosts", env["hosts"], "user@host[:port], or local (this machine, no SSH)"),
    ]
    if remote:
        lines += [
            "    # SSH: the bot logs in with the keys in ~/.ssh/ of the user it runs as and verifies each host's key",
            "    # against ~/.ssh/known_hosts (collect them with `ssh-keyscan -H HOST >> ~/.ssh/known_hosts` and",
            "    # compare the fingerprints). Other files: ssh: {key_file: /path/id_ed25519, known_hosts: /path}",
        ]
    lines += [
        _line(4, "path", env["path"], "on each host: releases/, current, shared/ (shared/.env), backups/"),
        _line(4, "restart", env["restart"], "run inside the new release, with shared/.env exported"),
        _line(4, "health", env["health"], 'must answer JSON that includes "version"'),
    ]
    if "approval" in env:
        lines += [
            "    # In Slack, /deploy waits for one of these to approve (Slack user IDs U..., user groups S...).",
            "    # The command line (`deploybot deploy`) is for operators and skips the approval.",
            _line(4, "approval", env["approval"]),
        ]
    else:
        lines += [
            "    # No approval: a /deploy in Slack starts at once. To require one, add",
            "    # approval: {approvers: [U024BE7LH]}   (Slack user IDs U..., or user group IDs S...)",
        ]
    return "\n".join(lines) + "\n"


def generate(a: Answers) -> str:
    """The text of deploy.yml, which reads back as exactly the validated mapping."""
    mapping = validate(a)
    text = render(mapping, a)
    if yaml.safe_load(text) != mapping:
        raise InitError([f"internal: the written text does not read back as the answers: {mapping!r}"])
    parse_config(yaml.safe_load(text))
    return text


def write(path: Path, text: str, force: bool = False) -> None:
    """Create `path`; an existing one (a symlink included) is replaced only with `force`, atomically."""
    if not path.parent.is_dir():
        raise InitError([f"--output: folder {path.parent} does not exist"])
    if path.is_dir():
        raise InitError([f"--output: {path} is a folder; name the file, e.g. {path / 'deploy.yml'}"])
    if not force:
        try:
            with open(path, "x") as f:  # O_EXCL: never through a symlink, never over a file made meanwhile
                f.write(text)
        except FileExistsError:
            raise FileExistsError(f"{path} exists; pass --force to replace it") from None
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def next_steps(a: Answers, output: Path, default_config: Path) -> list[str]:
    """What to do after init, as commands to copy (with --config unless `output` is where deploybot looks)."""
    config = "" if output.absolute() == default_config.absolute() else f" --config {output}"
    steps = [f"  1. edit {output} (the project's examples/deploy.yml explains every key)"]
    for host in (Host.parse(h) for h in a.hosts if h != "local"):
        port = f" -p {host.port}" if host.port != 22 else ""
        steps.append(
            f"     collect the host key of {host.address}: ssh-keyscan -H{port} {host.address} "
            ">> ~/.ssh/known_hosts (and compare its fingerprint)"
        )
    if a.artifact and not is_url(a.artifact):
        steps.append(
            f"     put each version's artifact where app.artifact says, e.g. {a.artifact.format(version='v1.0.0')}"
        )
    return steps + [
        f"  2. deploybot check-config{config}",
        f"  3. deploybot deploy {a.env} VERSION --dry-run{config}   (the plan; nothing runs)",
    ]


def run(
    a: Answers,
    output: Path,
    *,
    force: bool,
    ask: Callable[[str, str | None], str] | None,
    echo: Callable[..., None],
    check: Callable[[Path], int],
    default_config: Path,
) -> int:
    """The whole command: complete the answers, write the file, check it, say what comes next. The exit code."""
    lacking = fill(a, ask)
    try:
        if lacking:
            raise InitError([*lacking, "nothing is asked with --yes or without a terminal on stdin: pass the flags"])
        write(output, generate(a), force)
    except InitError as exc:
        for problem in [*exc.problems, f"nothing written to {output}"]:
            echo(f"init: {problem}", err=True)
        return 2
    except FileExistsError as exc:
        echo(f"refused: {exc}", err=True)
        return 1
    echo(f"wrote {output}")
    check(output)
    echo("next steps:")
    for line in next_steps(a, output, default_config):
        echo(line)
    return 0
