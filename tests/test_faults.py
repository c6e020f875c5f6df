"""The fault matrix: what a deploy does when something under it breaks. PostgreSQL restarting in the verification
window, Slack down for 30 s, a host cut mid-upload or mid-restart, a full disk, health flapping, a host slower than
the command timeout, the deploying process SIGKILLed mid-upload or mid-restart, two approvers clicking at the same
instant. Real hosts (network namespaces with their own sshd), real processes, a real SQLite file or PostgreSQL
server; only Slack's Web API is the local fake.

Every test ends on the same checks: the audit chain verifies, the lock is in the state expected, no deployment is
left active, and every host runs, on disk (`current`) and on its health URL, the version the deployment records
say it runs (`trail_version`); where Slack is involved, the message shows an outcome and no Abort button.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from bot.domain import Kind, State
from bot.engine.events import RollbackStarted, StageStarted
from bot.sampleapp import build_artifact, write_shared_env
from bot.store import Store
from tests.conftest import APP_PATH, SHARED_ENV, VERSIONS
from tests.lab.system import sh
from tests.pg import PostgresServer, PostgresUnavailable, create_database, pg_url  # noqa: F401  (session fixture)
from tests.serving import deploybot_serve, free_port
from tests.slack_api import FakeSlack
from tests.slack_client import SlackClient
from tests.test_deploy import deploy_cutting
from tests.test_leases import start_deploy, wait_for_line

DEV, PM, PM2 = "U0DEV", "U0PM", "U0PM2"
SECRET = "faults-signing-secret"
STAGES = ("preflight", "backup", "upload", "migrate", "switch", "restart", "health", "verify", "cleanup")
OUTCOME = re.compile(r"(Succeeded|Failed|rolled back|Cancelled|Rejected|Expired)\S* in")


# ---- the end state, read from the hosts and compared with the records ------------------------------------------
def trail_version(store: Store, host: str, env: str = "prod") -> str | None:
    """The release the deployment records say `host` runs now. Newest first: a succeeded deploy or rollback put its
    version there; a failed, cancelled or rolled-back one left the host where it was; a rollback_failed one left
    it on the new version where its switch went through and its revert did not; an interrupted one names what
    each host ran when it was taken over."""
    for dep in store.list_deployments(env, limit=200):
        assert dep.state.is_final, f"deployment #{dep.id} is still {dep.state.value}"
        if dep.state is State.SUCCEEDED:
            return dep.version
        if dep.state is State.ROLLBACK_FAILED:
            rows = [s for s in store.stages(dep.id) if s.host == host]
            switched = any(s.stage == "switch" and s.ok for s in rows)
            reverted = any(s.stage == "revert" and s.ok for s in rows)
            if switched and not reverted:
                return dep.version
        if dep.state is State.INTERRUPTED:
            now = (
                next(
                    (
                        e.detail.get("hosts_now")
                        for e in store.audit_events(deployment_id=dep.id)
                        if e.action == "interrupted"
                    ),
                    None,
                )
                or {}
            )
            if host in now:
                return now[host]
    return None


def assert_known_end(
    store: Store, hosts, *, lock: Callable | None = None, current: Callable | None = None
) -> dict[str, str | None]:
    """Audit chain intact, the lock as expected (free unless `lock(record)` says what must hold it), nothing active,
    each host on the version its records name, on disk and answering. Returns {host: version}."""
    assert store.verify_audit().ok, store.verify_audit()
    held = store.get_lock("prod")
    if lock is None:
        assert held is None, held
    else:
        assert held is not None and lock(held), held
    assert not [d for d in store.list_deployments("prod", limit=200) if d.state.is_active]
    versions = {}
    for h in hosts:
        want = trail_version(store, h.name)
        on_disk = current(h) if current else h.current()
        assert (on_disk, h.answering()) == (want, want), (
            f"{h.name}: records say {want}, the host runs {on_disk} and answers {h.answering()}"
        )
        versions[h.name] = want
    return versions


class KnownBug(AssertionError):
    """The assertions gathered by KnownBugs, raised together at the end of a test."""


class KnownBugs:
    """Around the assertions a fault used to break (each was a bug, now fixed): their failures are kept while the
    rest of the test goes on, so one run says everything that is wrong; `raise_found()` raises them together."""

    def __init__(self) -> None:
        self.found: list[str] = []

    @contextlib.contextmanager
    def check(self) -> Iterator[None]:
        try:
            yield
        except AssertionError as exc:
            self.found.append(str(exc).split("\n")[0])

    def raise_found(self) -> None:
        if self.found:
            raise KnownBug(" | ".join(self.found))


def wait_until(check: Callable[[], object], timeout: float, what: str, every: float = 0.05) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def sleeping(host) -> bool:
    """A `sleep` runs in the host (the slow migration or restart command the test configured)."""
    return any(p.comm == "sleep" and p.alive for p in host.processes())


@contextlib.contextmanager
def throttled(host, mbit: int) -> Iterator[None]:
    """Traffic to `host` limited to `mbit` (its link here shaped with tc), so an upload takes seconds."""
    sh(
        "tc",
        "qdisc",
        "replace",
        "dev",
        host.veth,
        "root",
        "tbf",
        "rate",
        f"{mbit}mbit",
        "burst",
        "32kbit",
        "latency",
        "400ms",
    )
    try:
        yield
    finally:
        sh("tc", "qdisc", "del", "dev", host.veth, "root", check=False)


@pytest.fixture(scope="module")
def big_artifacts(tmp_path_factory) -> Path:
    """sampleapp v1.0.0 (small) and v1.1.0 padded to 6 MB of incompressible bytes, each with its published sha256."""
    folder = tmp_path_factory.mktemp("big-artifacts")
    build_artifact(folder, "sampleapp", "v1.0.0", VERSIONS["v1.0.0"])
    build_artifact(folder, "sampleapp", "v1.1.0", VERSIONS["v1.1.0"], size_bytes=6 * 1024 * 1024)
    for tarball in folder.glob("*.tar.gz"):
        digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
        tarball.with_name(tarball.name + ".sha256").write_text(f"{digest}  {tarball.name}\n")
    return folder


# ---- 1. PostgreSQL restarted mid-deploy -------------------------------------------------------------------------
class RestartablePostgres(PostgresServer):
    """tests/pg.py's server, which a test may stop and start again on the same data folder and port."""

    def options(self) -> str:  # the options PostgresServer.start passes, so the restarted server is the same one
        return (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.socket_dir} -c fsync=off "
            f"-c synchronous_commit=off -c full_page_writes=off -c max_connections=100 -c TimeZone=UTC"
        )

    def halt(self) -> None:
        """A fast shutdown, as `systemctl restart postgresql` or a failover does: every connection is cut."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            self.options(),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "start",
        )


@pytest.fixture(scope="module")
def restartable_pg() -> Iterator[RestartablePostgres]:
    """A PostgreSQL server of this module's own, since its tests restart it."""
    try:
        server = RestartablePostgres()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_postgres_restarted_in_the_verification_window_ends_known(hosts, make_config, cli_env, restartable_pg):
    two = hosts[:2]
    bugs = KnownBugs()
    db = restartable_pg.create_database()
    first = run_cli(cli_env, make_config(hosts=two), db, "deploy", "prod", "v1.0.0", "--yes")
    assert first.returncode == 0, first.stderr
    config = make_config(hosts=two, verify_seconds=8)
    running = start_deploy(cli_env, config, "v1.1.0", DATABASE_URL=db, DEPLOYBOT_LEASE_TTL="4")
    wait_for_line(running, "… verify")
    time.sleep(1)
    restartable_pg.halt()
    time.sleep(2)  # down for two seconds, as a restart of a real server takes
    restartable_pg.resume()
    out, err = running.communicate(timeout=90)
    with bugs.check():
        assert "Traceback" not in err and running.returncode in (0, 1), (
            f"the deploying process died ({running.returncode}): {err.strip().splitlines()[-1]}"
        )
    # whatever was recorded, no host is half-switched: both run one version, on disk and answering
    seen = {(h.current(), h.answering()) for h in two}
    assert seen in ({("v1.0.0", "v1.0.0")}, {("v1.1.0", "v1.1.0")}), seen
    with Store(db) as store:
        dep = store.list_deployments("prod", limit=1)[0]
        trail = [(e.actor, e.action, e.outcome) for e in store.audit_events(deployment_id=dep.id)]
        assert dep.version == "v1.1.0" and trail[:2] == [
            ("cli:tester", "deploy_requested", "approved"),
            ("cli:tester", "deploy_started", "running"),
        ], trail
        assert {("switch", h.name) for h in two} <= {(s.stage, s.host) for s in store.stages(dep.id)}
        with bugs.check():  # the deploy ends on its own: succeeded, or rolled back and said so
            assert dep.state in (State.SUCCEEDED, State.ROLLED_BACK), (dep.state.value, dep.error[:300], trail)
            assert (dep.state is State.ROLLED_BACK) == (
                ("deploybot", "auto_rollback_started", "rolling_back") in trail
            ), trail
            assert seen == {(dep.version, dep.version) if dep.state is State.SUCCEEDED else ("v1.0.0", "v1.0.0")}
            assert store.get_lock("prod") is None and trail[-1][1:] == ("deploy_finished", dep.state.value), trail
    time.sleep(4.5)  # a lease its process left behind has expired: the next deploy takes the deployment over
    after = run_cli(cli_env, make_config(hosts=two), db, "deploy", "prod", "v1.2.0", "--yes")
    assert after.returncode == 0, after.stderr
    with Store(db) as store:
        assert store.get(dep.id).state.is_final
        assert assert_known_end(store, two) == {h.name: "v1.2.0" for h in two}
    bugs.raise_found()


