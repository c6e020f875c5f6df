"""Slash-command acknowledgement latency while a deploy runs: /deploy status and /deploy, 50 concurrent requests.

`deploybot serve` (its own process: waitress, the bot's executors) answers signed requests from 50 client threads
while a deploy to 5 namespace hosts runs (verify window held open so it lasts the whole measurement). The
Slack Web API is the local fake from tests/slack_api.py. Target: p99 < 100 ms (Slack's limit is 3 s).

Run as root (network namespaces):  python benchmarks/bench_ack.py [--rounds 4] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.sampleapp import build_artifacts, write_shared_env  # noqa: E402
from tests.lab.hosts import HostLab  # noqa: E402
from tests.serving import deploybot_serve, free_port  # noqa: E402
from tests.slack_api import FakeSlack  # noqa: E402
from tests.slack_client import BOT_TOKEN, SIGNING_SECRET, SlackClient, sign  # noqa: E402

COMMAND = "python benchmarks/bench_ack.py"


def config(work: Path, lab: HostLab, artifacts: Path, verify: float) -> Path:
    cfg = {
        "app": {"name": "sampleapp", "artifact": str(artifacts / "sampleapp-{version}.tar.gz")},
        "environments": {
            "prod": {
                "hosts": [{"host": f"root@{h.address}", "name": h.name} for h in lab.hosts],
                "ssh": {"key_file": str(lab.key_file), "known_hosts": str(lab.known_hosts), "connect_timeout": 5},
                "path": "/srv/app",
                "restart": "bin/restart",
                "health": {"url": "http://{host}:8000/health", "timeout": 10},
                "verify_seconds": verify,
                "min_free_mb": 10,
            }
        },
    }
    path = work / "deploy.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def client(url: str, response_base: str, rounds: int, concurrency: int) -> None:
    """The load generator (its own process): `concurrency` signed requests at once, `rounds` times.

    One asyncio loop with requests built and signed before the clock starts, so what is timed is the bot's
    answer, not the load generator's own Python work (50 client threads would queue on their own GIL)."""
    slack = SlackClient(url, SIGNING_SECRET, response_base)
    address = urlsplit(url)
    samples: dict[str, list[float]] = {"/deploy status": [], "/deploy": []}

    def prepared(i: int) -> tuple[str, bytes]:
        label, text = ("/deploy status", "status prod") if i % 2 else ("/deploy", "prod v1.0.0")
        body = urlencode(slack.command_fields("/deploy", text, f"U0LOAD{i % 7}"))
        ts = str(int(time.time()))
        head = (
            f"POST /slack/events HTTP/1.1\r\nHost: {address.netloc}\r\nConnection: close\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
            f"X-Slack-Request-Timestamp: {ts}\r\nX-Slack-Signature: {sign(SIGNING_SECRET, ts, body)}\r\n\r\n"
        )
        return label, (head + body).encode()

    async def one(cmd: str, request: bytes) -> tuple[str, float, int]:
        t0 = time.perf_counter()
        reader, writer = await asyncio.open_connection(address.hostname, address.port)
        writer.write(request)
        status_line = await reader.readline()
        await reader.read()  # Connection: close, so the answer ends with the stream
        elapsed = time.perf_counter() - t0
        writer.close()
        return cmd, elapsed, int(status_line.split()[1])

    async def burst() -> list[tuple[str, float, int]]:
        return await asyncio.gather(*(one(*prepared(i)) for i in range(concurrency)))

    errors = 0
    for _ in range(rounds):
        for cmd, seconds, status in asyncio.run(burst()):
            samples[cmd].append(seconds * 1000)
            errors += status != 200
        time.sleep(0.5)  # let the follow-up work of one burst (replies to Slack) run before the next
    print(json.dumps({"samples": samples, "errors": errors}))


