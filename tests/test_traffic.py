"""The traffic layer against real balancers: nginx and HAProxy on this machine, in front of lab hosts.

What a rolling deploy with drain needs from it, shown under steady load: a drained host gets no new request, a
slow request it had in flight still finishes (and wait_drained says so only after), a restored host gets
requests again, no request through the balancer fails meanwhile, and stats() counts what was sent.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from bot.domain import State
from bot.host import Host, SSHOptions
from bot.targets.local import LocalTarget
from bot.targets.ssh import SSHTarget
from bot.traffic import Backend, TrafficError
from bot.traffic.base import DRAIN, READY, poll
from bot.traffic.haproxy import HAProxyTraffic, RemoteAdminSocket
from bot.traffic.nginx import NginxTraffic, _mark
from tests.balancers import HAProxy, Load, Nginx, Reply, get, require, send, slow_log, start_app

PORT = 8000
LOCAL = LocalTarget(Host(name="local", address="local"))


@pytest.fixture(params=["nginx", "haproxy"])
def kind(request) -> str:
    require(request.param)
    return request.param


@pytest.fixture
def balancer(kind, tmp_path):
    """balancer(backends) -> a started nginx or HAProxy in front of them (HAProxy's servers named s1, s2 ...,
    so hosts are found by address); stopped after the test."""
    started = []

    def start(backends: list[Backend]):
        if kind == "nginx":
            lb = Nginx(tmp_path / "nginx", [b.endpoint for b in backends])
        else:
            lb = HAProxy(tmp_path / "haproxy", {f"s{i}": b.endpoint for i, b in enumerate(backends, 1)})
        started.append(lb.start())
        traffic = lb.traffic(backends)
        assert poll(lambda: all(s.state == READY for s in traffic.stats().values()), 10), traffic.stats()
        return lb, traffic

    yield start
    for lb in started:
        lb.stop()


def by_host(replies: list[Reply], backends: list[Backend]) -> Counter:
    names = {b.endpoint: b.name for b in backends}
    return Counter(names.get(r.upstream or "", r.upstream) for r in replies)


def test_requests_spread_over_every_host_and_stats_count_them(kind, hosts, make_config, service, balancer):
    """The sample app as the bot deploys it; which host answered is the balancer's X-Upstream header (the app
    names only its version)."""
    three = hosts[:3]
    assert service(make_config(hosts=three)).deploy("prod", "v1.0.0", "cli:test").state is State.SUCCEEDED
    backends = [Backend.of(h, PORT) for h in three]
    lb, traffic = balancer(backends)
    before = traffic.stats()

    replies = send(lb.url + "/", count=300, threads=6)

    assert len(replies) == 300 and [r for r in replies if not r.ok] == []
    served = by_host(replies, backends)
    assert set(served) == {"h1", "h2", "h3"} and min(served.values()) >= 60, served
    after = traffic.stats()
    assert {n: after[n].requests - before[n].requests for n in served} == dict(served)
    assert all(after[n].errors_5xx == 0 and after[n].state == READY for n in served)
    print(f"\n{kind}: 300 requests to the sample app, 0 failed; by host {dict(served)}")


def test_drain_keeps_new_requests_off_a_host_lets_its_slow_request_finish_then_restores(kind, hosts, balancer):
    three = hosts[:3]
    for h in three:
        start_app(h, PORT)
    backends = [Backend.of(h, PORT) for h in three]
    lb, traffic = balancer(backends)
    drain_and_restore_under_load(kind, lb.url, traffic, three, backends)


def test_nginx_on_the_balancer_host_is_driven_over_ssh(hosts, lab, tmp_path):
    """The same cycle with every file read, write, test, reload and ps going over SSH: the lab's hosts share this
    machine's process table and /tmp, so h4 reached over SSH stands in for the balancer host."""
    require("nginx")
    three = hosts[:3]
    for h in three:
        start_app(h, PORT)
    backends = [Backend.of(h, PORT) for h in three]
    lb = Nginx(tmp_path / "nginx", [b.endpoint for b in backends]).start()
    try:
        h4 = hosts[3]
        ssh = SSHTarget(
            Host(name=h4.name, address=h4.address, user="root"),
            SSHOptions(key_file=lab.key_file, known_hosts=lab.known_hosts, connect_timeout=3),
        )
        traffic = lb.traffic(backends, target=ssh)
        drain_and_restore_under_load("nginx over SSH", lb.url, traffic, three, backends)
        assert any("-s reload" in c for c in h4.commands()), "the reload went over SSH"
        ssh.close()
    finally:
        lb.stop()