def run_cli(cli_env, config: Path, db: str, *args: str) -> subprocess.CompletedProcess:
    """`deploybot ARGS` in its own process, on the database `db`."""
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        env={**cli_env(config), "DATABASE_URL": db},
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


# ---- 2. Slack answering 429 and 500 for 30 s ---------------------------------------------------------------------


def request_message(fake: FakeSlack, since: int = 0, timeout: float = 20):
    return fake.wait_for(
        lambda: next((c for c in fake.of("chat.postMessage", since=since) if not c.params.get("thread_ts")), None),
        timeout,
    )


def approve_value(message) -> str:
    return next(
        e["value"]
        for b in message.params["blocks"]
        if b.get("type") == "actions"
        for e in b["elements"]
        if e["action_id"] == "approve"
    )


def is_final(message) -> bool:
    return bool(OUTCOME.search(message.text)) and "abort" not in message.buttons()


def test_slack_down_for_30s_during_a_deploy_does_not_touch_it_and_the_message_catches_up(world, hosts):
    two = hosts[:2]
    bot = world(two, approval={"approvers": [PM]}, verify_seconds=2)
    fake, store = bot.fake, bot.service.store
    assert bot.slack.command("/deploy", "prod v1.0.0", DEV).status_code == 200
    req = request_message(fake)
    ts, dep_id = req.params["_ts"], int(approve_value(req))
    outage_until = time.monotonic() + 30
    fake.fail_until(outage_until, 429, 500)
    assert bot.slack.click("approve", str(dep_id), PM, ts).status_code == 200  # Slack's click reaches the bot

    finished = wait_until(
        lambda: next((e for e in store.audit_events(deployment_id=dep_id) if e.action == "deploy_finished"), None),
        60,
        "the deploy to end",
    )
    assert time.monotonic() < outage_until - 10  # over well before Slack came back: it never waited for Slack
    assert finished.outcome == "succeeded" and finished.detail["seconds"] < 15, finished
    assert [h.answering() for h in two] == ["v1.0.0"] * 2
    assert not is_final(fake.message(ts))  # what users saw so far is stale: every draw since the click failed

    final = fake.wait_for(lambda: (m := fake.message(ts)) and is_final(m) and m, timeout=30 + 20)
    assert final.at >= outage_until and final.at - outage_until < 10  # caught up within seconds of recovering
    assert "Succeeded* in" in final.text and final.buttons() == []
    for stage in STAGES:
        assert f":white_check_mark: {stage} — done" in final.text, stage
    fake.wait_for(lambda: any("`health` done" in c.text for c in fake.thread(ts)), timeout=20)  # thread too
    failed = [c for c in fake.calls if c.status != 200]
    assert {c.status for c in failed} == {429, 500}
    # retried with backoff rather than hammered: about 20 calls over the 30 s when this was written
    assert len(failed) < 60, len(failed)
    assert assert_known_end(store, two) == {h.name: "v1.0.0" for h in two}


