"""The lab itself: separate hosts reached over real SSH with verified host keys, the sample app served from
one, a cut host that times out, and the command log that later proves "nothing reached a host".

Timings are printed (run with -s) and attached to the report as properties; the bounds asserted are loose
on purpose (10x the measured values) so a slow CI machine does not fail, but a hang does.
"""

from __future__ import annotations

import json
import socket
import tarfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import paramiko
import pytest
from fabric import Config as FabricConfig
from fabric import Connection

from bot.sampleapp import build_artifacts, write_shared_env
from tests.conftest import SHARED_ENV

pytestmark = pytest.mark.timeout(120)
# in_stream False: invoke would otherwise read pytest's captured stdin (and slowly forward it)
FABRIC = {"load_ssh_configs": False, "run": {"hide": True, "warn": True, "in_stream": False}}


def connect(lab, host, known_hosts=None, timeout: float = 3) -> Connection:
    """As the bot connects: our key only, host keys from the lab's known_hosts, unknown keys rejected."""
    conn = Connection(
        host.address,
        user="root",
        connect_timeout=timeout,
        connect_kwargs={
            "key_filename": str(lab.key_file),
            "allow_agent": False,
            "look_for_keys": False,
            "banner_timeout": timeout,
            "auth_timeout": timeout,
        },
        config=FabricConfig(overrides=FABRIC),
    )
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    conn.client.load_host_keys(str(known_hosts or lab.known_hosts))
    return conn


def health(host, port: int = 8000) -> tuple[int | None, dict | str]:
    try:
        with urllib.request.urlopen(f"http://{host.address}:{port}/health", timeout=1) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError as exc:
        return None, str(exc)


