"""The artifact store hosts download from with `app.upload: fetch`: a plain HTTP server in its own process.

Python's http.server listens with a backlog of 5: twenty hosts connecting at once overflow it, the kernel drops
the extra SYNs and those hosts retry a second later. A real store (S3, nginx) takes them all, so this one
listens with a real backlog. Paths under /moved/ answer 302 to the same path without it, as stores that hand
out a signed URL on a CDN do.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MOVED = "/moved/"


class _Handler(SimpleHTTPRequestHandler):
    def send_head(self):
        if self.path.startswith(MOVED):
            self.send_response(302)
            self.send_header("Location", self.path[len(MOVED) - 1 :])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return super().send_head()

    def log_message(self, *args) -> None:
        pass


class _Server(ThreadingHTTPServer):
    request_queue_size = 512
    daemon_threads = True


@contextmanager
def artifact_store(folder: Path, address: str) -> Iterator[str]:
    """Serve `folder` on `address` (a free port) until the block ends; yields the base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "tests.lab.store", str(folder), address],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        url = proc.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"artifact store did not start on {address}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main(folder: str, address: str) -> None:
    server = _Server((address, 0), functools.partial(_Handler, directory=folder))
    print(f"http://{address}:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(*sys.argv[1:3])