# ---- 3. a host cut mid-upload and mid-restart --------------------------------------------------------------------
def incoming_bytes(host) -> int:
    folder = host.srv / "app" / ".incoming"
    return sum(p.stat().st_size for p in folder.glob("*")) if folder.is_dir() else 0


def test_host_cut_mid_upload_fails_the_upload_naming_it_and_nothing_switches(
    hosts, make_config, service, big_artifacts
):
    two, bugs = hosts[:2], KnownBugs()
    svc = service(
        make_config(
            hosts=two,
            artifact=str(big_artifacts / "sampleapp-{version}.tar.gz"),
            ssh={"connect_timeout": 2, "dead_after": 4, "command_timeout": 60},
        )
    )
    assert svc.deploy("prod", "v1.0.0", "cli:test").state is State.SUCCEEDED
    with throttled(two[1], mbit=8):  # 6 MB take ~6 s to reach h2
        dep, took = deploy_cutting(svc, "v1.1.0", two[1], when=lambda: incoming_bytes(two[1]) > 1024 * 1024)
    assert dep.state is State.FAILED and (dep.failed_stage, dep.failed_host) == ("upload", two[1].name), dep.error
    assert dep.error.startswith(f"{two[1].name}: "), dep.error
    with bugs.check():  # says what happened: the upload failed, and why
        assert "internal error" not in dep.error and re.search(r"upload failed: \S", dep.error), dep.error
    assert took < 30  # given up on silence (dead_after), not after the command timeout
    assert not [s for s in svc.store.stages(dep.id) if s.stage in ("migrate", "switch", "restart")]
    assert not (two[1].srv / "app" / "releases" / "v1.1.0").exists()  # no half release where the upload broke
    assert assert_known_end(svc.store, two) == {h.name: "v1.0.0" for h in two}
    assert svc.deploy("prod", "v1.1.0", "cli:test").state is State.SUCCEEDED  # back on the network: it goes
    assert assert_known_end(svc.store, two) == {h.name: "v1.1.0" for h in two}
    bugs.raise_found()


