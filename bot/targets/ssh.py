"""A host over SSH with one Fabric Connection, verified host keys and real timeouts."""

from __future__ import annotations

import contextlib
import io
import shlex
import socket
import threading
from pathlib import Path

import paramiko
from fabric import Config as FabricConfig
from fabric import Connection
from invoke.exceptions import CommandTimedOut, ThreadException

from bot.config import Host, SSHOptions
from bot.targets.base import Command, Result, put_command

TIMED_OUT = (124, 137)  # what coreutils' timeout exits with when it stopped the command (TERM; KILL)


def bounded(shell: str, seconds: float, tag: str = "deploybot") -> str:
    """`shell`, stopped by the host after `seconds` (its whole process group; processes an app start detaches
    with setsid live on), running under the name `tag`. Hosts without coreutils' timeout run it unbounded."""
    return (
        f"S={shlex.quote(shell)}; if command -v timeout >/dev/null 2>&1; then exec timeout -k 5 {seconds:.0f} "
        f'sh -c "$S" {tag}; else exec sh -c "$S" {tag}; fi'
    )


class TargetError(RuntimeError):
    """The host could not be reached: becomes the Result's error."""


class SSHTarget:
    """Fabric auto-adds unknown host keys; we reject them unless the config opts in."""

    def __init__(self, host: Host, options: SSHOptions):
        self.host = host
        self.name = host.name
        self.options = options
        self._conn: Connection | None = None
        self._lock = threading.Lock()

    def _connection(self) -> Connection:
        with self._lock:
            if self._conn is not None and self._conn.is_connected:
                return self._conn
            connect_kwargs: dict = {
                "banner_timeout": self.options.connect_timeout,
                "auth_timeout": self.options.connect_timeout,
                "allow_agent": False,
                "look_for_keys": self.options.key_file is None,
            }
            if self.options.key_file:
                connect_kwargs["key_filename"] = str(self.options.key_file)
            config = FabricConfig(overrides={"load_ssh_configs": False, "run": {"hide": True, "warn": True}})
            conn = Connection(
                self.host.address,
                user=self.host.user or "root",
                port=self.host.port,
                connect_timeout=self.options.connect_timeout,
                connect_kwargs=connect_kwargs,
                config=config,
            )
            if self.options.accept_unknown_hosts:
                conn.client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
            else:
                conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
            known = self.options.known_hosts or Path.home() / ".ssh" / "known_hosts"
            if Path(known).exists():
                conn.client.load_host_keys(str(known))
            try:
                conn.open()
                transport = conn.client.get_transport()
                if transport is not None:
                    transport.set_keepalive(15)
                    # paramiko waits an hour for a channel to open; on a kept-open connection to a host that
                    # dropped off the network, every command (and a rollback) would hang that long
                    transport.channel_timeout = self.options.connect_timeout
                    _tune_socket(transport.sock, self.options.dead_after)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                conn.close()
                raise TargetError(_explain(self.host, exc, self.options.connect_timeout)) from None
            self._conn = conn
            return conn

    def run(self, command: Command) -> Result:
        timeout = command.timeout or self.options.command_timeout
        try:
            conn = self._connection()
            # the host enforces the timeout itself, a little before we give up waiting: a command we stop waiting
            # for must not go on running there (without a terminal, sshd sends it no hangup when we disconnect)
            shell = bounded(command.shell, timeout, command.tag)
            res = conn.run(shell, timeout=timeout + 10, in_stream=_stdin(command.stdin))
            if res.exited in TIMED_OUT:
                return Result(
                    self.name,
                    command,
                    None,
                    res.stdout,
                    res.stderr,
                    error=f"{self.name}: command timed out after {timeout:.0f}s (stopped on the host)",
                )
            if res.exited == -1 and not conn.is_connected:  # the channel ended with no exit status
                self.close()
                return Result(
                    self.name,
                    command,
                    None,
                    res.stdout,
                    res.stderr,
                    error=f"{self.name}: connection lost: no answer for {self.options.dead_after:g}s",
                )
            return Result(self.name, command, res.exited, res.stdout, res.stderr)
        except TargetError as exc:
            return Result(self.name, command, None, error=str(exc))
        except CommandTimedOut as exc:
            self.close()  # the channel may be wedged; reconnect next time
            return Result(self.name, command, None, error=f"{self.name}: command timed out after {exc.timeout:.0f}s")
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            return Result(self.name, command, None, error=f"{self.name}: connection lost: {exc}")
        except ThreadException:  # sending its stdin failed: the channel closed under it
            self.close()
            return Result(self.name, command, None, error=f"{self.name}: connection lost while sending the input")

    def put(self, local: Path, remote: str) -> Result:
        """SFTP the file; a put that fails leaves no partial file behind (a host whose disk just filled stays
        full otherwise), and says why it failed."""
        command = put_command(local, remote)
        try:
            conn = self._connection()
            sftp = conn.sftp()
            sftp.get_channel().settimeout(self.options.command_timeout)
        except TargetError as exc:
            return Result(self.name, command, None, error=str(exc))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            return Result(self.name, command, None, error=f"{self.name}: upload failed: {_why(exc)}")
        try:
            sftp.put(str(local), remote)
            return Result(self.name, command, 0)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            with contextlib.suppress(paramiko.SSHException, OSError, EOFError):
                sftp.remove(remote)  # when the connection is gone, cleanup removes .incoming leftovers later
            self.close()
            return Result(self.name, command, None, error=f"{self.name}: upload failed: {_why(exc)}")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    with contextlib.suppress(paramiko.SSHException, OSError, EOFError):
                        self._conn.close()  # a connection whose host is gone: closed either way
                finally:
                    self._conn = None


