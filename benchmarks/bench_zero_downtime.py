"""Requests lost while deploying and rolling back under steady load through a real balancer, per strategy.

Each strategy runs N cycles of deploy + rollback of the sample app on namespace hosts behind HAProxy or nginx on
this machine, while a bounded load loop sends about --rate requests a second through the balancer and, every half
second, a slow request (2 s) that is in flight across the switches. A request fails when it gets no answer, a
non-2xx answer, or times out (10 s).

  in-place               every host switched and restarted at once (HAProxy in front, no drain)
  rolling                one host at a time, no drain: the balancer only notices a restart by its failures
  rolling-drain-haproxy  one host at a time, taken out through HAProxy's runtime API first, put back when healthy
  rolling-drain-nginx    the same through nginx's upstream file and a graceful reload

  canary-haproxy         the first host alone for 2 s under the gates, then one host at a time with drain
  blue-green             each host's own nginx in front of two slots: start the idle slot, check it, flip; the
                         old slot stays warm (keep_old_slot), so each rollback is a flip back with no restart;
                         HAProxy in front of the hosts' nginx
Run as root (network namespaces):  python benchmarks/bench_zero_downtime.py [--hosts 5,20] [--cycles 3] [--rate 200]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.config import load_config  # noqa: E402
from bot.domain import State  # noqa: E402
from bot.sampleapp import build_artifacts, write_shared_env  # noqa: E402
from bot.service import DeployService  # noqa: E402
from bot.store import Store  # noqa: E402
from tests.balancers import HAProxy, Nginx  # noqa: E402
from tests.lab.hosts import HostLab  # noqa: E402
from tests.test_blue_green import blue_green  # noqa: E402

COMMAND = "python benchmarks/bench_zero_downtime.py"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no http_proxy from the environment
STRATEGIES = ("in-place", "rolling", "rolling-drain-haproxy", "rolling-drain-nginx", "canary-haproxy", "blue-green")


@dataclass(frozen=True)
class Answer:
    started: float
    ok: bool  # a 2xx answer in time
    seconds: float
    version: str | None  # what the app said it runs ("sampleapp v1.1.0"), None without an answer


def fetch(url: str) -> Answer:
    started = time.monotonic()
    try:
        with _OPENER.open(url, timeout=10) as resp:
            body = resp.read().decode(errors="replace").split()
            ok, version = 200 <= resp.status < 300, body[1] if len(body) > 1 else None
    except OSError:
        ok, version = False, None
    return Answer(started, ok, time.monotonic() - started, version)


@dataclass
class Window:
    """One deploy or rollback: while it runs either version may answer; before and after, only one."""

    started: float
    ended: float
    before: str
    after: str


def unexpected(answers: list[Answer], windows: list[Window]) -> int:
    """Answers naming a version that should not be serving when the request started: a third version, or the
    old one after the switch had finished (slow requests are judged by when they started)."""
    count = 0
    for a in answers:
        if not a.ok:
            continue
        during = next((w for w in windows if w.started <= a.started <= w.ended), None)
        if during:
            allowed = {during.before, during.after}
        else:
            done = [w for w in windows if w.ended < a.started]
            allowed = {done[-1].after if done else windows[0].before}
        count += a.version not in allowed
    return count


class _Load:
    """About `rate` GETs a second from a few threads, plus one slow request every half second; bounded in time."""

    def __init__(self, url: str, rate: int, max_seconds: float, sent, stop):
        self.url, self.rate, self.deadline = url, rate, time.monotonic() + max_seconds
        self.sent, self.stop = sent, stop
        self.answers: list[Answer] = []
        self._lock = threading.Lock()

    def _keep(self, answer: Answer) -> None:
        with self._lock:
            self.answers.append(answer)
            self.sent.value = len(self.answers)

    def _fast(self, index: int) -> None:
        every = 8 / self.rate
        nxt = time.monotonic() + index * every / 8
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            self._keep(fetch(self.url + "/"))
            nxt += every
            self.stop.wait(max(0.0, nxt - time.monotonic()))

    def _slow(self) -> None:
        while not self.stop.wait(0.5) and time.monotonic() < self.deadline:
            threading.Thread(target=lambda: self._keep(fetch(self.url + "/slow?seconds=2")), daemon=True).start()

    def run(self, results) -> None:
        threads = [threading.Thread(target=self._fast, args=(i,), daemon=True) for i in range(8)]
        threads.append(threading.Thread(target=self._slow, daemon=True))
        for t in threads:
            t.start()
        self.stop.wait(self.deadline - time.monotonic())
        for t in threads:
            t.join(timeout=15)
        time.sleep(2.5)  # the last slow requests finish
        with self._lock:
            results.send([tuple(vars(a).values()) for a in self.answers])


class SteadyLoad:
    """The users: _Load in a process of its own, so that its threads never wait for the bot's interpreter (nor
    the bot for theirs). Answers carry time.monotonic(), one clock for both processes."""

    def __init__(self, url: str, rate: int, max_seconds: float = 900):
        ctx = multiprocessing.get_context("fork")
        self._sent, self._stop = ctx.Value("i", 0), ctx.Event()
        self._results, results = ctx.Pipe(duplex=False)
        load = _Load(url, rate, max_seconds, self._sent, self._stop)
        self._process = ctx.Process(target=load.run, args=(results,), daemon=True)
        self.answers: list[Answer] = []

    @property
    def sent(self) -> int:
        """Answers so far (the loop below runs until enough)."""
        return self._sent.value

    def __enter__(self) -> SteadyLoad:
        self._process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.answers = [Answer(*a) for a in self._results.recv()]
        self._process.join(timeout=30)


def config(work: Path, lab: HostLab, hosts, artifacts: Path, strategy: str, lb) -> Path:
    env = {
        "hosts": [{"host": f"root@{h.address}", "name": h.name} for h in hosts],
        "ssh": {"key_file": str(lab.key_file), "known_hosts": str(lab.known_hosts), "connect_timeout": 5},
        "path": "/srv/app",
        "restart": "sh bin/restart",
        "backup": {"release_archive": False},
        "health": {"url": "http://{host}:8000/health", "timeout": 10, "interval": 0.05},
        "min_free_mb": 10,
        "strategy": {"kind": "in-place"} if strategy == "in-place" else {"kind": "rolling", "batch_size": 1},
    }
    if strategy == "blue-green":  # each host's own nginx (started by measure) in front of its two slots
        health = env["health"]
        env.update(blue_green(hosts, keep_old_slot=True, verify_seconds=0))
        env["health"] = {**health, "url": "http://{host}:{port}/health"}
    if strategy == "canary-haproxy":
        env["strategy"] = {"kind": "canary", "canary_hosts": 1, "canary_seconds": 2, "batch_size": 1}
    if strategy in ("rolling-drain-haproxy", "canary-haproxy"):
        env["traffic"] = {"balancer": "haproxy", "socket": lb.socket, "backend": "app", "port": 8000}
    elif strategy == "rolling-drain-nginx":
        env["traffic"] = {
            "balancer": "nginx",
            "upstream_file": str(lb.upstream),
            "pid_file": str(lb.pid),
            "access_log": str(lb.access_log),
            "test": f"{lb.command} -t",
            "reload": f"{lb.command} -s reload",
            "port": 8000,
        }
    path = work / f"deploy-{strategy}-{len(hosts)}.yml"
    app = {"name": "sampleapp", "artifact": f"{artifacts}/sampleapp-{{version}}.tar.gz"}
    path.write_text(yaml.safe_dump({"app": app, "environments": {"prod": env}}))
    return path


def measure(
    lab: HostLab, hosts, artifacts: Path, strategy: str, cycles: int, rate: int, min_requests: int, work: Path
) -> dict:
    for h in hosts:
        h.reset()
        write_shared_env(h.srv / "app" / "shared", {"PORT": "8000"})
    endpoints = [f"{h.address}:8000" for h in hosts]
    lb = (
        Nginx(work / f"nginx-{strategy}-{len(hosts)}", endpoints)
        if strategy.endswith("nginx")
        else HAProxy(work / f"haproxy-{strategy}-{len(hosts)}", {f"s{i}": e for i, e in enumerate(endpoints, 1)})
    )
    lb.start()
    svc = DeployService(
        load_config(config(work, lab, hosts, artifacts, strategy, lb)),
        Store(f"sqlite:///{work / f'{strategy}-{len(hosts)}.db'}"),
    )
    deploys, rollbacks, windows = [], [], []
    try:
        assert svc.deploy("prod", "v1.0.0", "bench").state is State.SUCCEEDED
        time.sleep(1.5)  # the balancer's checks see every host up
        with SteadyLoad(lb.url, rate) as load:
            while len(deploys) < cycles or load.sent < min_requests:
                for target, kind in (("v1.1.0", "deploy"), ("v1.0.0", "rollback")):
                    t0 = time.monotonic()
                    if kind == "deploy":
                        done = svc.deploy("prod", target, "bench")
                    else:
                        done = svc.rollback("prod", "bench", target)
                    t1 = time.monotonic()
                    assert done.state is State.SUCCEEDED, (kind, done.error)
                    (deploys if kind == "deploy" else rollbacks).append(t1 - t0)
                    windows.append(Window(t0, t1, "v1.0.0" if kind == "deploy" else "v1.1.0", target))
    finally:
        svc.pool.close()
        lb.stop()
    answers = load.answers
    ms = sorted(a.seconds * 1000 for a in answers if a.ok)
    return {
        "requests": len(answers),
        "failed": sum(not a.ok for a in answers),
        "unexpected": unexpected(answers, windows),
        "cycles": len(deploys),
        "p50": statistics.median(ms) if ms else 0,
        "p99": ms[int(len(ms) * 0.99) - 1] if ms else 0,
        "deploy": statistics.median(deploys),
        "rollback": statistics.median(rollbacks),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", default="5,20")
    parser.add_argument("--cycles", type=int, default=5, help="at least this many deploy+rollback cycles")
    parser.add_argument("--min-requests", type=int, default=20_000, help="...and more cycles until this many requests")
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    args = parser.parse_args()
    counts = [int(n) for n in args.hosts.split(",")]
    lab = HostLab.claim(max(counts))
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="deploybot-bench-zd-") as tmp:
            work = Path(tmp)
            artifacts = work / "artifacts"
            build_artifacts(artifacts, {"v1.0.0": "ok", "v1.1.0": "ok"})
            for n in counts:
                for strategy in args.strategies.split(","):
                    print(f"{strategy}, {n} hosts ...", file=sys.stderr, flush=True)
                    hosts = lab.hosts[:n]
                    result = measure(lab, hosts, artifacts, strategy, args.cycles, args.rate, args.min_requests, work)
                    rows.append((strategy, n, result))
    finally:
        lab.stop()
    print(
        f"\nRequests through the balancer during at least {args.cycles} deploy+rollback cycles and "
        f"{args.min_requests:,} requests, ~{args.rate} req/s plus a 2 s request every 0.5 s\n"
        f"(`{COMMAND} --hosts {args.hosts} --cycles {args.cycles} --min-requests {args.min_requests} "
        f"--rate {args.rate} --strategies {args.strategies}`)\n"
    )
    print("| strategy | hosts | cycles | requests | failed | wrong version | p50 ms | p99 ms | deploy s | rollback s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for strategy, n, r in rows:
        print(
            f"| {strategy} | {n} | {r['cycles']} | {r['requests']:,} | {r['failed']:,} | {r['unexpected']:,} | "
            f"{r['p50']:.0f} | {r['p99']:.0f} | {r['deploy']:.2f} | {r['rollback']:.2f} |"
        )
    print()
    for strategy, n, r in rows:
        print(f"TOTAL strategy={strategy} hosts={n} requests={r['requests']} failed={r['failed']}")


if __name__ == "__main__":
    main()