def test_host_cut_mid_restart_reverts_the_others_and_names_the_one_left(hosts, make_config, service):
    two = hosts[:2]
    slow = 'if grep -q v1.1.0 VERSION && [ -f "$APP_SHARED/slow" ]; then sleep 6; fi; bin/restart'
    svc = service(
        make_config(
            hosts=two,
            restart=slow,
            health={"timeout": 3},
            ssh={"connect_timeout": 2, "dead_after": 3, "command_timeout": 60},
        )
    )
    assert svc.deploy("prod", "v1.0.0", "cli:test").state is State.SUCCEEDED
    (two[1].srv / "app" / "shared" / "slow").write_text("")
    dep, took = deploy_cutting(svc, "v1.1.0", two[1], when=lambda: sleeping(two[1]))
    assert dep.state is State.ROLLBACK_FAILED, dep.error
    assert (dep.failed_stage, dep.failed_host) == ("restart", two[1].name) and "connection lost" in dep.error
    assert took < 30
    reverts = {s.host: s for s in svc.store.stages(dep.id) if s.stage == "revert"}
    assert reverts[two[0].name].ok and not reverts[two[1].name].ok and two[1].name in reverts[two[1].name].error
    # h2 was switched and cut before its restart ran: back on the network, its own restart finishes, and it serves
    # the version its records name (status shows the drift until a rollback ends it)
    wait_until(lambda: not sleeping(two[1]), 15, "h2's restart to finish")
    wait_until(lambda: two[1].answering() == "v1.1.0", 10, "h2 to answer")
    assert assert_known_end(svc.store, two) == {two[0].name: "v1.0.0", two[1].name: "v1.1.0"}
    assert svc.environments.status("prod")[0].drift
    assert svc.rollback("prod", "cli:test", "v1.0.0").state is State.SUCCEEDED
    assert assert_known_end(svc.store, two) == {h.name: "v1.0.0" for h in two}


# ---- 4. a host's disk filling up ----------------------------------------------------------------------------------
def inside_current(host) -> str | None:
    link = host.inside(APP_PATH) / "current"
    return link.readlink().name if link.is_symlink() else None


