"""Hosts as network namespaces: own address, sshd, hostname, /srv and a clean /root (see DESIGN.md).

Why this shape:
- one /24 per host (10.201.N.2 inside, 10.201.N.1 on this side) so each host has its own route, and a cut
  host (its side of the veth down) drops packets here instead of sending them out the default route;
- a persistent mount namespace per host (a namespace file, as `ip netns` keeps network namespaces) holds the
  /srv and /root binds, so sshd can be killed and restarted and `run()` still sees the host's files;
- a clean /root, because root's ~/.bashrc on these machines runs `pyenv init` (+0.5 s per command);
- one address on this side that every host routes to (services_address), where tests and benchmarks run
  an artifact store for hosts that download the artifact themselves;
- every command that arrives over SSH is recorded (see sshd.py), so a test can prove nothing reached a host;
- a lock per lab (base dir, names, subnet), so two test runs on one machine never tear down each other's
  hosts, while a crashed run's leftovers (lock released by the kernel) are cleaned by the next start().
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.lab import sshd
from tests.lab.system import (
    HOST_ENV,
    LabBusy,
    LabUnavailable,
    Proc,
    kill,
    netns_names,
    netns_pids,
    private_dir,
    proc,
    require_lab_support,
    sh,
    umount,
)

BASE = Path("/tmp/deploybot-lab")
SLOTS = 8


class LabHost:
    """One host. Read its files from outside through `.srv`; run commands inside with `.run()`."""

    def __init__(self, index: int, base: Path, prefix: str, net: str):
        self.index = index
        self.base = base
        self.prefix = prefix
        self.net = net
        self._sshd: subprocess.Popen | None = None

    def __repr__(self) -> str:
        return f"LabHost({self.name} {self.address} netns={self.netns})"

    # ---- names and places -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return f"h{self.index}"

    @property
    def netns(self) -> str:
        return f"{self.prefix}-h{self.index}"

    @property
    def address(self) -> str:
        return f"{self.net}.{self.index}.2"

    @property
    def gateway(self) -> str:
        """This machine's address on the host's link."""
        return f"{self.net}.{self.index}.1"

    @property
    def services_address(self) -> str:
        """An address on this machine every host of the lab reaches (an artifact store listens there)."""
        return f"{self.net}.0.1"

    @property
    def dir(self) -> Path:
        return self.base / self.name

    @property
    def srv(self) -> Path:
        """The folder bound over /srv inside the host."""
        return self.dir / "srv"

    @property
    def home(self) -> Path:
        """The folder bound over /root inside the host."""
        return self.dir / "home"

    @property
    def veth(self) -> str:
        return f"{self.prefix}v{self.index}"

    @property
    def peer(self) -> str:
        return f"{self.prefix}p{self.index}"

    @property
    def mount_ns(self) -> Path:
        return self.base / "ns" / self.name

    @property
    def uts_ns(self) -> Path:
        return self.base / "ns" / f"{self.name}.uts"

    @property
    def sshd_log(self) -> Path:
        return self.dir / "sshd.log"

    def commands_log(self) -> Path:
        """The file the forced-command wrapper appends to (NUL-separated commands)."""
        return self.dir / "commands.log"

    # ---- life cycle -------------------------------------------------------------------------------
    def create(self, client_public_key: str, wrapper: Path) -> str:
        """Namespace, veth, empty /srv and /root, sshd; leftovers of an earlier run are removed first.
        Returns this host's known_hosts line. Does not wait for sshd (see wait_ready)."""
        self.destroy()
        self._wipe()
        line = sshd.write_host_files(self.dir, self.address, client_public_key, wrapper, self.commands_log())
        here_mac, host_mac = (f"02:db:00:00:{self.index:02x}:{end:02x}" for end in (1, 2))
        sh("ip", "netns", "add", self.netns)
        sh(
            "ip",
            "link",
            "add",
            self.veth,
            "address",
            here_mac,
            "type",
            "veth",
            "peer",
            "name",
            self.peer,
            "address",
            host_mac,
        )
        sh("ip", "link", "set", self.peer, "netns", self.netns)
        sh("ip", "addr", "add", f"{self.gateway}/24", "dev", self.veth)
        sh("ip", "link", "set", self.veth, "up")
        sh("ip", "-n", self.netns, "addr", "add", f"{self.address}/24", "dev", self.peer)
        sh("ip", "-n", self.netns, "link", "set", self.peer, "up")
        sh("ip", "-n", self.netns, "link", "set", "lo", "up")
        self._route_services()
        # Fixed neighbours both ways: no ARP, so a cut host always looks like a dead one (packets vanish, a
        # connect times out) instead of turning into "No route to host" once ARP gives up after ~3 s.
        sh("ip", "neigh", "replace", self.address, "lladdr", host_mac, "dev", self.veth, "nud", "permanent")
        sh(
            "ip",
            "-n",
            self.netns,
            "neigh",
            "replace",
            self.gateway,
            "lladdr",
            here_mac,
            "dev",
            self.peer,
            "nud",
            "permanent",
        )
        self.mount_ns.touch()
        self.uts_ns.touch()
        sh(
            "unshare",
            f"--mount={self.mount_ns}",
            f"--uts={self.uts_ns}",
            "--propagation",
            "private",
            "sh",
            "-c",
            f"hostname {self.name} && mount --bind {self.srv} /srv && mount --bind {self.home} /root",
        )
        self.commands_log().write_bytes(b"")
        self.sshd_log.write_bytes(b"")
        self._spawn_sshd()
        return line

    def destroy(self) -> None:
        """Kill everything in the namespace, delete it and the veth, drop the mount namespace."""
        if self.netns in netns_names():
            kill(netns_pids(self.netns))
            sh("ip", "netns", "del", self.netns, check=False)
        self._reap()
        sh("ip", "link", "del", self.veth, check=False)
        for ns_file in (self.mount_ns, self.uts_ns):
            umount(ns_file)
            ns_file.unlink(missing_ok=True)

    def _nsenter(self) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.netns}", f"--mount={self.mount_ns}", f"--uts={self.uts_ns}"]

    def _spawn_sshd(self) -> None:
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
        (self.dir / "sshd.pid").unlink(missing_ok=True)
        with open(self.dir / "sshd.stderr", "ab") as err:
            self._sshd = subprocess.Popen(
                [
                    *self._nsenter(),
                    "/usr/sbin/sshd",
                    "-D",
                    "-f",
                    str(self.dir / "sshd_config"),
                    "-E",
                    str(self.sshd_log),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )

    def _reap(self) -> None:
        if self._sshd is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._sshd.wait(timeout=5)
            self._sshd = None

    def sshd_pid(self) -> int | None:
        """The listening sshd: ours, or (another process's lab object) the one in the pid file."""
        if self._sshd is not None and self._sshd.poll() is None:
            return self._sshd.pid
        try:
            pid = int((self.dir / "sshd.pid").read_text())
        except (OSError, ValueError):
            return None
        info = proc(pid)
        return pid if info and info.alive and info.comm == "sshd" and pid in netns_pids(self.netns) else None

    def sshd_running(self) -> bool:
        return self.sshd_pid() is not None

    def wait_ready(self, timeout: float = 10) -> None:
        """Until sshd listens on the host's address. Read from the namespace's TCP table rather than by
        connecting, so readiness probes never show up in connections()."""
        want = "{}:0016".format("".join(f"{int(o):02X}" for o in reversed(self.address.split("."))))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.sshd_pid()
            if pid is None and self._sshd is not None and self._sshd.poll() is not None:
                break
            try:
                table = Path(f"/proc/{pid}/net/tcp").read_text() if pid else ""
            except OSError:
                table = ""
            if any(row.split()[1] == want and row.split()[3] == "0A" for row in table.splitlines()[1:]):
                return
            time.sleep(0.01)
        err = (self.dir / "sshd.stderr").read_text(errors="replace")[-500:]
        raise LabUnavailable(f"sshd on {self.name} ({self.address}) did not come up; {err or self.sshd_log}")

    def start_sshd(self) -> None:
        """Bring SSH back after kill_sshd (no-op if it runs)."""
        if not self.sshd_running():
            self._spawn_sshd()
            self.wait_ready()

    def kill_sshd(self) -> None:
        """SSH down, the app and files untouched: the listener and every SSH session die; new connects are refused."""
        pids = [p.pid for p in self.processes(include_sshd=True) if p.comm == "sshd"]
        listener = self.sshd_pid()
        kill(pids + ([listener] if listener else []))
        self._reap()

    def cut(self) -> None:
        """Unreachable, as a host that died: the host's side of the link goes down. This side stays up so its
        route stays, and packets to the host are dropped here (never sent off this machine by the default
        route); with the fixed neighbour entries, connects time out rather than fail fast."""
        sh("ip", "-n", self.netns, "link", "set", self.peer, "down")

    def restore(self) -> None:
        sh("ip", "-n", self.netns, "link", "set", self.peer, "up")
        self._route_services()  # a link going down takes its routes with it

    def _route_services(self) -> None:
        sh("ip", "-n", self.netns, "route", "replace", f"{self.services_address}/32", "via", self.gateway)

    def reset(self) -> None:
        """A clean host for the next test: sshd up, link up, every other process killed, /srv and /root wiped,
        command and sshd logs emptied."""
        if not self.sshd_running():
            self._spawn_sshd()
            self.wait_ready()
        self.restore()
        listener = self.sshd_pid()
        kill([pid for pid in netns_pids(self.netns) if pid != listener])
        self._wipe()
        self.commands_log().write_bytes(b"")
        self.sshd_log.write_bytes(b"")  # sshd opened it O_APPEND: truncating is safe

    def _wipe(self) -> None:
        """Empty /srv and /root (the folders stay: they are bound inside the host)."""
        for folder in (self.srv, self.home):
            folder.mkdir(parents=True, exist_ok=True)
            for child in folder.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()

    # ---- what tests look at -----------------------------------------------------------------------
    def run(self, command: str, check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run `sh -c command` inside the host (its network, its /srv and /root) with an SSH-like environment.
        Not over SSH, so not recorded in commands()."""
        return subprocess.run(
            [*self._nsenter(), "sh", "-c", command],
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
            env=HOST_ENV,
            cwd="/",
        )

    def answering(self, port: int = 8000) -> str | None:
        """The version the sample app on this host reports on /health, or None when nothing answers."""
        try:
            with urllib.request.urlopen(f"http://{self.address}:{port}/health", timeout=2) as resp:
                return json.loads(resp.read())["version"]
        except OSError:
            return None

    def tree(self) -> list[str]:
        """Every path under the host's /srv, to prove a failed deploy changed nothing."""
        return sorted(str(p.relative_to(self.srv)) for p in self.srv.rglob("*"))

    def current(self, app: str = "app") -> str | None:
        """The release /srv/<app>/current points at, or None."""
        link = self.srv / app / "current"
        return link.readlink().name if link.is_symlink() else None

    def inside(self, path: str) -> Path:
        """`path` as the host itself sees it, reached from outside through its sshd's root: unlike `.srv`, this
        shows what is mounted inside the host only (see small_disk)."""
        pid = self.sshd_pid()
        if pid is None:
            raise LabUnavailable(f"sshd on {self.name} is not running: nothing to see the host's files through")
        return Path(f"/proc/{pid}/root") / path.lstrip("/")

    @contextlib.contextmanager
    def small_disk(self, path: str, size_mb: float) -> Iterator[Path]:
        """A disk of `size_mb` over `path` inside the host only (a size-limited tmpfs in its mount namespace), as a
        disk that fills up; it starts empty and is unmounted on exit, when what was under it shows again. Yields
        inside(path): `.srv` still shows the folder under it."""
        quoted = shlex.quote(path)
        self.run(
            f"mkdir -p {quoted} && mount -t tmpfs -o size={int(size_mb * 1024)}k,mode=0755 "
            f"deploybot-small-disk {quoted}",
            check=True,
        )
        try:
            yield self.inside(path)
        finally:
            self.run(f"umount -l {quoted}")

    @contextlib.contextmanager
    def process_lists(self, *tools: str) -> Iterator[Path]:
        """While the block runs, each of `tools` (curl, wget) on this host first appends `=== <tool>` and the
        command line of every process on the machine (`ps -eww -o args=`, what any user of the host can read) to
        the file yielded, then runs as itself: the process list while the command that started it still runs.
        Done inside the host only (a script bound over the tool in its mount namespace)."""
        log = self.dir / "process-lists.txt"
        log.write_text("")
        placed: list[str] = []
        try:
            for tool in tools:
                path = shutil.which(tool, path=HOST_ENV["PATH"])
                assert path, f"no {tool} on this machine"
                real, script = self.dir / f"{tool}.real", self.dir / f"{tool}.listing"
                shutil.copy2(path, real)
                script.write_text(
                    f'#!/bin/sh\n{{ echo "=== {tool}"; ps -eww -o args=; }} >> {shlex.quote(str(log))}\n'
                    f'exec {shlex.quote(str(real))} "$@"\n'
                )
                script.chmod(0o755)
                self.run(f"mount --bind {shlex.quote(str(script))} {shlex.quote(path)}", check=True)
                placed.append(path)
            yield log
        finally:
            for path in placed:
                self.run(f"umount {shlex.quote(path)}")

    @contextlib.contextmanager
    def without(self, tool: str) -> Iterator[None]:
        """`tool` missing on this host while the block runs: an empty file that is not executable is bound over it
        in its mount namespace, so `command -v` (dash) does not find it."""
        path = shutil.which(tool, path=HOST_ENV["PATH"])
        assert path, f"no {tool} on this machine"
        empty = self.dir / f"{tool}.missing"
        empty.write_text("")
        empty.chmod(0o644)
        self.run(f"mount --bind {shlex.quote(str(empty))} {shlex.quote(path)}", check=True)
        try:
            yield
        finally:
            self.run(f"umount {shlex.quote(path)}")

    def processes(self, include_sshd: bool = False) -> list[Proc]:
        """Processes in the host (zombies included, see Proc.alive); sshd and its sessions left out by default."""
        found = [p for p in map(proc, netns_pids(self.netns)) if p is not None]
        return found if include_sshd else [p for p in found if p.comm != "sshd"]

    def commands(self) -> list[str]:
        """Every command that reached this host over SSH since the last reset (SFTP shows as sftp-server)."""
        try:
            data = self.commands_log().read_bytes()
        except FileNotFoundError:
            return []
        return [c for c in data.decode(errors="replace").split("\0") if c]

    def sessions(self) -> int:
        """SSH logins accepted since the last reset."""
        return sshd.count_accepted(self._sshd_log_text())

    def connections(self) -> int:
        """TCP connections sshd saw since the last reset, logged in or not (a rejected host key still counts)."""
        return sshd.count_connections(self._sshd_log_text())

    def _sshd_log_text(self) -> str:
        try:
            return self.sshd_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class HostLab:
    """N namespace hosts under one base dir, with one client key and one known_hosts file for all."""

    def __init__(self, count: int, base: Path = BASE, prefix: str = "dbl", net: str = "10.201"):
        if not 1 <= count <= 250:
            raise ValueError("a lab has 1 to 250 hosts")
        if not re.fullmatch(r"[a-z][a-z0-9]{0,10}", prefix):
            raise ValueError("prefix: 1-11 lowercase letters/digits (interface names are at most 15 characters)")
        if not re.fullmatch(r"10\.\d{1,3}", net):
            raise ValueError("net: the first two octets of a 10.x.0.0/16, e.g. 10.201")
        self.base = Path(base)
        self.prefix = prefix
        self.net = net
        self.hosts = [LabHost(i, self.base, prefix, net) for i in range(1, count + 1)]
        self.key_file = self.base / "id_ed25519"
        self.known_hosts = self.base / "known_hosts"
        self.wrapper = self.base / "logcmd"
        self._lock: int | None = None
        self._started = False

    @classmethod
    def slot(cls, count: int, slot: int) -> HostLab:
        """Slot 0 is the default lab (dbl-hN, 10.201.N.2); slot k uses dbl<k>-hN, 10.(201+k).N.2, its own base."""
        if slot == 0:
            return cls(count)
        return cls(count, base=BASE.with_name(f"{BASE.name}-{slot}"), prefix=f"dbl{slot}", net=f"10.{201 + slot}")

    @classmethod
    def claim(cls, count: int, slots: int = SLOTS) -> HostLab:
        """Start the first lab slot no other live run holds (so parallel test runs on one machine coexist)."""
        for k in range(slots):
            lab = cls.slot(count, k)
            try:
                return lab.start()
            except LabBusy:
                continue
        raise LabBusy(f"all {slots} lab slots are held by other test runs")

    @property
    def services_address(self) -> str:
        return self.hosts[0].services_address

    def host(self, name: str) -> LabHost:
        return next(h for h in self.hosts if h.name == name)

    def start(self) -> HostLab:
        """Create (or re-create) every host and wait until each sshd answers. Safe to call again."""
        require_lab_support()
        self.base.mkdir(parents=True, exist_ok=True)
        self._acquire()
        if self._started and all(h.sshd_running() for h in self.hosts):
            return self
        try:
            self._remove_strays()
            sshd.write_wrapper(self.wrapper)
            sshd.keygen(self.key_file)
            private_dir(self.base / "ns")
            public = self.key_file.with_name(self.key_file.name + ".pub").read_text().strip()
            sh("ip", "addr", "replace", f"{self.services_address}/32", "dev", "lo")
            lines = [h.create(public, self.wrapper) for h in self.hosts]
            self.known_hosts.write_text("\n".join(lines) + "\n")
            for h in self.hosts:
                h.wait_ready()
            self._started = True
        except subprocess.CalledProcessError as exc:
            self.stop()
            raise LabUnavailable(f"{' '.join(exc.cmd)} failed: {(exc.stderr or '').strip()}") from exc
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Kill every sshd and process in the hosts, delete namespaces and veths. Files stay for post-mortems.
        Refuses (LabBusy) to tear down a lab another live run holds."""
        self.base.mkdir(parents=True, exist_ok=True)
        self._acquire()
        self._started = False
        for h in self.hosts:
            h.destroy()
        self._remove_strays()
        sh("ip", "addr", "del", f"{self.services_address}/32", "dev", "lo", check=False)
        umount(self.base / "ns")
        if self._lock is not None:
            os.close(self._lock)  # releases the flock
            self._lock = None

    def _acquire(self) -> None:
        if self._lock is not None:
            return
        fd = os.open(self.base / "lab.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LabBusy(f"{self.base} is in use by another test run") from None
        self._lock = fd

    def _remove_strays(self) -> None:
        """Namespaces, veths and mount namespace files with this lab's names but not in it: a bigger crashed run."""
        mine = {h.index for h in self.hosts}
        ns_name = re.compile(rf"{self.prefix}-h(\d+)")
        for name in netns_names():
            m = ns_name.fullmatch(name)
            if m and int(m[1]) not in mine:
                LabHost(int(m[1]), self.base, self.prefix, self.net).destroy()
        veth = re.compile(rf"{self.prefix}v(\d+)")
        for line in sh("ip", "-o", "link", "show", check=False).stdout.splitlines():
            name = line.split(":")[1].strip().split("@")[0]
            m = veth.fullmatch(name)
            if m and int(m[1]) not in mine:
                sh("ip", "link", "del", name, check=False)
        ns_dir = self.base / "ns"
        if ns_dir.is_dir():
            for f in ns_dir.iterdir():
                if f.name.split(".")[0] not in {h.name for h in self.hosts}:
                    umount(f)
                    f.unlink(missing_ok=True)

    def __enter__(self) -> HostLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
