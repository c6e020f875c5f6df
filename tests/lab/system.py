"""Thin wrappers over the few system calls the lab needs, so hosts.py reads as what a host does.

Everything here works on pids and namespace names only; nothing knows about SSH or the app.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

# What a command over SSH sees (sshd's compiled-in PATH): keeps pyenv shims and the caller's env out of run().
HOST_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "USER": "root",
    "LOGNAME": "root",
    "SHELL": "/bin/sh",
}
TOOLS = ("ip", "nsenter", "unshare", "mount", "umount", "ssh-keygen", "/usr/sbin/sshd")


class LabUnavailable(RuntimeError):
    """This machine cannot make namespace hosts (not root, no ip netns, no sshd); tests skip with the reason."""


class LabBusy(LabUnavailable):
    """Another live test run holds this lab's lock (its base dir, namespace names and subnet)."""


def sh(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=timeout)


def require_lab_support() -> None:
    """Raise LabUnavailable with a reason a developer can act on."""
    if os.geteuid() != 0:
        raise LabUnavailable("namespace hosts need root (CI runs as root)")
    for tool in TOOLS:
        if not shutil.which(tool):
            raise LabUnavailable(f"{tool} is missing (apt-get install openssh-server iproute2 util-linux)")
    probe = sh("ip", "netns", "list", check=False)
    if probe.returncode != 0:
        raise LabUnavailable(f"`ip netns` does not work here: {probe.stderr.strip()}")
    probe = sh("unshare", "--net", "--mount", "--uts", "true", check=False)
    if probe.returncode != 0:  # root without CAP_SYS_ADMIN, as in an unprivileged container
        raise LabUnavailable(f"cannot create namespaces here: {probe.stderr.strip()}")


def netns_names() -> list[str]:
    out = sh("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def netns_pids(netns: str) -> list[int]:
    res = sh("ip", "netns", "pids", netns, check=False)
    return [int(p) for p in res.stdout.split()] if res.returncode == 0 else []


def kill(pids: list[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


@dataclass(frozen=True)
class Proc:
    """One process as /proc shows it. A zombie (state Z) has exited; init here reaps it late."""

    pid: int
    state: str
    comm: str
    cmdline: str

    @property
    def alive(self) -> bool:
        return self.state not in ("Z", "X")


def proc(pid: int) -> Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    state = stat[stat.rindex(")") + 2]
    return Proc(pid, state, comm, raw.replace(b"\0", b" ").decode(errors="replace").strip())


def is_mountpoint(path: Path) -> bool:
    """Read this process's mount table (works for files too, such as a bound namespace file)."""
    target = os.path.abspath(path)
    with open("/proc/self/mountinfo") as table:
        return any(line.split()[4].replace("\\040", " ") == target for line in table)


def umount(path: Path) -> None:
    """Unmount if mounted; lazily, so a leftover user of it never blocks clean-up."""
    while is_mountpoint(path):
        if sh("umount", "-l", str(path), check=False).returncode != 0:
            break


def private_dir(path: Path) -> None:
    """Make `path` a private mount point (as `ip netns` does for /run/netns): a persistent mount namespace file
    can only be bound where mounts do not propagate, and / is shared on systemd machines."""
    path.mkdir(parents=True, exist_ok=True)
    if not is_mountpoint(path):
        sh("mount", "--bind", str(path), str(path))
    sh("mount", "--make-private", str(path))