def fill(host, leave_mb: float) -> None:
    """Fill the host's small disk under APP_PATH until about `leave_mb` MB are left."""
    take_kb = free_kb(host) - int(leave_mb * 1024)
    host.run(f"head -c {take_kb}k /dev/zero > {APP_PATH}/shared/ballast", check=True)


@pytest.mark.parametrize("where", ["preflight", "upload"])
def test_full_disk_fails_cleanly_and_nothing_switches(hosts, make_config, service, big_artifacts, where):
    """A 16 MB disk over h2's app folder. Preflight's free-space check stops the deploy when the disk is below
    min_free_mb; with min_free_mb below what the artifact needs, the upload itself runs out of space and fails."""
    two, bugs = hosts[:2], KnownBugs()
    with two[1].small_disk(APP_PATH, 16) as disk:
        write_shared_env(disk / "shared", SHARED_ENV)
        svc = service(
            make_config(
                hosts=two,
                artifact=str(big_artifacts / "sampleapp-{version}.tar.gz"),
                min_free_mb=10 if where == "preflight" else 1,
            )
        )
        assert svc.deploy("prod", "v1.0.0", "cli:test").state is State.SUCCEEDED
        fill(two[1], leave_mb=4)  # the 6 MB artifact no longer fits, nor the 10 MB preflight asks
        before, free_before = files(disk), free_kb(two[1])
        dep = svc.deploy("prod", "v1.1.0", "cli:test")
        assert dep.state is State.FAILED and (dep.failed_stage, dep.failed_host) == (where, two[1].name), dep.error
        if where == "preflight":
            assert re.search(r"only \d+ MB free at /srv/app, need 10 MB", dep.error), dep.error
            assert not [s for s in svc.store.stages(dep.id) if s.stage == "upload"]  # nothing sent anywhere
        else:
            assert re.search(r"upload failed: .*(size mismatch|No space left|Failure)", dep.error), dep.error
            assert not [s for s in svc.store.stages(dep.id) if s.stage in ("migrate", "switch")]
            assert (two[0].srv / "app" / "releases" / "v1.1.0").is_dir()  # h1 got it, and runs v1.0.0 still
        with bugs.check():  # failed cleanly: besides the backup taken first, the disk is as it was
            left = sorted(set(files(disk)) - set(before))
            assert not [f for f in left if not f.startswith("backups/")], left
            assert free_kb(two[1]) > free_before - 256, (free_before, free_kb(two[1]))
        assert assert_known_end(
            svc.store, two, current=lambda h: inside_current(h) if h is two[1] else h.current()
        ) == {h.name: "v1.0.0" for h in two}
        # given room again, the same deploy goes through
        two[1].run(f"rm -rf {APP_PATH}/shared/ballast {APP_PATH}/.incoming/*", check=True)
        assert svc.deploy("prod", "v1.1.0", "cli:test").state is State.SUCCEEDED
        assert assert_known_end(
            svc.store, two, current=lambda h: inside_current(h) if h is two[1] else h.current()
        ) == {h.name: "v1.1.0" for h in two}
        two[1].run(f"sh {APP_PATH}/current/bin/stop")  # its app ran from the small disk, about to go
    bugs.raise_found()


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def free_kb(host) -> int:
    return int(host.run(f"df -Pk {APP_PATH} | awk 'NR==2{{print $4}}'", check=True).stdout)