def drain_and_restore_under_load(label: str, url: str, traffic, three, backends: list[Backend]) -> None:
    """Steady load; a slow request on h1; drain h1, wait until drained, restore it; then what each host served."""
    h1 = backends[0]
    # slow requests until one runs on h1 (round robin: within three)
    slow: dict[str, Reply] = {}
    threads = []
    for i in range(6):
        tag = f"slow{i}"
        threads.append(
            threading.Thread(target=lambda t=tag: slow.__setitem__(t, get(f"{url}/slow?seconds=2.5&id={t}")))
        )
        threads[-1].start()
        assert poll(lambda t=tag: any(f"start {t}" in slow_log(h) for h in three), 3)
        if f"start {tag}" in slow_log(three[0]):
            break
    on_h1 = tag

    with Load(url + "/", threads=4, max_requests=1000, max_seconds=15, pause=0.02) as load:
        time.sleep(0.6)
        t_drain = time.monotonic()
        traffic.drain([h1])
        t_drained = time.monotonic()
        assert f"end {on_h1}" not in slow_log(three[0]), "the slow request must still be in flight"
        assert traffic.stats()["h1"].state == DRAIN

        assert traffic.wait_drained([h1], timeout=10)
        t_waited = time.monotonic()
        time.sleep(0.6)
        t_restore = time.monotonic()
        traffic.restore([h1])
        t_restored = time.monotonic()
        time.sleep(0.8)
    replies = load.stop()
    for t in threads:
        t.join(timeout=10)

    assert slow[on_h1].ok and slow[on_h1].upstream == h1.endpoint and slow[on_h1].ended <= t_waited
    assert t_waited - slow[on_h1].ended < 0.5, "wait_drained answered long after the last request finished"
    failed = [r for r in [*replies, *slow.values()] if not r.ok]
    assert failed == [], failed[:3]
    assert by_host(load.since(0, t_drain), backends)["h1"] > 0
    drained = by_host(load.since(t_drained, t_restore), backends)
    assert drained["h1"] == 0 and drained["h2"] > 10 and drained["h3"] > 10, drained
    assert by_host(load.since(t_restored), backends)["h1"] > 5
    stats = traffic.stats()
    sent = by_host([*replies, *slow.values()], backends)
    assert {n: stats[n].requests for n in sent} == dict(sent)
    assert all(s.state == READY and s.errors_5xx == 0 for s in stats.values())
    print(
        f"\n{label}: {len(replies)} requests + {len(slow)} slow, 0 failed; by host {dict(sent)}; "
        f"while h1 was drained {dict(drained)}; drain {t_drained - t_drain:.3f}s, "
        f"restore {t_restored - t_restore:.3f}s, drained {t_waited - slow[on_h1].ended:.3f}s after the slow one"
    )


def test_what_would_leave_no_server_or_names_a_stranger_is_refused(kind, hosts, balancer):
    two = hosts[:2]
    for h in two:
        start_app(h, PORT)
    backends = [Backend.of(h, PORT) for h in two]
    lb, traffic = balancer(backends)
    with pytest.raises(TrafficError, match="no server taking requests"):
        traffic.drain(backends)
    stranger = Backend("h9", "10.9.9.9", PORT)
    with pytest.raises(TrafficError, match=r"h9 \(10\.9\.9\.9:8000\) .*not"):
        traffic.drain([stranger])
    with pytest.raises(TrafficError, match="drain them first"):
        traffic.wait_drained([backends[0]], timeout=1)
    assert all(s.state == READY for s in traffic.stats().values())
    if kind == "nginx":  # a configuration nginx -t rejects is put back as it was
        before = lb.upstream.read_text()
        broken = lb.traffic(backends, test_command="sh -c 'echo emerg: bad upstream >&2; exit 1'")
        with pytest.raises(TrafficError, match="rejected .*put back as it was.*bad upstream"):
            broken.drain([backends[0]])
        assert lb.upstream.read_text() == before
    assert [r.ok for r in send(lb.url + "/", count=20, threads=2)] == [True] * 20


def test_an_unreachable_balancer_is_a_traffic_error_with_a_sentence(kind, hosts, lab, balancer, tmp_path):
    backends = [Backend.of(h, PORT) for h in hosts[:2]]
    for h in hosts[:2]:
        start_app(h, PORT)
    lb, traffic = balancer(backends)
    lb.stop()
    if kind == "haproxy":
        with pytest.raises(
            TrafficError,
            match=r"cannot reach HAProxy's admin socket .*admin\.sock \((connection "
            r"refused|no such file or directory)\); is HAProxy running, with "
            r"`stats socket",
        ):
            traffic.drain(backends[:1])
        with pytest.raises(TrafficError, match=r"admin socket .*missing\.sock \(no such file or directory\)"):
            HAProxyTraffic(str(tmp_path / "missing.sock"), "app").stats()
        with pytest.raises(TrafficError, match=r"admin socket 127\.0\.0\.1:\d+ \(connection refused\)"):
            HAProxyTraffic(lb.admin_address, "app").stats()
        return
    with pytest.raises(TrafficError, match=r"could not drain h1: .*nginx is not running \(no live process in "):
        traffic.drain(backends[:1])
    missing = NginxTraffic(LOCAL, str(tmp_path / "nowhere.conf"))
    with pytest.raises(TrafficError, match=r"could not read .*nowhere\.conf: exit 1: .*No such file"):
        missing.stats()
    # the balancer host over SSH, with SSH down: the target's own words
    h = hosts[1]
    h.kill_sshd()
    remote = NginxTraffic(
        SSHTarget(
            Host(name=h.name, address=h.address, user="root"),
            SSHOptions(key_file=lab.key_file, known_hosts=lab.known_hosts, connect_timeout=2),
        ),
        "/etc/nginx/conf.d/app-upstream.conf",
    )
    with pytest.raises(
        TrafficError,
        match=rf"nginx on h2: could not read .*h2 \(root@{h.address}:22\): "
        r"(connection refused|cannot connect)",
    ):
        remote.drain(backends[:1])


