"""HAProxy as the shared balancer, through its runtime API on the admin socket.

`set server BACKEND/SERVER state drain` takes effect at once: HAProxy stops balancing new requests to the
server (persistent sessions still reach it, as HAProxy documents) and lets the open ones finish; `show stat`
counts them (scur, qcur), with the server's status, its requests and its 5xx answers, all exact.

The socket is reached from the bot (AdminSocket: a unix socket path, or host:port of a TCP stats socket) or on
the balancer host through a Target, with socat there (RemoteAdminSocket), so a balancer reached over SSH needs
socat on it and the SSH user allowed to open the socket (group haproxy, or `sudo socat` as the command).
HAProxy must declare the socket with `level admin` (`stats socket /run/haproxy/admin.sock level admin`).
"""

from __future__ import annotations

import csv
import shlex
import socket
import threading
from collections.abc import Sequence
from typing import Protocol

from bot.targets.base import Command, Target
from bot.traffic.base import DOWN, DRAIN, MAINT, READY, Backend, BackendStats, TrafficError, names, poll

HINT = "is HAProxy running, with `stats socket {where} level admin` in its global section?"


class Socket(Protocol):
    where: str  # how it is named in errors: the path, host:port, or `path on host`

    def ask(self, command: str) -> str:
        """One runtime API command, its whole answer; TrafficError when the socket cannot be reached."""


def _split(address: str) -> tuple[str, int] | None:
    """`host:port` of a TCP stats socket, or None for a unix socket path."""
    if address.startswith(("/", ".")) or ":" not in address:
        return None
    host, _, port = address.removeprefix("ipv4@").removeprefix("ipv6@").rpartition(":")
    if not port.isdigit():
        raise TrafficError(f"HAProxy admin socket {address!r} is neither a path nor host:port")
    return host.strip("[]"), int(port)


class AdminSocket:
    """The admin socket as this machine reaches it: a unix socket path or host:port."""

    def __init__(self, address: str, timeout: float = 5.0):
        self.where, self.timeout, self._tcp = address, timeout, _split(address)

    def ask(self, command: str) -> str:
        family = socket.AF_UNIX if self._tcp is None else socket.AF_INET6 if ":" in self._tcp[0] else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(self.where if self._tcp is None else self._tcp)
                sock.sendall(command.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):  # the API closes the connection after one answer
                    chunks.append(chunk)
        except TimeoutError:
            raise TrafficError(
                f"HAProxy's admin socket {self.where} gave no answer within {self.timeout:g}s; "
                + HINT.format(where=self.where)
            ) from None
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise TrafficError(
                f"cannot reach HAProxy's admin socket {self.where} ({why.lower()}); " + HINT.format(where=self.where)
            ) from None
        return b"".join(chunks).decode(errors="replace")


class RemoteAdminSocket:
    """The admin socket on the balancer host, asked through a Target (SSH, or `local`) with socat there."""

    def __init__(self, target: Target, address: str, timeout: float = 5.0, socat: str = "socat"):
        self.target, self.address, self.timeout, self.socat = target, address, timeout, socat
        self.where = f"{address} on {target.name}"
        tcp = _split(address)
        self._peer = f"UNIX-CONNECT:{address}" if tcp is None else f"TCP:{tcp[0]}:{tcp[1]}"

    def ask(self, command: str) -> str:
        shell = (
            f"printf '%s\\n' {shlex.quote(command)} | "
            f"{self.socat} -t {self.timeout:g} -T {self.timeout:g} - {shlex.quote(self._peer)}"
        )
        res = self.target.run(Command("traffic", shell, timeout=self.timeout + 5))
        if not res.ok:
            raise TrafficError(
                f"cannot reach HAProxy's admin socket {self.where}: {res.describe()}; "
                + HINT.format(where=self.address)
            )
        return res.stdout


def _state(status: str) -> str:
    s = status.strip().upper()
    if s.startswith("MAINT"):
        return MAINT
    if s.startswith(("DRAIN", "NOLB")):
        return DRAIN
    if s.startswith("DOWN"):
        return DOWN
    return READY  # UP, "UP 1/3" (going down, still balanced to), "no check"


def _int(value: str | None) -> int:
    return int(value) if value and value.isdigit() else 0