# ---- 5. health flapping in the verification window -----------------------------------------------------------------
def test_health_flapping_in_the_verification_window_rolls_back(hosts, make_config, service):
    """h2's app hangs for 2.5 s (SIGSTOP), recovers, hangs again...: one probe without an answer is enough."""
    two, bugs = hosts[:2], KnownBugs()
    assert service(make_config(hosts=two)).deploy("prod", "v1.0.0", "cli:test").state is State.SUCCEEDED
    svc = service(make_config(hosts=two, verify_seconds=10))
    verifying, reverting, finished, guard = threading.Event(), threading.Event(), threading.Event(), threading.Lock()
    flapped: list[str] = []

    def on_event(e) -> None:
        if isinstance(e, StageStarted) and e.stage == "verify" and e.host is None:
            verifying.set()
        if isinstance(e, RollbackStarted):  # the revert waits until the app runs again: no race with it
            with guard:
                reverting.set()
                signal_app(signal.SIGCONT)

    def signal_app(sig: int) -> None:
        if pid > 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def flap() -> None:
        while not (reverting.is_set() or finished.wait(1)):
            with guard:
                if reverting.is_set():
                    return
                signal_app(signal.SIGSTOP)
                flapped.append("down")
            if reverting.wait(2.5) or finished.is_set():
                return
            with guard:
                signal_app(signal.SIGCONT)
                flapped.append("up")

    svc.events.subscribe(on_event)
    pid = -1

    def flap_once_verifying() -> None:
        nonlocal pid
        if verifying.wait(60):  # the app v1.1.0's restart started on h2 (no pid namespace: its pid is ours too)
            pid = int((two[1].srv / "app" / "shared" / "app.pid").read_text())
            assert any(p.pid == pid and "app.py" in p.cmdline for p in two[1].processes())
            flap()

    flapper = threading.Thread(target=flap_once_verifying)
    flapper.start()
    try:
        dep = svc.deploy("prod", "v1.1.0", "cli:test")
    finally:
        finished.set()
        with guard:
            signal_app(signal.SIGCONT)
        flapper.join(30)
    assert dep.state is State.ROLLED_BACK and (dep.failed_stage, dep.failed_host) == ("verify", two[1].name)
    assert "failed during the verification window" in dep.error and "no answer" in dep.error, dep.error
    assert flapped and flapped[0] == "down"
    rows = svc.store.stages(dep.id)
    assert {s.host for s in rows if s.stage == "revert" and s.ok} == {h.name for h in two}
    assert assert_known_end(svc.store, two) == {h.name: "v1.0.0" for h in two}
    bad = next(s for s in rows if s.stage == "verify" and not s.ok)
    reverting_after = min(s.started_at for s in rows if s.stage == "revert") - bad.ended_at
    with bugs.check():  # the bad answer rolls back at once, not when the other hosts' windows have run out
        assert reverting_after.total_seconds() < 2, f"the revert began {reverting_after} after h2 failed"
    bugs.raise_found()


# ---- 6. a host slower than the command timeout ---------------------------------------------------------------------
SLOW_ON_H2 = 'if grep -q v1.1.0 VERSION && [ -f "$APP_SHARED/slow" ]; then sleep 5; fi; '


def test_migrate_slower_than_the_command_timeout_fails_naming_the_host(hosts, make_config, service):
    two, bugs = hosts[:2], KnownBugs()
    svc = service(
        make_config(
            hosts=two,
            migrate=SLOW_ON_H2 + "bin/migrate",
            migrate_on="all",
            ssh={"connect_timeout": 2, "command_timeout": 2},
        )
    )
    assert svc.deploy("prod", "v1.0.0", "cli:test").state is State.SUCCEEDED
    (two[1].srv / "app" / "shared" / "slow").write_text("")
    t0 = time.monotonic()
    dep = svc.deploy("prod", "v1.1.0", "cli:test")
    assert time.monotonic() - t0 < 5  # the command timeout, not the slow host, set the pace
    assert dep.state is State.FAILED and (dep.failed_stage, dep.failed_host) == ("migrate", two[1].name)
    assert f"{two[1].name}: command timed out after 2s" in dep.error, dep.error
    assert not [s for s in svc.store.stages(dep.id) if s.stage in ("switch", "restart")]
    assert assert_known_end(svc.store, two) == {h.name: "v1.0.0" for h in two}
    time.sleep(5)  # as long as the slow migration would have taken
    wait_until(lambda: not sleeping(two[1]), 5, "the slow command to end")
    log = (two[1].srv / "app" / "shared" / "migrations.log").read_text().split()
    with bugs.check():
        assert log == ["v1.0.0"], f"the timed-out migration of v1.1.0 ran on {two[1].name} after the deploy failed"
    assert assert_known_end(svc.store, two) == {h.name: "v1.0.0" for h in two}
    bugs.raise_found()


