"""Hosts as network namespaces: own address, own sshd, own /srv and clean /root (see DESIGN.md).

Every command a host receives over SSH is logged by a forced-command wrapper, so a test can prove that
nothing reached a host.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

BASE = Path("/tmp/deploybot-lab")

WRAPPER = r'''#!/bin/sh
# Forced command: record what came in, then run it as sshd would have.
printf '%s\0' "$SSH_ORIGINAL_COMMAND" >> "$1"
exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"
'''

SSHD_CONFIG = """Port 22
ListenAddress {address}
HostKey {dir}/ssh_host_ed25519_key
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
PermitRootLogin yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
MaxStartups 200:30:400
MaxSessions 100
Subsystem sftp /usr/lib/openssh/sftp-server
LogLevel VERBOSE
"""


class LabUnavailable(RuntimeError):
    """This machine cannot make namespace hosts (not root, no ip netns, no sshd)."""


def _sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, check=check)


@dataclass
class LabHost:
    index: int
    base: Path
    prefix: str
    sshd: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"h{self.index}"

    @property
    def netns(self) -> str:
        return f"{self.prefix}-h{self.index}"

    @property
    def address(self) -> str:
        return f"10.201.{self.index}.2"

    @property
    def dir(self) -> Path:
        return self.base / self.name

    @property
    def srv(self) -> Path:
        return self.dir / "srv"

    @property
    def veth(self) -> str:
        return f"{self.prefix}v{self.index}"

    @property
    def log(self) -> Path:
        return self.dir / "commands.log"

    # ---- life cycle -------------------------------------------------------------------------------
    def create(self, public_key: str) -> str:
        """Namespace, veth, folders, keys; returns this host's known_hosts line."""
        self.destroy()
        for sub in ("srv", "home"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        key = self.dir / "ssh_host_ed25519_key"
        if not key.exists():
            _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
        (self.dir / "sshd_config").write_text(SSHD_CONFIG.format(address=self.address, dir=self.dir))
        wrapper = self.base / "logcmd"
        (self.dir / "authorized_keys").write_text(
            f'command="{wrapper} {self.log}",no-port-forwarding,no-agent-forwarding,no-X11-forwarding '
            f"{public_key}\n")
        peer = f"{self.prefix}p{self.index}"
        _sh("ip", "netns", "add", self.netns)
        _sh("ip", "link", "add", self.veth, "type", "veth", "peer", "name", peer)
        _sh("ip", "link", "set", peer, "netns", self.netns)
        _sh("ip", "addr", "add", f"10.201.{self.index}.1/24", "dev", self.veth)
        _sh("ip", "link", "set", self.veth, "up")
        inside = ["ip", "netns", "exec", self.netns]
        _sh(*inside, "ip", "addr", "add", f"{self.address}/24", "dev", peer)
        _sh(*inside, "ip", "link", "set", peer, "up")
        _sh(*inside, "ip", "link", "set", "lo", "up")
        self.start_sshd()
        return f"{self.address} " + " ".join((self.dir / "ssh_host_ed25519_key.pub").read_text().split()[:2])

    def start_sshd(self) -> None:
        Path("/run/sshd").mkdir(exist_ok=True)
        script = (f"mount --bind {self.srv} /srv && mount --bind {self.dir / 'home'} /root && "
                  f"exec /usr/sbin/sshd -D -f {self.dir / 'sshd_config'} -E {self.dir / 'sshd.log'}")
        self.sshd = subprocess.Popen(["ip", "netns", "exec", self.netns, "unshare", "-m", "--propagation", "private",
                                      "sh", "-c", script], stdin=subprocess.DEVNULL)

    def wait_ready(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.address, 22), timeout=0.5) as s:
                    if s.recv(4).startswith(b"SSH"):
                        return
            except OSError:
                time.sleep(0.05)
        raise LabUnavailable(f"sshd on {self.name} ({self.address}) did not come up; see {self.dir}/sshd.log")

    def kill_sshd(self) -> None:
        if self.sshd and self.sshd.poll() is None:
            self.sshd.kill()
            self.sshd.wait()

    def destroy(self) -> None:
        self.kill_sshd()
        if _sh("ip", "netns", "pids", self.netns, check=False).returncode == 0:
            self._kill_all(keep=None)
            _sh("ip", "netns", "del", self.netns, check=False)
        _sh("ip", "link", "del", self.veth, check=False)

    # ---- what tests do ----------------------------------------------------------------------------
    def run(self, command: str, check: bool = False) -> subprocess.CompletedProcess:
        """Run inside this host's network and mount view (its /srv), not over SSH: not logged as a command."""
        assert self.sshd is not None
        return _sh("nsenter", "-t", str(self.sshd.pid), "-n", "-m", "sh", "-c", command, check=check)

    def _kill_all(self, keep: int | None) -> None:
        pids = _sh("ip", "netns", "pids", self.netns, check=False).stdout.split()
        for pid in pids:
            if keep is not None and int(pid) == keep:
                continue
            try:
                os.kill(int(pid), 9)
            except OSError:
                pass

    def reset(self) -> None:
        """Stop everything but sshd, wipe /srv, forget the command log."""
        if self.sshd is None or self.sshd.poll() is not None:
            self.start_sshd()
            self.wait_ready()
        self._kill_all(keep=self.sshd.pid)
        for child in self.srv.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        self.log.write_bytes(b"")
        self.restore()

    def cut(self) -> None:
        """Take the host's side of the link down. The root side stays up so its route stays: packets to the
        host are dropped here instead of following the default route off this machine."""
        _sh("ip", "netns", "exec", self.netns, "ip", "link", "set", f"{self.prefix}p{self.index}", "down")

    def restore(self) -> None:
        _sh("ip", "netns", "exec", self.netns, "ip", "link", "set", f"{self.prefix}p{self.index}", "up")

    def commands(self) -> list[str]:
        """Every command (an SFTP session shows as sftp-server) that reached this host over SSH since the last reset."""
        if not self.log.exists():
            return []
        return [c for c in self.log.read_bytes().decode(errors="replace").split("\0") if c]


class HostLab:
    def __init__(self, count: int, base: Path = BASE, prefix: str = "dbl"):
        if count > 250:
            raise ValueError("at most 250 hosts")
        self.base = base
        self.hosts = [LabHost(i, base, prefix) for i in range(1, count + 1)]
        self.key_file = base / "id_ed25519"
        self.known_hosts = base / "known_hosts"

    def start(self) -> HostLab:
        if os.geteuid() != 0:
            raise LabUnavailable("namespace hosts need root (CI runs as root)")
        for tool in ("ip", "nsenter", "unshare", "ssh-keygen", "/usr/sbin/sshd"):
            if not shutil.which(tool):
                raise LabUnavailable(f"{tool} is missing (apt-get install openssh-server iproute2 util-linux)")
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "logcmd").write_text(WRAPPER)
        (self.base / "logcmd").chmod(0o755)
        if not self.key_file.exists():
            _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key_file))
        public = (self.key_file.with_suffix(".pub")).read_text().strip()
        lines = [h.create(public) for h in self.hosts]
        self.known_hosts.write_text("\n".join(lines) + "\n")
        for h in self.hosts:
            h.wait_ready()
        return self

    def stop(self) -> None:
        for h in self.hosts:
            h.destroy()

    def __enter__(self) -> HostLab:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