class HAProxyTraffic:
    """One HAProxy backend. A host is its server of the same name, else the server at the host's address:port."""

    def __init__(
        self,
        socket: str | Socket,
        backend: str,
        hosts: Sequence[Backend] = (),
        drain_state: str = "drain",
        timeout: float = 5.0,
    ):
        if drain_state not in ("drain", "maint"):
            raise ValueError("drain_state is drain (checks go on) or maint (checks stop too)")
        self.api: Socket = AdminSocket(socket, timeout) if isinstance(socket, str) else socket
        self.backend, self.hosts, self.drain_state = backend, list(hosts), drain_state
        self._lock = threading.Lock()

    # ---- the interface ------------------------------------------------------------------------------------
    def drain(self, hosts: Sequence[Backend]) -> None:
        with self._lock:
            rows = self._servers()
            servers = [self._server_for(h, rows) for h in hosts]
            if not any(r["svname"] not in servers and _state(r["status"]) == READY for r in rows):
                raise TrafficError(
                    f"draining {names(hosts)} would leave HAProxy backend {self.backend} with no "
                    "server taking requests; nothing was changed"
                )
            for server in servers:
                self._set(server, self.drain_state)

    def restore(self, hosts: Sequence[Backend]) -> None:
        with self._lock:
            rows = self._servers()
            for server in [self._server_for(h, rows) for h in hosts]:
                self._set(server, "ready")

    def wait_drained(self, hosts: Sequence[Backend], timeout: float) -> bool:
        rows = self._servers()
        servers = [self._server_for(h, rows) for h in hosts]
        ready = [h.name for h, s in zip(hosts, servers, strict=True) if _state(self._row(rows, s)["status"]) == READY]
        if ready:
            raise TrafficError(
                f"{', '.join(ready)} still take new requests in HAProxy backend {self.backend}: drain them first"
            )

        def idle() -> bool:
            now = self._servers()
            return all(_int(self._row(now, s).get("scur")) + _int(self._row(now, s).get("qcur")) == 0 for s in servers)

        return poll(idle, timeout, interval=0.05)

    def stats(self) -> dict[str, BackendStats]:
        out = {}
        for row in self._servers():
            host = self._host_for(row)
            name = host.name if host else row["svname"]
            out[name] = BackendStats(
                name=name,
                state=_state(row["status"]),
                current=_int(row.get("scur")) + _int(row.get("qcur")),
                requests=_int(row.get("req_tot") or row.get("stot")),
                errors_5xx=_int(row.get("hrsp_5xx")),
                detail=f"{row['svname']} {row.get('addr', '')} {row['status']}".replace("  ", " "),
            )
        return out

    # ---- the runtime API ----------------------------------------------------------------------------------
    def _set(self, server: str, state: str) -> None:
        command = f"set server {self.backend}/{server} state {state}"
        answer = self.api.ask(command).strip()
        if answer:  # success is an empty answer; anything else is HAProxy saying why not
            raise TrafficError(f"HAProxy refused `{command}` on {self.api.where}: {answer.splitlines()[0]}")

    def _servers(self) -> list[dict[str, str]]:
        text = self.api.ask("show stat")
        lines = text.splitlines()
        if not lines or not lines[0].startswith("# "):
            first = lines[0] if lines else "an empty answer"
            raise TrafficError(f"HAProxy's admin socket {self.api.where} answered `show stat` with {first!r}")
        header = lines[0][2:].split(",")
        rows = [dict(zip(header, values, strict=False)) for values in csv.reader(lines[1:]) if values]
        mine = [r for r in rows if r.get("pxname") == self.backend]
        if not mine:
            known = sorted({r["pxname"] for r in rows if r.get("svname") == "BACKEND"})
            raise TrafficError(
                f"HAProxy on {self.api.where} has no backend {self.backend!r} "
                f"(its backends: {', '.join(known) or 'none'})"
            )
        return [r for r in mine if r.get("svname") not in ("FRONTEND", "BACKEND")]

    def _row(self, rows: list[dict[str, str]], server: str) -> dict[str, str]:
        for row in rows:
            if row["svname"] == server:
                return row
        raise TrafficError(f"server {server} left HAProxy backend {self.backend} (was the configuration reloaded?)")

    def _server_for(self, host: Backend, rows: list[dict[str, str]]) -> str:
        for row in rows:
            if row["svname"] == host.name:
                return row["svname"]
        for row in rows:
            if row.get("addr") == host.endpoint:
                return row["svname"]
        servers = ", ".join(f"{r['svname']} ({r.get('addr', '?')})" for r in rows) or "none"
        raise TrafficError(
            f"{host.name} ({host.endpoint}) is not a server of HAProxy backend {self.backend}; its servers: {servers}"
        )

    def _host_for(self, row: dict[str, str]) -> Backend | None:
        return next((h for h in self.hosts if h.name == row["svname"]), None) or next(
            (h for h in self.hosts if h.endpoint == row.get("addr")), None
        )
