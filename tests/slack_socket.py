"""A stand-in for Slack's Socket Mode endpoint: a local WebSocket server speaking Slack's envelope protocol.

Slack hands the bot a wss:// URL from apps.connections.open (the fake Web API answers it with this server's
ws:// URL), says `hello`, then pushes envelopes (slash_commands, interactive, events_api) and expects each one
acknowledged with its envelope_id within 3 seconds. This server does the same, so a test drives the bot
exactly as Slack would in Socket Mode.
"""

from __future__ import annotations

import json
import queue
import threading
import uuid

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve


class FakeSocketMode:
    def __init__(self) -> None:
        self._server = serve(self._session, "127.0.0.1", 0)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._conn: ServerConnection | None = None
        self._connected = threading.Event()
        self._acks: dict[str, queue.Queue] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> FakeSocketMode:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self._server.socket.getsockname()[1]}/link"

    def wait_connected(self, timeout: float = 30) -> None:
        if not self._connected.wait(timeout):
            raise AssertionError(f"the bot did not open a Socket Mode connection within {timeout}s")

    def send(self, envelope_type: str, payload: dict, timeout: float = 3.0) -> dict:
        """Push one envelope and return the bot's acknowledgement ({} when it acked without a payload).
        Fails like Slack would if no ack arrives within `timeout` (Slack's limit is 3 s)."""
        self.wait_connected()
        envelope_id = str(uuid.uuid4())
        waiter: queue.Queue = queue.Queue()
        with self._lock:
            self._acks[envelope_id] = waiter
        assert self._conn is not None
        self._conn.send(
            json.dumps(
                {
                    "envelope_id": envelope_id,
                    "type": envelope_type,
                    "payload": payload,
                    "accepts_response_payload": envelope_type != "events_api",
                    "retry_attempt": 0,
                    "retry_reason": "",
                }
            )
        )
        try:
            ack = waiter.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no ack for {envelope_type} envelope within {timeout}s") from None
        return ack.get("payload") or {}

    def _session(self, conn: ServerConnection) -> None:
        self._conn = conn
        conn.send(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": 1,
                    "debug_info": {"host": "fake-socket-mode"},
                    "connection_info": {"app_id": "A0APP"},
                }
            )
        )
        self._connected.set()
        try:
            for raw in conn:
                message = json.loads(raw)
                with self._lock:
                    waiter = self._acks.pop(message.get("envelope_id", ""), None)
                if waiter is not None:
                    waiter.put(message)
        except ConnectionClosed:
            pass  # the bot went away (test teardown)