class _Whole(io.StringIO):
    """invoke reads a stream that is no terminal one character at a time, napping 10 ms in between (a presigned URL
    took 10 s); this one hands over all it holds at once, then EOF, on which invoke closes the remote stdin."""

    def read(self, size: int | None = -1) -> str:
        return super().read()


def _stdin(text: str | None) -> _Whole | bool:
    """The command's stdin, or none at all (False: invoke sends nothing and never waits on our own stdin)."""
    return _Whole(text) if text is not None else False


def _why(exc: BaseException) -> str:
    return str(exc) or f"{type(exc).__name__} (the connection dropped)"


def _explain(host: Host, exc: BaseException, timeout: float) -> str:
    where = f"{host.name} ({host.user or 'root'}@{host.address}:{host.port})"
    if isinstance(exc, socket.timeout | TimeoutError):
        return f"{where}: unreachable (no answer within {timeout:g}s)"
    if isinstance(exc, paramiko.BadHostKeyException):
        return f"{where}: host key does not match known_hosts (possible impostor); refusing to connect"
    if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
        return f"{where}: host key not in known_hosts; add it or set ssh.accept_unknown_hosts: true"
    if isinstance(exc, paramiko.AuthenticationException):
        return f"{where}: authentication failed"
    if isinstance(exc, ConnectionRefusedError):
        return f"{where}: connection refused (is sshd running?)"
    return f"{where}: cannot connect: {exc or type(exc).__name__}"


def _tune_socket(sock: socket.socket, seconds: float) -> None:
    """Two things the kernel's defaults get wrong for a deploy over a kept-open connection.

    Latency: a command is a few small SSH messages; with Nagle's algorithm the second waits for the host's
    delayed ACK (40 ms on Linux), so every command cost ~48 ms instead of ~14 ms. TCP_NODELAY sends at once.

    A host that drops off the network mid-command sends no reset: without this the command waits out
    command_timeout. TCP keepalives (while waiting for output) and TCP_USER_TIMEOUT (while sending, e.g. an
    upload) make the kernel drop the connection after about `seconds` of silence, and the stage fails."""
    if not isinstance(sock, socket.socket):
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    half = max(1, int(seconds / 2))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (
        ("TCP_KEEPIDLE", half),
        ("TCP_KEEPINTVL", max(1, half // 3)),
        ("TCP_KEEPCNT", 3),
        ("TCP_USER_TIMEOUT", int(seconds * 1000)),
    ):
        if hasattr(socket, name):  # Linux; elsewhere the OS defaults apply
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