def wait_for_version(host, version: str, limit: float = 5) -> float:
    """Seconds until /health answers 200 with `version`."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        code, body = health(host)
        if code == 200 and isinstance(body, dict) and body.get("version") == version:
            return time.monotonic() - start
        time.sleep(0.005)
    raise AssertionError(f"{host.name} never answered {version}; last: {health(host)}")


def in_release(version: str, command: str) -> str:
    """What the engine runs: inside the release, deploy variables and shared/.env exported."""
    rel = f"/srv/app/releases/{version}"
    return (
        f"cd {rel} && export APP_PATH=/srv/app APP_SHARED=/srv/app/shared RELEASE_PATH={rel} "
        f"DEPLOY_VERSION={version} && set -a && . /srv/app/shared/.env && set +a && {command}"
    )


def report(record_property, name: str, seconds: float) -> None:
    record_property(name, round(seconds, 3))
    print(f"\n[lab timing] {name}: {seconds * 1000:.0f} ms")


def test_each_host_is_its_own_machine_over_ssh(lab, hosts, record_property):
    for h in hosts:
        (h.srv / "whoami").write_text(f"I am {h.name}\n")

    start = time.monotonic()
    with connect(lab, hosts[0]) as conn:
        res = conn.run("hostname; cat /srv/whoami")
    report(record_property, "cold_connect_plus_command_1_host", time.monotonic() - start)
    assert res.ok and res.stdout.split("\n")[:2] == ["h1", "I am h1"]

    def one(h) -> str:
        with connect(lab, h) as conn:
            return conn.run("cat /srv/whoami; ip -4 -o addr show; ls -A /root").stdout

    start = time.monotonic()
    with ThreadPoolExecutor(len(hosts)) as pool:
        outs = list(pool.map(one, hosts))
    report(record_property, f"cold_connect_plus_command_{len(hosts)}_hosts_parallel", time.monotonic() - start)
    for h, out in zip(hosts, outs, strict=True):
        assert out.startswith(f"I am {h.name}\n")  # its own /srv
        assert f"inet {h.address}/24" in out  # its own address
        assert ".bashrc" not in out  # a clean /root: no pyenv init on every command
    assert time.monotonic() - start < 10

    assert hosts[0].commands() == ["hostname; cat /srv/whoami", "cat /srv/whoami; ip -4 -o addr show; ls -A /root"]
    assert hosts[0].sessions() == 2 and hosts[1].sessions() == 1


def test_unknown_host_key_is_rejected_and_nothing_runs(lab, hosts, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    conn = connect(lab, hosts[0], known_hosts=empty)
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        conn.run("touch /srv/pwned")
    conn.close()
    # a known_hosts entry for another host's key is an impostor
    wrong = tmp_path / "wrong_known_hosts"
    other_key = lab.known_hosts.read_text().splitlines()[1].split(" ", 1)[1]
    wrong.write_text(f"{hosts[0].address} {other_key}\n")
    conn = connect(lab, hosts[0], known_hosts=wrong)
    with pytest.raises(paramiko.BadHostKeyException):
        conn.run("touch /srv/pwned")
    conn.close()
    assert hosts[0].commands() == [] and hosts[0].sessions() == 0
    assert hosts[0].connections() == 2  # the attempts were seen, and refused before any login
    assert not (hosts[0].srv / "pwned").exists()


def test_sample_app_unpacked_and_restarted_over_ssh_answers_health(lab, hosts, artifacts, record_property):
    h = hosts[0]
    write_shared_env(h.srv / "app" / "shared", SHARED_ENV)
    with connect(lab, h) as conn:
        for version in ("v1.0.0", "v1.1.0"):
            conn.put(str(artifacts / f"sampleapp-{version}.tar.gz"), f"/srv/app/sampleapp-{version}.tar.gz")
            res = conn.run(
                f"mkdir -p /srv/app/releases/{version} && "
                f"tar -xzf /srv/app/sampleapp-{version}.tar.gz -C /srv/app/releases/{version}"
            )
            assert res.ok, res.stderr
        start = time.monotonic()
        assert conn.run(in_release("v1.0.0", "bin/restart")).ok
        cold = wait_for_version(h, "v1.0.0")
        report(record_property, "restart_to_healthy_first_start", time.monotonic() - start)

        samples = []
        for version in ("v1.1.0", "v1.0.0", "v1.1.0", "v1.0.0", "v1.1.0"):
            start = time.monotonic()
            res = conn.run(in_release(version, "bin/restart"))
            assert res.ok, res.stderr
            wait_for_version(h, version)
            samples.append(time.monotonic() - start)
        report(record_property, "restart_to_healthy_switch_median", sorted(samples)[len(samples) // 2])
        assert cold < 5 and max(samples) < 3

    code, body = health(h)
    assert code == 200 and body == {"version": "v1.1.0", "status": "ok", "host": h.name}
    with urllib.request.urlopen(f"http://{h.address}:8000/", timeout=1) as resp:
        assert resp.read().decode().startswith("sampleapp v1.1.0")
    apps = [p for p in h.processes() if p.alive and "app.py" in p.cmdline]
    assert len(apps) == 1  # the old process was stopped, not left behind
    assert str(apps[0].pid) == (h.srv / "app" / "shared" / "app.pid").read_text().strip()
    assert health(hosts[1])[0] is None  # only that host runs it
    assert any("sftp-server" in c for c in h.commands())  # uploads are recorded too


@pytest.mark.parametrize("version, expect", [("v1.9.0", 500), ("v1.8.0", "v0.0.0-stale"), ("v1.6.0", None)])
def test_broken_builds_fail_in_their_own_way(hosts, artifacts, version, expect):
    h = hosts[0]
    write_shared_env(h.srv / "app" / "shared", SHARED_ENV)
    release = h.srv / "app" / "releases" / version
    release.mkdir(parents=True)
    with tarfile.open(artifacts / f"sampleapp-{version}.tar.gz") as tar:
        tar.extractall(release, filter="data")
    assert h.run(in_release(version, "bin/restart")).returncode == 0  # restart returns at once either way
    time.sleep(0.5)
    code, body = health(h)
    if expect is None:
        assert code is None
        assert "crashing on start" in (h.srv / "app" / "shared" / "app.log").read_text()
    elif expect == 500:
        assert code == 500
    else:
        assert code == 200 and body["version"] == expect


def test_migrate_records_or_fails_loudly(hosts, artifacts):
    h = hosts[0]
    write_shared_env(h.srv / "app" / "shared", SHARED_ENV)
    for version in ("v1.0.0", "v1.7.0"):
        release = h.srv / "app" / "releases" / version
        release.mkdir(parents=True)
        with tarfile.open(artifacts / f"sampleapp-{version}.tar.gz") as tar:
            tar.extractall(release, filter="data")
    assert h.run(in_release("v1.0.0", "bin/migrate")).returncode == 0
    failed = h.run(in_release("v1.7.0", "bin/migrate"))
    assert failed.returncode == 1 and "migration" in failed.stderr
    assert (h.srv / "app" / "shared" / "migrations.log").read_text().split() == ["v1.0.0"]


def test_cut_host_times_out_and_restore_brings_it_back(lab, hosts):
    h = hosts[2]
    h.cut()
    start = time.monotonic()
    with pytest.raises((TimeoutError, socket.timeout)):
        socket.create_connection((h.address, 22), timeout=1)
    conn = connect(lab, h, timeout=1)
    with pytest.raises((TimeoutError, socket.timeout)):
        conn.open()
    conn.close()
    assert time.monotonic() - start < 5  # bounded by the timeouts, not a hang
    assert connect(lab, hosts[0]).run("true").ok  # the others are unaffected
    h.restore()
    with connect(lab, h) as conn:
        assert conn.run("hostname").stdout.strip() == h.name


def test_killed_sshd_refuses_connections_but_the_host_keeps_its_files(lab, hosts):
    h = hosts[1]
    (h.srv / "kept").write_text("still here\n")
    h.kill_sshd()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((h.address, 22), timeout=1)
    assert h.run("cat /srv/kept").stdout == "still here\n"  # run() does not need sshd
    h.start_sshd()
    with connect(lab, h) as conn:
        assert conn.run("cat /srv/kept").stdout == "still here\n"


def test_reset_kills_leftover_processes_and_wipes_srv(lab, hosts):
    h = hosts[3]
    with connect(lab, h) as conn:
        conn.run("mkdir -p /srv/app && setsid sleep 1000 >/dev/null 2>&1 < /dev/null &")
    deadline = time.monotonic() + 3
    while not any("sleep 1000" in p.cmdline for p in h.processes()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert any(p.alive and "sleep 1000" in p.cmdline for p in h.processes())
    assert h.commands() and h.sessions() == 1
    h.reset()
    assert not any(p.alive for p in h.processes())
    assert list(h.srv.iterdir()) == [] and h.commands() == [] and h.sessions() == 0
    assert h.sshd_running()


def test_commands_are_recorded_verbatim(lab, hosts):
    command = "printf '%s\\n' 'a b' \"$HOME\"\necho second line"
    with connect(lab, hosts[0]) as conn:
        assert conn.run(command).stdout == "a b\n/root\nsecond line\n"
    assert hosts[0].commands() == [command]
    assert all(h.commands() == [] for h in hosts[1:])


def test_artifacts_hold_the_app_and_can_be_padded(tmp_path):
    built = build_artifacts(tmp_path, {"v3.0.0": "ok"}, app_name="demo", size_bytes=5 * 1024 * 1024)
    path = built["v3.0.0"]
    assert path.name == "demo-v3.0.0.tar.gz"
    assert path.stat().st_size > 5 * 1024 * 1024  # random padding does not compress
    with tarfile.open(path) as tar:
        names = set(tar.getnames())
        assert {"app.py", "VERSION", "bin/restart", "bin/migrate", "bin/stop"} <= names
        assert tar.getmember("bin/restart").mode & 0o111
        assert tar.extractfile("VERSION").read() == b"v3.0.0\n"
    with pytest.raises(ValueError):
        build_artifacts(tmp_path, {"v3.0.1": "flaky"})
