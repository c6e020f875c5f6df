"""Cold CLI deploy and rollback: deploybot beside Capistrano 3 on the same namespace hosts, at 1, 5 and 20 hosts.

Both sides start a fresh process per operation, as a user at a terminal does, and the whole process is timed
(interpreter start, imports, config, connects, the work, exit). Each repetition, on hosts wiped clean, runs
deploy v1.0.0 (first deploy), deploy v1.1.0 (timed as "deploy") and a rollback to v1.0.0 (timed as "rollback"),
once with deploybot and once with Capistrano; which side goes first alternates. After every operation every host
must answer the expected version on /health and its `current` link must point at that release, or the benchmark
stops. The table shows the median of --repeat repetitions.

deploybot (`python -m bot.cli deploy prod vX --yes`, `python -m bot.cli rollback prod`; SQLite store, app.upload
sftp, backup of the current release on, as by default):
  deploy:   open the store (schema check), lock; preflight (connect, disk, `current`), backup (tar.gz of the current
            release, sha256sum -c), upload (SFTP, sha256 on the host, unpack beside and move in), then per host
            switch (ln -sfn + mv -T), restart (shared/.env exported), health (this machine polls /health until it
            answers the version); cleanup (retention); every stage recorded, the hash-chained audit trail written.
  rollback: preflight (the release is on every host), switch, restart, health; recorded and audited.
Capistrano (`cap prod deploy APP_VERSION=vX`, `cap prod deploy:rollback`; benchmarks/capistrano/Capfile):
  deploy:   Capistrano's stock flow: deploy:check:directories (mkdir -p shared releases), set_previous_revision
            (test REVISION), create_release (upload! over SCP, sha256sum -c on the host, tar -xzf into
            releases/<version>), set_current_revision (REVISION file), symlink:release (ln -s + mv), then
            app:restart (`cd current && sh bin/restart`, shared/.env exported the same way) and app:health (curl on
            each host until /health answers the version, at most ~10 s), deploy:cleanup (ls; release names that are
            not timestamps are kept, with a warning), log_revision (a line in revisions.log).
  rollback: deploy:check:directories, set_previous_revision, rollback_release_path (ls -xt releases),
            symlink:release, app:restart, app:health, log_revision. Capistrano's stock cleanup_rollback (tar.gz and
            delete the rolled-back release) is turned off: it is not one of the bare steps, and deploybot keeps it.
So deploybot does more: preflight, backup, cleanup by retention, and the audit trail.

Needs root (network namespaces) and Debian's capistrano package (`apt-get install -y capistrano`).

Run:  python benchmarks/bench_capistrano.py --hosts 1,5,20 [--repeat 3] [--size-mb 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import statistics
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.sampleapp import build_artifacts, write_shared_env  # noqa: E402
from tests.lab.hosts import HostLab  # noqa: E402

COMMAND = "python benchmarks/bench_capistrano.py"
CAPISTRANO = Path(__file__).resolve().with_name("capistrano")
VERSIONS = ("v1.0.0", "v1.1.0")
TIMEOUT_S = 300  # any one operation; a hung deploy fails the benchmark instead of holding it
STAGE_LINE = re.compile(r"^\s+ok\s+(\S+)\s+([\d.]+)s\s*$")
FINISHED_LINE = re.compile(r"^#\d+ SUCCEEDED in ([\d.]+)s")


class BenchFailed(RuntimeError):
    pass


def reset(hosts) -> None:
    for h in hosts:
        h.reset()
        write_shared_env(h.srv / "app" / "shared", {"PORT": "8000"})


def verify(hosts, version: str, what: str) -> None:
    """Every host answers `version` on /health and its current link points at releases/<version>."""
    wrong = []
    for h in hosts:
        answer, current = h.answering(), h.current()
        if answer != version or current != version:
            wrong.append(f"{h.name}: /health answers {answer!r}, current -> {current!r}")
    if wrong:
        raise BenchFailed(f"{what}: not on {version} everywhere: " + "; ".join(wrong))


def run_timed(argv: list[str], cwd: Path, env: dict[str, str], what: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchFailed(f"{what}: no result after {TIMEOUT_S}s") from exc
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise BenchFailed(
            f"{what}: exit {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
        )
    return took, proc.stdout


# ---- deploybot ------------------------------------------------------------------------------------------------
class Deploybot:
    name = "deploybot"

    def __init__(self, work: Path, lab: HostLab, hosts, artifacts: Path):
        self.hosts = hosts
        self.dir = work / f"deploybot-{len(hosts)}"
        self.dir.mkdir()
        self.config = self.dir / "deploy.yml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "app": {
                        "name": "sampleapp",
                        "artifact": str(artifacts) + "/sampleapp-{version}.tar.gz",
                        "upload": "sftp",
                    },
                    "environments": {
                        "prod": {
                            "hosts": [f"root@{h.address}" for h in hosts],
                            "ssh": {
                                "key_file": str(lab.key_file),
                                "known_hosts": str(lab.known_hosts),
                                "connect_timeout": 5,
                            },
                            "path": "/srv/app",
                            "restart": "sh bin/restart",
                            "backup": {"release_archive": True},
                            "health": {"url": "http://{host}:8000/health", "timeout": 10, "interval": 0.05},
                            "min_free_mb": 10,
                        }
                    },
                }
            )
        )
        self.template_db: Path | None = None  # a migrated, empty store (make_template_db)
        self.runs = 0
        self.stages: dict[str, list[dict[str, float]]] = {"deploy": [], "rollback": []}

    def fresh_store(self) -> dict[str, str]:
        """A store with the schema in place and no history (the hosts were just wiped)."""
        self.runs += 1
        db = self.dir / f"deploybot-{self.runs}.db"
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.template_db) + suffix)
            if src.exists():
                shutil.copy(src, str(db) + suffix)
        return {**os.environ, "DEPLOYBOT_CONFIG": str(self.config), "DATABASE_URL": f"sqlite:///{db}"}

    def _op(self, env: dict[str, str], argv: list[str], what: str, kind: str | None) -> float:
        took, out = run_timed([sys.executable, "-m", "bot.cli", *argv], ROOT, env, f"deploybot {what}")
        if kind:
            stages = {m[1]: float(m[2]) for m in map(STAGE_LINE.match, out.splitlines()) if m}
            done = [float(m[1]) for m in map(FINISHED_LINE.match, out.splitlines()) if m]
            if done:
                stages["(pipeline)"] = done[-1]
                stages["(process, not pipeline)"] = took - done[-1]
            self.stages[kind].append(stages)
        return took

    def run(self) -> dict[str, float]:
        env = self.fresh_store()
        first = self._op(env, ["deploy", "prod", VERSIONS[0], "--yes"], f"deploy {VERSIONS[0]}", None)
        verify(self.hosts, VERSIONS[0], "deploybot first deploy")
        deploy = self._op(env, ["deploy", "prod", VERSIONS[1], "--yes"], f"deploy {VERSIONS[1]}", "deploy")
        verify(self.hosts, VERSIONS[1], "deploybot deploy")
        rollback = self._op(env, ["rollback", "prod"], "rollback", "rollback")
        verify(self.hosts, VERSIONS[0], "deploybot rollback")
        return {"first": first, "deploy": deploy, "rollback": rollback}


# ---- Capistrano -----------------------------------------------------------------------------------------------
class Capistrano:
    name = "capistrano"

    def __init__(self, work: Path, lab: HostLab, hosts, artifacts: Path, cap: str):
        self.hosts = hosts
        self.cap = cap
        self.dir = work / f"capistrano-{len(hosts)}"
        (self.dir / "config" / "deploy").mkdir(parents=True)
        shutil.copy(CAPISTRANO / "Capfile", self.dir / "Capfile")
        fill = {
            "artifact_dir": str(artifacts),
            "key_file": str(lab.key_file),
            "known_hosts": str(lab.known_hosts),
            "servers": "\n".join(f'server "{h.address}", user: "root", roles: %w[app]' for h in hosts),
        }
        for name, dest in (("deploy.rb.in", "config/deploy.rb"), ("prod.rb.in", "config/deploy/prod.rb")):
            text = string.Template((CAPISTRANO / name).read_text()).substitute(fill)
            (self.dir / dest).write_text(text)
        self.env = {**os.environ}

    def _op(self, argv: list[str], what: str) -> float:
        return run_timed([self.cap, "prod", *argv], self.dir, self.env, f"capistrano {what}")[0]

    def run(self) -> dict[str, float]:
        first = self._op(["deploy", f"APP_VERSION={VERSIONS[0]}"], f"deploy {VERSIONS[0]}")
        verify(self.hosts, VERSIONS[0], "capistrano first deploy")
        deploy = self._op(["deploy", f"APP_VERSION={VERSIONS[1]}"], f"deploy {VERSIONS[1]}")
        verify(self.hosts, VERSIONS[1], "capistrano deploy")
        rollback = self._op(["deploy:rollback"], "rollback")
        verify(self.hosts, VERSIONS[0], "capistrano rollback")
        return {"first": first, "deploy": deploy, "rollback": rollback}


# ---- main -----------------------------------------------------------------------------------------------------
def make_template_db(work: Path, config: Path) -> Path:
    """Migrate an empty store once, so no timed run pays for creating the schema (a user's store exists),
    and compile deploybot's bytecode, so no timed run pays for that either."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "bot"], cwd=ROOT, check=True, timeout=TIMEOUT_S, capture_output=True
    )  # bytecode as any earlier run would have left it
    db = work / "template.db"
    env = {**os.environ, "DEPLOYBOT_CONFIG": str(config), "DATABASE_URL": f"sqlite:///{db}"}
    run_timed([sys.executable, "-m", "bot.cli", "history"], ROOT, env, "deploybot store set-up")
    return db


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", default="1,5,20", help="host counts, comma-separated (default 1,5,20)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per host count; the median is shown")
    parser.add_argument("--size-mb", type=float, default=5, help="artifact size (default 5 MB, incompressible)")
    args = parser.parse_args()
    counts = [int(n) for n in args.hosts.split(",")]
    if not 1 <= args.repeat <= 50 or not all(1 <= n <= 250 for n in counts):
        parser.error("--repeat 1-50, host counts 1-250")
    cap = shutil.which("cap")
    if cap is None:
        sys.exit("capistrano is not installed: apt-get update && apt-get install -y capistrano")

    work = Path(tempfile.mkdtemp(prefix="deploybot-bench-cap-"))
    artifacts = work / "artifacts"
    build_artifacts(artifacts, {v: "ok" for v in VERSIONS}, size_bytes=int(args.size_mb * 1024 * 1024))
    for tarball in (artifacts / f"sampleapp-{v}.tar.gz" for v in VERSIONS):  # published checksums, both sides
        tarball.with_name(tarball.name + ".sha256").write_text(hashlib.sha256(tarball.read_bytes()).hexdigest() + "\n")
    results: dict[int, dict[str, list[dict[str, float]]]] = {}
    bots: dict[int, Deploybot] = {}
    lab = HostLab.claim(max(counts))
    try:
        template_db = None
        for n in counts:
            hosts = lab.hosts[:n]
            bot = Deploybot(work, lab, hosts, artifacts)
            template_db = template_db or make_template_db(work, bot.config)
            bot.template_db = template_db
            sides = (bot, Capistrano(work, lab, hosts, artifacts, cap))
            results[n] = {s.name: [] for s in sides}
            bots[n] = bot
            for rep in range(args.repeat):
                for side in sides if rep % 2 == 0 else sides[::-1]:
                    reset(hosts)
                    results[n][side.name].append(side.run())
                print(
                    f"{n} host(s), repetition {rep + 1}/{args.repeat}: "
                    + ", ".join(
                        f"{name} deploy {r[-1]['deploy']:.2f} s rollback {r[-1]['rollback']:.2f} s"
                        for name, r in results[n].items()
                    ),
                    file=sys.stderr,
                    flush=True,
                )
    except BenchFailed as exc:
        sys.exit(f"benchmark failed: {exc}\n(work folder kept: {work})")
    finally:
        lab.stop()

    print(
        f"\nCold CLI deploy and rollback, deploybot vs Capistrano {cap_version(cap)}, {args.size_mb:g} MB artifact, "
        f"namespace hosts over SSH, median of {args.repeat} (`{COMMAND} --hosts {args.hosts}"
        f"{'' if args.repeat == 3 else f' --repeat {args.repeat}'}"
        f"{'' if args.size_mb == 5 else f' --size-mb {args.size_mb:g}'}`)\n"
    )
    print(
        "| hosts | deploybot deploy (cold) | capistrano deploy | ratio | deploybot rollback (cold) "
        "| capistrano rollback | ratio |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n, res in results.items():
        b = {k: median([r[k] for r in res["deploybot"]]) for k in ("first", "deploy", "rollback")}
        c = {k: median([r[k] for r in res["capistrano"]]) for k in ("first", "deploy", "rollback")}
        print(
            f"| {n} | {b['deploy']:.2f} s | {c['deploy']:.2f} s | {b['deploy'] / c['deploy']:.2f} "
            f"| {b['rollback']:.2f} s | {c['rollback']:.2f} s | {b['rollback'] / c['rollback']:.2f} |"
        )
    print(
        "\nratio = deploybot / capistrano (below 1.0: deploybot is faster). deploy = v1.0.0 -> v1.1.0, "
        "rollback = back to v1.0.0."
    )
    print(
        "First deploy onto empty hosts (nothing to back up), median: "
        + "; ".join(
            f"{n} host(s) deploybot {median([r['first'] for r in res['deploybot']]):.2f} s, "
            f"capistrano {median([r['first'] for r in res['capistrano']]):.2f} s"
            for n, res in results.items()
        )
    )
    print(
        "\ndeploybot, median seconds per stage as the CLI prints them; '(process, not pipeline)' is the "
        "process's wall time outside the pipeline (interpreter, imports, config, store, lock, exit):\n"
    )
    for kind in ("deploy", "rollback"):
        names: list[str] = []
        for bot in bots.values():
            for stages in bot.stages[kind]:
                names += [s for s in stages if s not in names]
        print(f"| {kind} | " + " | ".join(f"{n} host(s)" for n in bots) + " |")
        print("|---|" + "---:|" * len(bots))
        for stage in names:
            cells = []
            for bot in bots.values():
                values = [s[stage] for s in bot.stages[kind] if stage in s]
                cells.append(f"{median(values):.2f}" if values else "-")
            print(f"| {stage} | " + " | ".join(cells) + " |")
        print()
    print(f"Reproduce: {COMMAND} --hosts {args.hosts}")
    shutil.rmtree(work, ignore_errors=True)


def cap_version(cap: str) -> str:
    out = subprocess.run([cap, "--version"], capture_output=True, text=True, timeout=60).stdout
    m = re.search(r"Capistrano Version: (\S+)", out)
    return m[1] if m else "3"


if __name__ == "__main__":
    main()
