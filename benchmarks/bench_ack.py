"""Slash-command acknowledgement latency while a deploy runs: /status and /deploy, 50 concurrent requests.

The production WSGI app (bot.web under waitress, 16 threads) serves signed requests from 50 client threads
while a deploy to 5 namespace hosts runs (verify window held open so it lasts the whole measurement). The
Slack Web API is the local fake from tests/slack_api.py. Target: p99 < 100 ms (Slack's limit is 3 s).

Run as root (network namespaces):  python benchmarks/bench_ack.py [--rounds 4] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.sampleapp import build_artifacts, write_shared_env  # noqa: E402
from tests.lab.hosts import HostLab  # noqa: E402
from tests.slack_api import FakeSlack  # noqa: E402
from tests.slack_client import BotUnderTest, sign  # noqa: E402

COMMAND = "python benchmarks/bench_ack.py"


def config(work: Path, lab: HostLab, artifacts: Path, verify: float) -> Path:
    cfg = {"app": {"name": "sampleapp", "artifact": str(artifacts / "sampleapp-{version}.tar.gz")},
           "environments": {"prod": {
               "hosts": [{"host": f"root@{h.address}", "name": h.name} for h in lab.hosts],
               "ssh": {"key_file": str(lab.key_file), "known_hosts": str(lab.known_hosts), "connect_timeout": 5},
               "path": "/srv/app", "restart": "bin/restart",
               "health": {"url": "http://{host}:8000/health", "timeout": 10, "interval": 0.05},
               "verify_seconds": verify, "min_free_mb": 10}}}
    path = work / "deploy.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def client(url: str, response_base: str, rounds: int, concurrency: int) -> None:
    """The load generator (its own process): `concurrency` signed requests at once, `rounds` times."""
    from tests.slack_client import SIGNING_SECRET, SlackClient

    slack = SlackClient(url, SIGNING_SECRET, response_base)
    samples: dict[str, list[float]] = {"/status": [], "/deploy": []}

    def one(i: int) -> tuple[str, float, int]:
        cmd, text = ("/status", "prod") if i % 2 else ("/deploy", "prod v1.0.0")
        fields = slack.command_fields(cmd, text, f"U0LOAD{i % 7}")
        t0 = time.perf_counter()
        r = requests.post(slack.url, data=urlencode(fields).encode(), timeout=30, headers=signed(fields))
        return cmd, time.perf_counter() - t0, r.status_code

    def signed(fields: dict) -> dict:
        ts = str(int(time.time()))
        return {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts,
                "X-Slack-Signature": sign(SIGNING_SECRET, ts, urlencode(fields))}

    errors = 0
    with ThreadPoolExecutor(concurrency) as pool:
        for _ in range(rounds):
            for cmd, seconds, status in pool.map(one, range(concurrency)):
                samples[cmd].append(seconds * 1000)
                errors += status != 200
    print(json.dumps({"samples": samples, "errors": errors}))


def server_side(metrics: str) -> tuple[str, str]:
    """p50 and p99 upper bucket bounds of the server's own ack histogram."""
    buckets = [(float(line.split('le="')[1].split('"')[0]), float(line.split()[-1]))
               for line in metrics.splitlines()
               if line.startswith("deploybot_slack_ack_seconds_bucket") and 'status="200"' in line]
    total = buckets[-1][1] if buckets else 0
    bound = [next((str(le) for le, n in buckets if n >= q * total), "inf") for q in (0.5, 0.99)]
    return bound[0], bound[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--client")
    ap.add_argument("--response-base")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--hosts", type=int, default=5)
    args = ap.parse_args()
    if args.client:
        client(args.client, args.response_base, args.rounds, args.concurrency)
        return 0
    work = Path(tempfile.mkdtemp(prefix="bench-ack-"))
    artifacts = work / "artifacts"
    build_artifacts(artifacts, {"v1.0.0": "ok"})
    lab = HostLab.claim(args.hosts)
    try:
        for h in lab.hosts:
            h.reset()
            write_shared_env(h.srv / "app" / "shared", {"PORT": "8000"})
        cfg = config(work, lab, artifacts, verify=30.0)
        with FakeSlack() as fake, BotUnderTest(cfg, f"sqlite:///{work / 'bot.db'}", fake, interval=1.0) as bot:
            bot.slack.command("/deploy", "prod v1.0.0", "U0DEV")
            fake.wait_for(lambda: any("running:" in c.text for c in fake.of("chat.update")), 60)
            # the load comes from another process, so its threads do not share the bot's interpreter lock
            started = time.perf_counter()
            out = subprocess.run([sys.executable, __file__, "--client", bot.url, "--response-base",
                                  fake.url + "/response", "--rounds", str(args.rounds),
                                  "--concurrency", str(args.concurrency)],
                                 capture_output=True, text=True, check=True, timeout=600).stdout
            measured = time.perf_counter() - started
            result = json.loads(out.strip().splitlines()[-1])
            samples, errors = result["samples"], result["errors"]
            server = server_side(requests.get(bot.url + "/metrics", timeout=10).text)
            running = "running" in bot.service.history("prod", limit=1)[0].state.value
            bot.settle(120)
            outcome = bot.service.history("prod", limit=1)[0].state.value
    finally:
        lab.stop()
    print(f"\n## Slash-command ack latency while a {args.hosts}-host deploy runs "
          f"({args.concurrency} concurrent, {args.rounds} rounds, {measured:.1f}s)\n")
    print("| command | requests | p50 ms | p99 ms | max ms | mean ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for cmd, values in samples.items():
        print(f"| {cmd} | {len(values)} | {statistics.median(values):.1f} | {pct(values, 99):.1f} | "
              f"{max(values):.1f} | {statistics.mean(values):.1f} |")
    print(f"\nserver-side (deploybot_slack_ack_seconds: request in to answer out, excluding queueing before a "
          f"waitress thread takes it): p50 <= {server[0]} s, p99 <= {server[1]} s (histogram bucket bounds)")
    print(f"\nnon-200 answers: {errors}; deploy still running during measurement: {running}; "
          f"deploy outcome: {outcome}")
    print(f"\nreproduce: `{COMMAND} --rounds {args.rounds} --concurrency {args.concurrency} --hosts {args.hosts}`")
    return 0 if errors == 0 and outcome == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
