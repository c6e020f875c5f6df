"""Blue-green slots on each host, end to end over real SSH: every lab host runs its own nginx inside its namespace
(own config, pid and log files under the host's /root), in front of the sample app's two slots (blue on 8001,
green on 8002). deploybot starts the new release on the idle slot, checks that slot's own health, flips the
host's nginx to it with a graceful reload, keeps the old slot through the verification window, and flips back
without a restart when something fails. Users' requests go through each host's nginx on port 8000."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml

from bot.config import ConfigError, parse_config
from bot.config_check import problems
from bot.domain import State
from bot.store import Store
from tests.balancers import Load, get, require

BG = "/root/bg"  # inside each host: nginx's files, and the upstream file deploybot rewrites
NGINX_CONF = """
user root;
worker_processes 1;
pid {bg}/nginx.pid;
error_log {bg}/error.log notice;
events {{ worker_connections 1024; }}
http {{
  access_log {bg}/access.log;
  client_body_temp_path {bg}/client_body_temp; proxy_temp_path {bg}/proxy_temp;
  fastcgi_temp_path {bg}/fastcgi_temp; uwsgi_temp_path {bg}/uwsgi_temp; scgi_temp_path {bg}/scgi_temp;
  server {{
    listen 8000;
    include {bg}/live.conf;
    location / {{ proxy_pass http://$deploybot_live; add_header X-Upstream $upstream_addr always; }}
  }}
}}
"""


def start_proxy(host) -> str:
    """nginx inside `host` (its network and mount namespaces), proxying port 8000 to the blue slot until the
    first flip; returns the nginx options that name its files."""
    nginx = require("nginx")
    folder = host.home / "bg"
    folder.mkdir(exist_ok=True)
    (folder / "nginx.conf").write_text(NGINX_CONF.format(bg=BG))
    # what a team starts from, before deploybot's first flip on the host writes its snippet (and reloads once)
    (folder / "live.conf").write_text("set $deploybot_live 127.0.0.1:8001;\n")
    options = f"-c {BG}/nginx.conf -e {BG}/error.log"
    deadline = time.monotonic() + 10
    # the reset before this test killed the previous test's nginx: its port may take a moment to be free
    while (res := host.run(f"{nginx} -t -q {options} && {nginx} {options}")).returncode:
        assert time.monotonic() < deadline, f"nginx did not start on {host.name}: {res.stderr}"
        time.sleep(0.1)
    return f"{nginx} {options}"


def blue_green(hosts, keep_old_slot: bool = False, verify_seconds: float = 1.0) -> dict:
    """The deploy.yml overrides of a blue-green environment on `hosts`, each with its nginx started."""
    nginx = [start_proxy(h) for h in hosts][0]
    return {
        "strategy": {
            "kind": "blue-green",
            "slots": {"blue": 8001, "green": 8002},
            "proxy": {
                "port": 8000,
                "config": f"{BG}/live.conf",
                "test": nginx.replace(" -c ", " -t -q -c "),
                "reload": nginx.replace(" -c ", " -s reload -c "),
                "pid_file": f"{BG}/nginx.pid",
            },
            "stop": "bin/stop",
            "keep_old_slot": keep_old_slot,
        },
        "health": {"url": "http://{host}:{port}/health"},
        "verify_seconds": verify_seconds,
    }


def through_proxy(host) -> str | None:
    """The version a user reaching the host's nginx gets."""
    return host.answering(8000)


def live_port(host) -> str:
    """The slot port a user's request through the host's nginx reached."""
    return get(f"http://{host.address}:8000/").upstream.rsplit(":", 1)[1]


def slot_pid(host, slot: str) -> int:
    return int((host.srv / "app" / "shared" / f"app-{slot}.pid").read_text())


def running(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def when(condition, timeout: float = 60):
    """Until condition() is true (polled); False if it never was."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def live_slot(host) -> str:
    """The slot the host's nginx sends requests to: green while its marker exists."""
    return "green" if (host.srv / "app" / "slots" / "green.live").exists() else "blue"


def test_blue_green_deploy_under_load_loses_no_request_and_a_slow_request_finishes_across_the_flip(
    hosts, make_config, service
):
    two = hosts[:2]
    svc = service(make_config(hosts=two, **blue_green(two)))
    first = svc.deploy("prod", "v1.0.0", "cli:test")
    assert first.state is State.SUCCEEDED, first.error
    # nginx starts on blue, so the first release goes to the idle slot, green
    assert [through_proxy(h) for h in two] == ["v1.0.0"] * 2 and [live_slot(h) for h in two] == ["green"] * 2
    assert [h.current() for h in two] == ["v1.0.0"] * 2 and [live_port(h) for h in two] == ["8002"] * 2

    slow: dict = {}
    window: dict = {}

    def watch():  # a slow request once the idle slot holds v1.1.0, so it is in flight across the flip
        link = two[0].srv / "app" / "slots" / "blue"
        if when(lambda: link.is_symlink() and link.readlink().name == "v1.1.0"):
            slow["reply"] = get(f"http://{two[0].address}:8000/slow?seconds=2", timeout=15)

    def flipped():  # the moment nginx flipped, and what the old slot (users no longer reach it) answers
        if when(lambda: live_slot(two[0]) == "blue"):
            window["flipped_at"] = time.monotonic()
            window["old_slot"] = two[0].answering(8002)

    threads = [threading.Thread(target=watch), threading.Thread(target=flipped)]
    loads = [Load(f"http://{h.address}:8000/", threads=2, max_requests=5000, max_seconds=60) for h in two]
    for load in loads:
        load.__enter__()
    for t in threads:
        t.start()
    second = svc.deploy("prod", "v1.1.0", "cli:test")
    for t in threads:
        t.join(timeout=30)
    replies = [r for load in loads for r in load.stop()]
    assert second.state is State.SUCCEEDED, second.error
    assert [through_proxy(h) for h in two] == ["v1.1.0"] * 2 and [live_slot(h) for h in two] == ["blue"] * 2
    assert [h.current() for h in two] == ["v1.1.0"] * 2 and [live_port(h) for h in two] == ["8001"] * 2
    failed = [r for r in replies if not r.ok]
    assert len(replies) > 100 and failed == [], (len(replies), failed[:3])
    # the slow request went to the old slot before the flip and completed there after it
    reply = slow["reply"]
    assert reply.ok and reply.upstream == "127.0.0.1:8002", reply
    assert reply.started < window["flipped_at"] < reply.ended
    # (b) the old slot served on through the window, and was stopped after it
    assert window["old_slot"] == "v1.0.0"
    assert [h.answering(8002) for h in two] == [None, None] and not running(slot_pid(two[0], "green"))
    stages = [s.stage for s in svc.store.stages(second.id) if s.host == two[0].name]
    assert stages.index("health") < stages.index("flip") < stages.index("verify") < stages.index("retire")


def test_keep_old_slot_keeps_it_warm_and_a_rollback_is_a_flip_without_restart(hosts, make_config, cli, db_path):
    two = hosts[:2]
    config = make_config(hosts=two, **blue_green(two, keep_old_slot=True, verify_seconds=0.3))
    dry = cli("deploy", "prod", "v1.0.0", "--dry-run", config=config)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "slots: blue on 8001, green on 8002" in dry.stdout and "[flip]" in dry.stdout
    assert "export APP_SLOT=green PORT=8002 && bin/restart" in dry.stdout and "-s reload -c /root/bg/" in dry.stdout
    assert "[retire]" not in dry.stdout  # kept warm
    for version in ("v1.0.0", "v1.1.0"):
        res = cli("deploy", "prod", version, "--yes", config=config)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "flip" in res.stdout
    assert [through_proxy(h) for h in two] == ["v1.1.0"] * 2
    assert [h.answering(8002) for h in two] == ["v1.0.0"] * 2  # kept warm on green
    blue = [slot_pid(h, "blue") for h in two]
    green = [slot_pid(h, "green") for h in two]
    before = {h.name: len(h.commands()) for h in two}

    res = cli("rollback", "prod", "v1.0.0", "--reason", "flip back", config=config)
    assert res.returncode == 0, res.stdout + res.stderr
    assert [through_proxy(h) for h in two] == ["v1.0.0"] * 2 and [live_slot(h) for h in two] == ["green"] * 2
    assert [h.current() for h in two] == ["v1.0.0"] * 2
    # no restart: the same processes serve, and the newer release is still warm on blue
    assert [slot_pid(h, "green") for h in two] == green and all(running(p) for p in green)
    assert [slot_pid(h, "blue") for h in two] == blue and [h.answering(8001) for h in two] == ["v1.1.0"] * 2
    # the rollback was one command per host, the flip: no preflight, no reload of nginx
    ran = {h.name: h.commands()[before[h.name] :] for h in two}
    assert all(len(cmds) == 1 and "green.live" in cmds[0] for cmds in ran.values()), ran
    assert "stages: flip\n" in res.stdout
    # status says which slot is live and what the other still runs (a rollback to it would be a flip)
    status = cli("status", "prod", config=config)
    assert status.stdout.count("slots: green v1.0.0 (live), blue v1.1.0 (warm)") == 2, status.stdout
    with Store(f"sqlite:///{db_path}") as store:
        rollback = store.list_deployments("prod", limit=1)[0]
        rows = [(s.stage, s.host, s.ok) for s in store.stages(rollback.id)]
        assert sorted(rows) == [("flip", "h1", True), ("flip", "h2", True)]
        assert all("it already ran, no restart" in s.excerpt for s in store.stages(rollback.id))
    restarts = [c for h in two for c in h.commands() if "APP_SLOT=" in c and "bin/restart" in c]
    assert len(restarts) == 4  # two deploys on two hosts; none for the rollback


def test_a_failed_health_on_the_idle_slot_never_moves_traffic(hosts, make_config, service):
    two = hosts[:2]
    overrides = blue_green(two)
    overrides["health"]["timeout"] = 2  # how long the idle slot gets to answer healthy
    svc = service(make_config(hosts=two, **overrides))
    assert svc.deploy("prod", "v1.0.0", "cli:test").state is State.SUCCEEDED
    with Load(f"http://{two[0].address}:8000/", threads=2, max_requests=3000, max_seconds=60) as load:
        broken = svc.deploy("prod", "v1.9.0", "cli:test")  # starts, but its /health answers 500
    assert broken.state is State.FAILED and broken.failed_stage == "health", broken
    assert [live_port(h) for h in two] == ["8002"] * 2 and [live_slot(h) for h in two] == ["green"] * 2
    assert [through_proxy(h) for h in two] == ["v1.0.0"] * 2 and [h.current() for h in two] == ["v1.0.0"] * 2
    assert [r for r in load.replies if not r.ok] == [] and len(load.replies) > 20
    assert not [s for s in svc.store.stages(broken.id) if s.stage == "flip"]


def test_a_snippet_nginx_refuses_is_put_back_and_nothing_flips(hosts, make_config, service):
    one = hosts[:1]
    overrides = blue_green(one)
    svc = service(make_config(hosts=one, **overrides))
    assert svc.deploy("prod", "v1.0.0", "cli:test").state is State.SUCCEEDED
    before = (one[0].home / "bg" / "live.conf").read_text()
    assert "green.live" in before  # the first flip wrote deploybot's snippet (and reloaded nginx once)
    # a snippet naming another variable: nginx.conf's proxy_pass still uses $deploybot_live, so nginx -t refuses
    overrides["strategy"]["proxy"]["variable"] = "shop_live"
    refused = service(make_config(hosts=one, **overrides)).deploy("prod", "v1.1.0", "cli:test")
    assert refused.state is State.FAILED and refused.failed_stage == "flip", refused
    assert 'unknown "deploybot_live" variable' in refused.error and "put back" in refused.error
    assert (one[0].home / "bg" / "live.conf").read_text() == before and live_slot(one[0]) == "green"
    assert through_proxy(one[0]) == "v1.0.0" and one[0].current() == "v1.0.0"


def test_a_flip_nginx_does_not_follow_fails_and_flips_back(hosts, make_config, service):
    """nginx proxying to a fixed port ignores the marker: the check through it after the flip catches that."""
    one = hosts[:1]
    overrides = blue_green(one, verify_seconds=0)
    overrides["health"]["timeout"] = 2  # how long users get to reach the new release through nginx
    svc = service(make_config(hosts=one, **overrides))
    assert svc.deploy("prod", "v1.0.0", "cli:test").state is State.SUCCEEDED  # on green, port 8002
    conf = one[0].home / "bg" / "nginx.conf"
    conf.write_text(conf.read_text().replace("http://$deploybot_live", "http://127.0.0.1:8002"))
    assert one[0].run(overrides["strategy"]["proxy"]["reload"]).returncode == 0
    assert when(lambda: live_port(one[0]) == "8002")

    outcome = svc.deploy("prod", "v1.1.0", "cli:test")
    assert outcome.state is State.ROLLED_BACK and outcome.failed_stage == "flip", outcome
    assert "not healthy after 2s" in outcome.error and "v1.0.0" in outcome.error, outcome.error
    # flipped back: the marker names green again, which nginx serves all along
    assert live_slot(one[0]) == "green" and through_proxy(one[0]) == "v1.0.0" and one[0].current() == "v1.0.0"
    reverts = [s for s in svc.store.stages(outcome.id) if s.stage == "revert"]
    assert [s.ok for s in reverts] == [True]


def test_a_failure_in_the_window_flips_back_without_restarting_the_old_slot(hosts, make_config, service):
    two = hosts[:2]
    config = make_config(hosts=two, **blue_green(two, verify_seconds=0.3))
    assert service(config).deploy("prod", "v1.0.0", "cli:test").state is State.SUCCEEDED
    data = yaml.safe_load(config.read_text())
    data["environments"]["prod"]["verify_seconds"] = 5  # a window long enough to break the new slot in it
    config.write_text(yaml.safe_dump(data))
    svc = service(config)
    green = [slot_pid(h, "green") for h in two]

    def break_the_new_slot():  # once h1 serves blue and the flip's check passed, the new process dies in the window
        if when(lambda: live_slot(two[0]) == "blue"):
            time.sleep(1.0)
            two[0].run(f"kill -9 {slot_pid(two[0], 'blue')}")

    killer = threading.Thread(target=break_the_new_slot)
    killer.start()
    outcome = svc.deploy("prod", "v1.1.0", "cli:test")
    killer.join(timeout=30)
    assert outcome.state is State.ROLLED_BACK and outcome.failed_stage == "verify", outcome
    assert [through_proxy(h) for h in two] == ["v1.0.0"] * 2 and [live_slot(h) for h in two] == ["green"] * 2
    assert [h.current() for h in two] == ["v1.0.0"] * 2
    assert [slot_pid(h, "green") for h in two] == green and all(running(p) for p in green)  # the same processes
    reverts = [s for s in svc.store.stages(outcome.id) if s.stage == "revert"]
    assert sorted(s.host for s in reverts) == ["h1", "h2"] and all(s.ok for s in reverts)


def test_a_deploy_killed_in_its_window_is_taken_over_by_a_flip_back(hosts, make_config, cli, cli_env, db_path):
    from tests.test_leases import start_deploy, wait_for_line

    two = hosts[:2]
    config = make_config(hosts=two, **blue_green(two, verify_seconds=0.3))
    assert cli("deploy", "prod", "v1.0.0", "--yes", config=config).returncode == 0
    data = yaml.safe_load(config.read_text())
    data["environments"]["prod"]["verify_seconds"] = 30  # the next deploy is still in its window when killed
    config.write_text(yaml.safe_dump(data))
    green = [slot_pid(h, "green") for h in two]
    doomed = start_deploy(cli_env, config, "v1.1.0", DEPLOYBOT_LEASE_TTL="3")
    wait_for_line(doomed, "… verify")
    os.killpg(doomed.pid, signal.SIGKILL)  # the bot dies with green live and blue still running
    doomed.wait()
    assert [live_slot(h) for h in two] == ["blue"] * 2
    time.sleep(3.5)  # the lease expires
    locked = cli("lock", "prod", "--reason", "incident", config=config)  # a changing command takes over first
    assert locked.returncode == 0, locked.stdout + locked.stderr
    assert [live_slot(h) for h in two] == ["green"] * 2 and [through_proxy(h) for h in two] == ["v1.0.0"] * 2
    assert [slot_pid(h, "green") for h in two] == green and all(running(p) for p in green)  # flipped, not restarted
    with Store(f"sqlite:///{db_path}") as store:
        killed = store.list_deployments("prod", limit=2)[0]
        assert (killed.version, killed.state.value) == ("v1.1.0", "rolled_back")


@pytest.mark.parametrize("approver", ["U0PM"])
def test_blue_green_from_slack(world, hosts, approver):
    from tests.test_slack_flow import request_message, wait_final

    two = hosts[:2]
    bot = world(two, approval={"approvers": [approver]}, **blue_green(two))
    for version in ("v1.0.0", "v1.1.0"):
        since = len(bot.fake.calls)
        assert bot.slack.command("/deploy", f"prod {version}", "U0DEV").status_code == 200
        req = request_message(bot, since=since)
        value = next(
            e["value"]
            for b in req.params["blocks"]
            if b.get("type") == "actions"
            for e in b["elements"]
            if e["action_id"] == "approve"
        )
        assert "blue-green" in req.text
        bot.slack.click("approve", value, approver, req.params["_ts"])
        final = wait_final(bot, req.params["_ts"])
        assert "Succeeded* in" in final.text and "flip" in final.text and "retire" in final.text, final.text
    assert [through_proxy(h) for h in two] == ["v1.1.0"] * 2 and [live_slot(h) for h in two] == ["blue"] * 2
    # /deploy status: the live slot first, the old one stopped after the window (its release still linked)
    mark = bot.fake.mark()
    bot.slack.command("/deploy", "status prod", "U0DEV")
    answer = bot.fake.wait_for(lambda: bot.fake.of("response_url", since=mark))[0]
    for h in two:
        line = f"`{h.name}` current v1.1.0, answers v1.1.0, slots: blue v1.1.0 (live), green v1.0.0 (stopped)"
        assert line in answer.text, answer.text


# ---- the configuration: refused with its reason before anything connects (no root needed) ------------------
def _config(strategy: dict, url: str = "http://{host}:{port}/health") -> dict:
    env = {"hosts": ["10.0.0.1"], "path": "/srv/shop", "restart": "bin/restart", "health": {"url": url}}
    return {
        "app": {"name": "shop", "artifact": "/tmp/shop-{version}.tar.gz"},
        "environments": {"prod": {**env, "strategy": strategy}},
    }


PROXY = {"port": 8000, "config": "/etc/nginx/conf.d/shop-live.conf", "test": "nginx -t", "reload": "nginx -s reload"}
GOOD = {"kind": "blue-green", "slots": {"blue": 8001, "green": 8002}, "proxy": PROXY, "stop": "bin/stop"}


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"slots": None}, "two slots"),
        ({"slots": {"blue": 8001}}, "two slots"),
        ({"slots": {"blue": 8001, "green": 8001}}, "distinct ports"),
        ({"slots": {"blue": 8001, "green": 70000}}, "not in 1..65535"),
        ({"slots": {"Blue!": 8001, "green": 8002}}, "slot name"),
        ({"proxy": None}, "proxy: {port, config, test, reload}"),
        ({"proxy": {**PROXY, "port": 8002}}, "a port of its own"),
        ({"proxy": {k: v for k, v in PROXY.items() if k != "reload"}}, "reload"),
        ({"proxy": {**PROXY, "test": ""}}, "test"),
        ({"stop": None}, "keep_old_slot"),
    ],
)
def test_a_blue_green_strategy_missing_a_part_is_refused_with_its_reason(change, said):
    with pytest.raises(ConfigError) as err:
        parse_config(_config({**GOOD, **change}))
    assert said in str(err.value) and "environments.prod.strategy" in str(err.value)


