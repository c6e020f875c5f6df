"""Requests lost while deploying and rolling back under steady load through a real balancer, per strategy.

Each strategy runs N cycles of deploy + rollback of the sample app on namespace hosts behind HAProxy or nginx on
this machine, while a bounded load loop sends about --rate requests a second through the balancer and, every half
second, a slow request (2 s) that is in flight across the switches. A request fails when it gets no answer, a
non-2xx answer, or times out (10 s).

  in-place               every host switched and restarted at once (HAProxy in front, no drain)
  rolling                one host at a time, no drain: the balancer only notices a restart by its failures
  rolling-drain-haproxy  one host at a time, taken out through HAProxy's runtime API first, put back when healthy
  rolling-drain-nginx    the same through nginx's upstream file and a graceful reload

Blue-green slots and canary gates are not built yet (see the README); this measures what exists.
Run as root (network namespaces):  python benchmarks/bench_zero_downtime.py [--hosts 5,20] [--cycles 3] [--rate 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.config import load_config  # noqa: E402
from bot.domain import State  # noqa: E402
from bot.sampleapp import build_artifacts, write_shared_env  # noqa: E402
from bot.service import DeployService  # noqa: E402
from bot.store import Store  # noqa: E402
from tests.balancers import HAProxy, Nginx, Reply, get  # noqa: E402
from tests.lab.hosts import HostLab  # noqa: E402

COMMAND = "python benchmarks/bench_zero_downtime.py"
STRATEGIES = ("in-place", "rolling", "rolling-drain-haproxy", "rolling-drain-nginx")


class SteadyLoad:
    """About `rate` GETs a second from a few threads, plus one slow request every half second; bounded in time."""

    def __init__(self, url: str, rate: int, max_seconds: float = 600):
        self.url, self.rate, self.deadline = url, rate, time.monotonic() + max_seconds
        self.replies: list[Reply] = []
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._threads = [threading.Thread(target=self._fast, args=(i,), daemon=True) for i in range(8)]
        self._threads.append(threading.Thread(target=self._slow, daemon=True))

    def _keep(self, reply: Reply) -> None:
        with self._lock:
            self.replies.append(reply)

    def _fast(self, index: int) -> None:
        every = 8 / self.rate
        nxt = time.monotonic() + index * every / 8
        while not self._stop.is_set() and time.monotonic() < self.deadline:
            self._keep(get(self.url + "/"))
            nxt += every
            self._stop.wait(max(0.0, nxt - time.monotonic()))

    def _slow(self) -> None:
        while not self._stop.wait(0.5) and time.monotonic() < self.deadline:
            threading.Thread(target=lambda: self._keep(get(self.url + "/slow?seconds=2")), daemon=True).start()

    def __enter__(self) -> SteadyLoad:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)
        time.sleep(2.5)  # the last slow requests finish


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
    if strategy == "rolling-drain-haproxy":
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


def measure(lab: HostLab, hosts, artifacts: Path, strategy: str, cycles: int, rate: int, work: Path) -> dict:
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
    deploys, rollbacks = [], []
    try:
        assert svc.deploy("prod", "v1.0.0", "bench").state is State.SUCCEEDED
        time.sleep(1.5)  # the balancer's checks see every host up
        with SteadyLoad(lb.url, rate) as load:
            for _ in range(cycles):
                t0 = time.perf_counter()
                dep = svc.deploy("prod", "v1.1.0", "bench")
                deploys.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                back = svc.rollback("prod", "bench", "v1.0.0")
                rollbacks.append(time.perf_counter() - t0)
                assert dep.state is State.SUCCEEDED and back.state is State.SUCCEEDED, (dep.error, back.error)
    finally:
        svc.pool.close()
        lb.stop()
    replies = load.replies
    ms = sorted((r.ended - r.started) * 1000 for r in replies if r.ok)
    return {
        "requests": len(replies),
        "failed": sum(not r.ok for r in replies),
        "p50": statistics.median(ms) if ms else 0,
        "p99": ms[int(len(ms) * 0.99) - 1] if ms else 0,
        "deploy": statistics.median(deploys),
        "rollback": statistics.median(rollbacks),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", default="5,20")
    parser.add_argument("--cycles", type=int, default=3)
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
                    rows.append(
                        (strategy, n, measure(lab, lab.hosts[:n], artifacts, strategy, args.cycles, args.rate, work))
                    )
    finally:
        lab.stop()
    print(
        f"\nRequests through the balancer during {args.cycles} deploy+rollback cycles, ~{args.rate} req/s "
        f"plus a 2 s request every 0.5 s (`{COMMAND} --hosts {args.hosts} --cycles {args.cycles} "
        f"--rate {args.rate} --strategies {args.strategies}`)\n"
    )
    print("| strategy | hosts | requests | failed | p50 ms | p99 ms | deploy s | rollback s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for strategy, n, r in rows:
        print(
            f"| {strategy} | {n} | {r['requests']} | {r['failed']} | {r['p50']:.0f} | {r['p99']:.0f} | "
            f"{r['deploy']:.2f} | {r['rollback']:.2f} |"
        )
    print()
    for strategy, n, r in rows:
        print(f"TOTAL strategy={strategy} hosts={n} requests={r['requests']} failed={r['failed']}")


if __name__ == "__main__":
    main()