def test_restart_slower_than_the_command_timeout_fails_naming_the_host_and_reverts(hosts, make_config, service):
    two, bugs = hosts[:2], KnownBugs()
    svc = service(
        make_config(hosts=two, restart=SLOW_ON_H2 + "bin/restart", ssh={"connect_timeout": 2, "command_timeout": 2})
    )
    assert svc.deploy("prod", "v1.0.0", "cli:test").state is State.SUCCEEDED
    (two[1].srv / "app" / "shared" / "slow").write_text("")
    dep = svc.deploy("prod", "v1.1.0", "cli:test")
    assert dep.state is State.ROLLED_BACK and (dep.failed_stage, dep.failed_host) == ("restart", two[1].name)
    assert f"{two[1].name}: command timed out after 2s" in dep.error, dep.error
    assert {s.host for s in svc.store.stages(dep.id) if s.stage == "revert" and s.ok} == {h.name for h in two}
    assert assert_known_end(svc.store, two) == {h.name: "v1.0.0" for h in two}
    time.sleep(5)  # as long as the slow restart would have taken
    wait_until(lambda: not sleeping(two[1]), 5, "the slow command to end")
    time.sleep(0.5)
    with bugs.check():
        assert assert_known_end(svc.store, two) == {h.name: "v1.0.0" for h in two}
    bugs.raise_found()


# ---- SIGKILL of the deploying process mid-upload and mid-restart, then take-over --------------------------------
def test_deploy_killed_mid_upload_is_taken_over_and_changes_nothing(
    hosts, make_config, cli, cli_env, db_path, big_artifacts
):
    two = hosts[:2]
    config = make_config(hosts=two, artifact=str(big_artifacts / "sampleapp-{version}.tar.gz"))
    assert cli("deploy", "prod", "v1.0.0", "--yes", config=config).returncode == 0
    with throttled(two[1], mbit=8):
        doomed = start_deploy(cli_env, config, "v1.1.0", DEPLOYBOT_LEASE_TTL="2")
        wait_until(lambda: incoming_bytes(two[1]) > 1024 * 1024, 30, "the upload to h2 to be under way")
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait()
    with Store(f"sqlite:///{db_path}") as store:
        assert store.get_lock("prod").deployment_id == store.list_deployments("prod", limit=1)[0].id
    time.sleep(2.5)
    assert cli("lock", "prod", "--reason", "look first", config=config).returncode == 0  # takes over, then locks
    with Store(f"sqlite:///{db_path}") as store:
        killed = store.list_deployments("prod", limit=1)[0]
        assert (killed.version, killed.state) == ("v1.1.0", State.INTERRUPTED), killed.error
        assert "stopped" in killed.error
        assert_known_end(store, two, lock=lambda lock: lock.kind == "manual")
        assert {h.name: trail_version(store, h.name) for h in two} == {h.name: "v1.0.0" for h in two}
    assert cli("unlock", "prod", config=config).returncode == 0
    assert cli("deploy", "prod", "v1.1.0", "--yes", config=config).returncode == 0
    with Store(f"sqlite:///{db_path}") as store:
        assert assert_known_end(store, two) == {h.name: "v1.1.0" for h in two}


def test_deploy_killed_mid_restart_is_taken_over_and_reverted(hosts, make_config, cli, cli_env, db_path):
    two, bugs = hosts[:2], KnownBugs()
    config = make_config(hosts=two, restart=SLOW_ON_H2 + "bin/restart")
    assert cli("deploy", "prod", "v1.0.0", "--yes", config=config).returncode == 0
    (two[1].srv / "app" / "shared" / "slow").write_text("")
    doomed = start_deploy(cli_env, config, "v1.1.0", DEPLOYBOT_LEASE_TTL="2")
    wait_until(lambda: sleeping(two[1]), 30, "h2's restart to be under way")
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait()
    assert [h.current() for h in two] == ["v1.1.0"] * 2  # both switched; h2's app not restarted yet
    time.sleep(2.5)
    assert cli("lock", "prod", "--reason", "look first", config=config).returncode == 0
    assert cli("unlock", "prod", config=config).returncode == 0
    with Store(f"sqlite:///{db_path}") as store:
        killed = store.list_deployments("prod", limit=1)[0]
        assert (killed.version, killed.state) == ("v1.1.0", State.ROLLED_BACK), killed.error
        assert "reverted to v1.0.0" in killed.error
        assert assert_known_end(store, two) == {h.name: "v1.0.0" for h in two}
        wait_until(lambda: not sleeping(two[1]), 10, "the killed deploy's restart on h2 to end")
        time.sleep(0.5)
        with bugs.check():
            assert assert_known_end(store, two) == {h.name: "v1.0.0" for h in two}
    bugs.raise_found()