@contextmanager
def served_bot(cfg: Path, work: Path, fake: FakeSlack) -> Iterator[tuple[str, str]]:
    """`deploybot serve` exactly as production runs it (waitress, the bot's own executors), in its own process."""
    env = {
        **os.environ,
        "DEPLOYBOT_CONFIG": str(cfg),
        "DATABASE_URL": f"sqlite:///{work / 'bot.db'}",
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake.api_url,
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("SLACK_APP_TOKEN", None)
    port = free_port()
    env["DEPLOYBOT_METRICS_ADDRESS"] = f"127.0.0.1:{free_port()}"
    url = f"http://127.0.0.1:{port}"
    with deploybot_serve(env, work, port) as proc:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(url + "/healthz", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("deploybot serve did not come up")
            time.sleep(0.1)
        yield url, f"http://{env['DEPLOYBOT_METRICS_ADDRESS']}/"


def server_side(metrics: str) -> tuple[str, str]:
    """p50 and p99 upper bucket bounds of the server's own ack histogram."""
    buckets = [
        (float(line.split('le="')[1].split('"')[0]), float(line.split()[-1]))
        for line in metrics.splitlines()
        if line.startswith("deploybot_slack_ack_seconds_bucket") and 'status="200"' in line
    ]
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
        with FakeSlack() as fake, served_bot(cfg, work, fake) as (url, metrics_url):
            slack = SlackClient(url, SIGNING_SECRET, fake.url + "/response")
            assert slack.command("/deploy", "prod v1.0.0", "U0DEV").status_code == 200
            fake.wait_for(lambda: any("running:" in c.text for c in fake.of("chat.update")), 60)
            # three processes, as in production: the bot (`deploybot serve`), Slack (here the fake, in this
            # process) and the load (its own process, so its threads do not share anyone's interpreter lock)
            mark = fake.mark()
            started = time.perf_counter()
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--client",
                    url,
                    "--response-base",
                    fake.url + "/response",
                    "--rounds",
                    str(args.rounds),
                    "--concurrency",
                    str(args.concurrency),
                ],
                capture_output=True,
                text=True,
                check=True,
                timeout=600,
            ).stdout
            measured = time.perf_counter() - started
            expected = args.rounds * args.concurrency  # every command gets its reply, only later than its ack
            fake.wait_for(lambda: len(fake.of("response_url", since=mark)) >= expected, 120)
            replies = len(fake.of("response_url", since=mark))
            replies_after = time.perf_counter() - started - measured
            result = json.loads(out.strip().splitlines()[-1])
            samples, errors = result["samples"], result["errors"]
            server = server_side(requests.get(metrics_url, timeout=10).text)
            running = not any("Succeeded*" in c.text or "Failed*" in c.text for c in fake.of("chat.update"))
            final = fake.wait_for(
                lambda: [
                    c
                    for c in fake.of("chat.update")
                    if "Succeeded*" in c.text or "Failed*" in c.text or "Rolled back*" in c.text
                ],
                120,
            )
            outcome = "succeeded" if "Succeeded*" in final[-1].text else final[-1].text.splitlines()[0]
    finally:
        lab.stop()
    print(
        f"\n## Slash-command ack latency while a {args.hosts}-host deploy runs "
        f"({args.concurrency} concurrent, {args.rounds} rounds, {measured:.1f}s)\n"
    )
    print("| command | requests | p50 ms | p99 ms | max ms | mean ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for cmd, values in samples.items():
        print(
            f"| {cmd} | {len(values)} | {statistics.median(values):.1f} | {pct(values, 99):.1f} | "
            f"{max(values):.1f} | {statistics.mean(values):.1f} |"
        )
    print(
        f"\nserver-side (deploybot_slack_ack_seconds: request in to answer out, excluding queueing before a "
        f"waitress thread takes it): p50 <= {server[0]} s, p99 <= {server[1]} s (histogram bucket bounds)"
    )
    print(
        f"\nreplies through response_url: {replies}/{args.rounds * args.concurrency}, the last "
        f"{replies_after:.2f}s after the load ended (follow-ups wait while acks run: bot.web.AckFirst)"
    )
    print(f"\nnon-200 answers: {errors}; deploy still running during measurement: {running}; deploy outcome: {outcome}")
    print(f"\nreproduce: `{COMMAND} --rounds {args.rounds} --concurrency {args.concurrency} --hosts {args.hosts}`")
    return 0 if errors == 0 and outcome == "succeeded" and replies == args.rounds * args.concurrency else 1


if __name__ == "__main__":
    sys.exit(main())
