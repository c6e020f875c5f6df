"""The sample app does what an app needs for zero-downtime deploys: it takes its port from PORT, and on SIGTERM it
stops accepting, finishes the requests in flight and exits 0. No root: the app runs on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request

from bot.sampleapp import build_artifact
from tests.serving import free_port


def get(url: str, timeout: float = 15) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status, resp.headers.get("X-Served-By", ""), resp.read().decode()


def test_sigterm_lets_the_request_in_flight_finish_then_exits_zero(tmp_path):
    with tarfile.open(build_artifact(tmp_path / "a", "sampleapp", "v1.0.0")) as tar:
        tar.extractall(tmp_path / "release", filter="data")
    port = free_port()
    app = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=tmp_path / "release",
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            status, host, body = get(base + "/health", timeout=1)
            break
        except OSError:
            assert time.monotonic() < deadline, "the app did not come up"
            time.sleep(0.05)
    assert status == 200 and json.loads(body)["version"] == "v1.0.0" and host and json.loads(body)["host"] == host

    slow: dict = {}
    started = time.monotonic()
    request = threading.Thread(target=lambda: slow.update(answer=get(base + "/slow?seconds=1.5")))
    request.start()
    time.sleep(0.3)
    app.send_signal(signal.SIGTERM)
    request.join(timeout=15)
    assert slow["answer"][0] == 200 and time.monotonic() - started >= 1.5  # finished, not cut
    assert app.wait(timeout=10) == 0 and "stopped after its requests in flight" in app.stdout.read()
    try:
        get(base + "/health", timeout=1)
        raise AssertionError("still answering after it stopped")
    except OSError:
        pass