def test_check_config_wants_the_slot_port_in_the_health_url_and_the_proxy_port_outside_a_slot():
    cfg = parse_config(_config({**GOOD, "keep_old_slot": True, "stop": None}))
    env = cfg.environment("prod")
    assert env.health_url(env.hosts[0]) == "http://10.0.0.1:8000/health"  # what users reach: the proxy
    assert env.health_url(env.hosts[0], 8002) == "http://10.0.0.1:8002/health"  # one slot
    assert [p for p in problems(cfg) if "health" in p] == []
    fixed = parse_config(_config(GOOD, url="http://{host}:8001/health"))
    assert any(p.startswith("environments.prod.health.url: blue-green checks each slot") for p in problems(fixed))


# ---- which slot a publish goes to (pure logic; the SSH tests above show it on hosts) -------------------------
def test_a_slot_is_warm_only_when_it_points_at_the_release_and_answers_healthy_on_it_now():
    from bot.engine import slots
    from bot.targets.http import Probe

    env = parse_config(_config(GOOD)).environment("prod")
    host = env.hosts[0]
    seen = slots.HostSlots()
    seen.read("live_slot=blue\nslot:blue=v1.0.0\nslot:green=v0.9.0\ncurrent=v1.0.0\n")
    assert (seen.known, seen.live, seen.links) == (True, "blue", {"blue": "v1.0.0", "green": "v0.9.0"})
    asked = []

    def probe(healthy: bool):
        def answer(url, cfg, expected, timeout=2.0):
            asked.append(url)
            return Probe(healthy, "")

        return answer

    cold = slots.choose(env, host, seen, "v1.1.0", probe(True))
    assert cold == slots.Target("green", 8002, "blue") and asked == []  # nothing on v1.1.0: nobody asked
    back = slots.choose(env, host, seen, "v0.9.0", probe(True))
    assert back == slots.Target("green", 8002, "blue", warm=True) and asked == ["http://10.0.0.1:8002/health"]
    assert slots.choose(env, host, seen, "v0.9.0", probe(False)) == slots.Target("green", 8002, "blue")
    first = slots.choose(env, host, slots.HostSlots(), "v1.0.0", probe(True))
    assert first == slots.Target("blue", 8001, None)  # a first deploy: the first slot, nothing to retire