def test_haproxy_over_its_tcp_socket_and_through_a_target_with_socat(hosts, tmp_path):
    require("socat")
    two = hosts[:2]
    for h in two:
        start_app(h, PORT)
    backends = [Backend.of(h, PORT) for h in two]
    lb = HAProxy(tmp_path / "haproxy", {h.name: b.endpoint for h, b in zip(two, backends, strict=True)}).start()
    try:
        over_tcp = HAProxyTraffic(lb.admin_address, "app", backends)
        through_target = HAProxyTraffic(RemoteAdminSocket(LOCAL, lb.socket), "app", backends)
        assert poll(lambda: all(s.state == READY for s in over_tcp.stats().values()), 10)
        over_tcp.drain(backends[:1])
        assert through_target.stats()["h1"].state == DRAIN
        assert through_target.wait_drained(backends[:1], timeout=5)
        assert by_host(send(lb.url + "/", count=10, threads=2), backends) == {"h2": 10}
        through_target.restore(backends[:1])
        assert over_tcp.stats()["h1"].state == READY
        with pytest.raises(TrafficError, match="no backend 'nope' .*its backends: app"):
            HAProxyTraffic(RemoteAdminSocket(LOCAL, lb.socket), "nope").stats()
        with pytest.raises(TrafficError, match=r"admin socket /nowhere\.sock on local: exit 1: .*No such file"):
            HAProxyTraffic(RemoteAdminSocket(LOCAL, "/nowhere.sock"), "app").stats()
    finally:
        lb.stop()


# ---- the pieces, without balancers (no root needed) -------------------------------------------------------------
UPSTREAM = """upstream app {
    server 10.0.1.11:8000 weight=2;
    server 10.0.1.12:8000 max_fails=3 down;
    server 10.0.1.13;   # port 80
    # server 10.0.1.11:8000 down;
}
"""


def test_marking_servers_keeps_their_other_parameters_and_comments():
    drained = _mark(UPSTREAM, {"10.0.1.11:8000", "10.0.1.13:80"}, down=True)
    assert "server 10.0.1.11:8000 weight=2 down;" in drained and "server 10.0.1.13 down;   # port 80" in drained
    assert "# server 10.0.1.11:8000 down;" in drained and "max_fails=3 down;" in drained
    restored = _mark(drained, {"10.0.1.11:8000", "10.0.1.12:8000", "10.0.1.13:80"}, down=False)
    assert "weight=2;" in restored and "server 10.0.1.12:8000 max_fails=3;" in restored
    assert "server 10.0.1.13;" in restored


def test_the_access_log_count_takes_each_attempt_with_its_own_status(tmp_path):
    log = tmp_path / "access.log"
    log.write_text(
        '1.2.3.4 "GET / HTTP/1.1" 200 upstream_addr="10.0.1.11:8000" upstream_status="200"\n'
        '1.2.3.4 "GET / HTTP/1.1" 200 upstream_addr="10.0.1.12:8000, 10.0.1.11:8000" upstream_status="502, 200"\n'
        '1.2.3.4 "GET / HTTP/1.1" 503 upstream_addr="10.0.1.12:8000" upstream_status="503"\n'
        '1.2.3.4 "GET /x HTTP/1.1" 404 upstream_addr="-" upstream_status="-"\n'
        "a line in another format\n"
    )
    upstream = tmp_path / "up.conf"
    upstream.write_text(UPSTREAM)
    traffic = NginxTraffic(
        LOCAL,
        str(upstream),
        access_log=str(log),
        hosts=[Backend("h1", "10.0.1.11", 8000), Backend("h2", "10.0.1.12", 8000)],
    )
    stats = traffic.stats()
    assert (stats["h1"].requests, stats["h1"].errors_5xx, stats["h1"].state) == (2, 0, READY)
    assert (stats["h2"].requests, stats["h2"].errors_5xx, stats["h2"].state) == (2, 2, DRAIN)
    assert stats["10.0.1.13:80"].requests == 0 and stats["h1"].current is None