# ---- 7. two approvers clicking at the same instant, 20 rounds, on two replicas -------------------------------------
def test_two_approvers_at_the_same_instant_start_one_run_every_time(hosts, make_config, cli_env, tmp_path, pg_url):  # noqa: F811
    """approvals_required: 1 and two approvers; each round a new request, and each approver clicks Approve on a
    different `deploybot serve` replica (one PostgreSQL database) at the same instant."""
    one = hosts[:1]
    config = make_config(hosts=one, approval={"approvers": [PM, PM2], "approvals_required": 1}, verify_seconds=0)
    db = create_database(pg_url)
    rounds, both_counted = 20, 0
    with FakeSlack() as fake, ExitStack() as stack:
        slacks = []
        for _ in range(2):
            port = free_port()
            env = {
                **cli_env(config),
                "DATABASE_URL": db,
                "SLACK_BOT_TOKEN": "xoxb-test",
                "SLACK_SIGNING_SECRET": SECRET,
                "SLACK_API_URL": fake.api_url,
                "LOG_LEVEL": "WARNING",
                "DEPLOYBOT_METRICS_ADDRESS": "off",
            }
            stack.enter_context(deploybot_serve(env, tmp_path, port))
            slacks.append(SlackClient(f"http://127.0.0.1:{port}", SECRET, fake.url + "/response"))
        a, b = slacks
        fake.wait_for(lambda: _answers(a) and _answers(b), timeout=60)
        for n in range(rounds):
            version = ("v1.0.0", "v1.1.0")[n % 2]
            mark = fake.mark()
            assert a.command("/deploy", f"prod {version}", DEV).status_code == 200
            req = request_message(fake, mark)
            ts, dep_id = req.params["_ts"], approve_value(req)
            barrier = threading.Barrier(2)
            answers: list[int] = []

            def click(slack: SlackClient, who: str, dep_id=dep_id, ts=ts, barrier=barrier, answers=answers) -> None:
                barrier.wait()
                answers.append(slack.click("approve", dep_id, who, ts).status_code)

            clickers = [threading.Thread(target=click, args=(s, who)) for s, who in ((a, PM), (b, PM2))]
            for t in clickers:
                t.start()
            for t in clickers:
                t.join()
            assert answers == [200, 200]
            final = fake.wait_for(lambda ts=ts: (m := fake.message(ts)) and is_final(m) and m, timeout=60)
            assert "Succeeded* in" in final.text and final.buttons() == [], final.text
            with Store(db) as store:
                wait_until(lambda: store.get_lock("prod") is None, 10, "the lock to be released")
                trail = [(e.actor, e.action) for e in store.audit_events(deployment_id=int(dep_id))]
                assert trail.count((DEV, "deploy_started")) == 1 and trail.count((DEV, "deploy_finished")) == 1, trail
                approvals = [x.approver for x in store.approvals(int(dep_id))]
                approved = sorted(actor for actor, action in trail if action == "approved")
                assert approvals and sorted(approvals) == approved and len(set(approvals)) == len(approvals), trail
                refused = sorted(actor for actor, action in trail if action == "approval_refused")
                assert sorted(approvals + refused) == sorted([PM, PM2]), trail  # each click counted once
                assert "Approved by " + ", ".join(f"<@{x}>" for x in approvals) in final.text, final.text
                both_counted += len(approvals) == 2
                assert store.get(int(dep_id)).state is State.SUCCEEDED
                assert assert_known_end(store, one) == {one[0].name: version}
        with Store(db) as store:
            runs = [d for d in store.list_deployments("prod", limit=100) if d.kind is Kind.DEPLOY]
            assert len(runs) == rounds and all(d.state is State.SUCCEEDED for d in runs)
    assert both_counted, "the two clicks never overlapped: the race was not exercised"


def _answers(slack: SlackClient) -> bool:
    try:
        return slack.command("/deploy", "help", DEV).status_code == 200
    except OSError:
        return False
