"""nginx as the shared balancer: the app's upstream block lives in a file of its own, which the bot rewrites.

drain marks the hosts' `server` lines `down`, runs `nginx -t` (and puts the file back if it fails), then
`nginx -s reload`: the master starts workers with the new file and tells the old ones to finish the requests
they have and exit. drain returns once every old worker has stopped taking requests (its title says "is
shutting down", or it is gone), so from then on no new request reaches a drained host. wait_drained waits for
those old workers to exit: then every request that began before the drain has finished. Open source nginx
counts no requests per upstream server, so this waits for all of them (to any host), never too little.

stats() reads the server lines (state) and counts the access log, written with LOG_FORMAT (each attempt on
an upstream, with its status): exact for what the log holds, since it was last rotated. In-flight counts: None.

Everything runs on the balancer host through a Target: `local` on this machine, SSH for a balancer elsewhere
(the SSH user may write the upstream file and run the test and reload commands, e.g. `sudo nginx -s reload`).
Needs sh, cat, awk and procps' `ps -e -o` there.
"""

from __future__ import annotations

import re
import shlex
import threading
import time
from collections.abc import Sequence

from bot.targets.base import Command, Target
from bot.traffic.base import DOWN, DRAIN, READY, Backend, BackendStats, TrafficError, names, poll

# Add to the access log's format (or use as it is): the upstream tried (each attempt, when nginx retried) and
# what it answered.
LOG_FORMAT = 'upstream_addr="$upstream_addr" upstream_status="$upstream_status"'
SERVER = re.compile(r"(?m)^(?P<lead>[ \t]*server[ \t]+)(?P<addr>[^\s;]+)(?P<params>[^;\n]*);")
MARK = "--deploybot-traffic--"
# per upstream address: attempts and 5xx answers (mawk and gawk alike)
COUNT = r"""{
  if (!match($0, /upstream_addr="[^"]*"/)) next
  a = substr($0, RSTART + 15, RLENGTH - 16); s = ""
  if (match($0, /upstream_status="[^"]*"/)) s = substr($0, RSTART + 17, RLENGTH - 18)
  n = split(a, A, /, | : /); split(s, S, /, | : /)
  for (i = 1; i <= n; i++) if (A[i] != "-" && A[i] != "") { t[A[i]]++; if (S[i] ~ /^5/) e[A[i]]++ }
}
END { for (k in t) print k, t[k], e[k] + 0 }"""


def _endpoint(addr: str) -> str:
    """A server's address as `host:port` (nginx's default port is 80)."""
    if addr.startswith("unix:") or (re.search(r":\d+$", addr) and not addr.endswith("]")):
        return addr
    return f"{addr}:80"


def _is_down(params: str) -> bool:
    return "down" in params.split()


def _mark(text: str, endpoints: set[str], down: bool) -> str:
    def edit(m: re.Match[str]) -> str:
        if _endpoint(m["addr"]) not in endpoints:
            return m[0]
        params = [p for p in m["params"].split() if p != "down"] + (["down"] if down else [])
        return f"{m['lead']}{m['addr']}{''.join(' ' + p for p in params)};"

    return SERVER.sub(edit, text)


class NginxTraffic:
    """The app's upstream file on the balancer host, and nginx reloaded gracefully after each change."""

    def __init__(
        self,
        target: Target,
        upstream_file: str,
        *,
        pid_file: str = "/run/nginx.pid",
        access_log: str | None = None,
        hosts: Sequence[Backend] = (),
        test_command: str = "nginx -t",
        reload_command: str = "nginx -s reload",
        reload_timeout: float = 10.0,
        timeout: float = 30.0,
    ):
        self.target, self.file, self.pid_file, self.access_log = target, upstream_file, pid_file, access_log
        self.hosts, self.test_command, self.reload_command = list(hosts), test_command, reload_command
        self.reload_timeout, self.timeout = reload_timeout, timeout
        self.last_reload_seconds: float | None = None  # from `nginx -s reload` to the old workers shutting down
        self._lock = threading.Lock()

    # ---- the interface ------------------------------------------------------------------------------------
    def drain(self, hosts: Sequence[Backend]) -> None:
        with self._lock:
            text = self._read()
            servers = self._servers(text, hosts)
            if all(_is_down(params) or ep in servers for ep, params in self._all(text)):
                raise TrafficError(
                    f"draining {names(hosts)} would leave no server taking requests in {self.file}; nothing was changed"
                )
            self._apply(text, _mark(text, set(servers), down=True), f"drain {names(hosts)}")

    def restore(self, hosts: Sequence[Backend]) -> None:
        with self._lock:
            text = self._read()
            self._apply(text, _mark(text, set(self._servers(text, hosts)), down=False), f"restore {names(hosts)}")

    def wait_drained(self, hosts: Sequence[Backend], timeout: float) -> bool:
        text = self._read()
        self._servers(text, hosts)  # each host is in the file
        params = dict(self._all(text))
        serving = [h.name for h in hosts if not _is_down(params[h.endpoint])]
        if serving:
            raise TrafficError(f"{', '.join(serving)} still take new requests in {self.file}: drain them first")
        master = self._master()
        return poll(lambda: not self._workers(master, shutting=True), timeout, interval=0.05)

    def stats(self) -> dict[str, BackendStats]:
        shell = f"cat -- {shlex.quote(self.file)}"
        if self.access_log:
            shell += f" && echo {MARK} && awk {shlex.quote(COUNT)} {shlex.quote(self.access_log)}"
        what = f"read {self.file}" + (f" and {self.access_log}" if self.access_log else "")
        text, _, counted = self._run(shell, what).partition(MARK + "\n")
        counts = {}
        for line in counted.splitlines():
            addr, total, errors = line.rsplit(" ", 2)
            counts[addr] = (int(total), int(errors))
        known = self.access_log is not None
        out: dict[str, BackendStats] = {}
        for endpoint, params in self._all(text):
            name = self._name(endpoint)
            total, errors = counts.pop(endpoint, (0, 0))
            out[name] = BackendStats(
                name,
                DRAIN if _is_down(params) else READY,
                None,
                total if known else None,
                errors if known else None,
                f"{endpoint}{params} in {self.file}",
            )
        for endpoint, (total, errors) in counts.items():  # in the log, no longer in the file
            out[self._name(endpoint)] = BackendStats(
                self._name(endpoint), DOWN, None, total, errors, f"{endpoint} not in {self.file}"
            )
        return out

    # ---- the file and the reload --------------------------------------------------------------------------
    def _run(self, shell: str, what: str, timeout: float | None = None) -> str:
        res = self.target.run(Command("traffic", shell, timeout=timeout or self.timeout))
        if not res.ok:
            raise TrafficError(f"nginx on {self.target.name}: could not {what}: {res.describe()}")
        return res.stdout

    def _read(self) -> str:
        return self._run(f"cat -- {shlex.quote(self.file)}", f"read {self.file}")

    def _all(self, text: str) -> list[tuple[str, str]]:
        return [(_endpoint(m["addr"]), m["params"]) for m in SERVER.finditer(text)]

    def _servers(self, text: str, hosts: Sequence[Backend]) -> dict[str, Backend]:
        endpoints = {ep for ep, _ in self._all(text)}
        missing = [h for h in hosts if h.endpoint not in endpoints]
        if missing:
            listed = ", ".join(sorted(endpoints)) or "no server line"
            raise TrafficError(
                f"{', '.join(f'{h.name} ({h.endpoint})' for h in missing)} not in {self.file} on "
                f"{self.target.name}: it has {listed}"
            )
        return {h.endpoint: h for h in hosts}

    def _name(self, endpoint: str) -> str:
        return next((h.name for h in self.hosts if h.endpoint == endpoint), endpoint)

    def _apply(self, old: str, new: str, what: str) -> None:
        """Write, test, reload; then wait until the workers from before the reload take no new requests."""
        if new == old:
            return
        q = shlex.quote
        shell = "\n".join(
            [
                f'master=$(cat -- {q(self.pid_file)} 2>/dev/null) && kill -0 "$master" 2>/dev/null || '
                f"{{ echo 'nginx is not running (no live process in {self.pid_file})' >&2; exit 4; }}",
                'echo "$master"; ps -e -o pid=,ppid=,args=',
                f"echo {MARK}",
                "tmp=$(mktemp) && old=$(mktemp) || exit 5",
                f'cat -- {q(self.file)} > "$old" && printf \'%s\' {q(new)} > "$tmp" && cat "$tmp" > {q(self.file)}'
                ' || { rm -f "$tmp" "$old"; exit 5; }',
                f'if ! out=$({self.test_command} 2>&1); then cat "$old" > {q(self.file)}; rm -f "$tmp" "$old"; '
                "printf '%s\\n' \"$out\" >&2; exit 3; fi",
                'rm -f "$tmp" "$old"',
                f"{self.reload_command} 2>&1 || exit 6",
            ]
        )
        res = self.target.run(Command("traffic", shell, timeout=self.timeout))
        if res.exit_code == 3:
            raise TrafficError(
                f"nginx on {self.target.name}: `{self.test_command}` rejected {self.file} for "
                f"{what}; the file was put back as it was: {res.describe()}"
            )
        if res.exit_code == 6:
            raise TrafficError(
                f"nginx on {self.target.name}: `{self.reload_command}` failed after {self.file} "
                f"was changed for {what}: {res.describe()}"
            )
        if not res.ok:
            raise TrafficError(f"nginx on {self.target.name}: could not {what}: {res.describe()}")
        before = res.stdout.split(MARK)[0].splitlines()
        master = int(before[0])
        old_workers = self._parse_workers(master, "\n".join(before[1:]), shutting=False)
        started = time.monotonic()

        def reloaded() -> bool:
            now = self._workers(master, shutting=False)
            return bool(now) and not (old_workers & now)

        if not poll(reloaded, self.reload_timeout, interval=0.02):
            raise TrafficError(
                f"nginx on {self.target.name} did not take up {self.file} within "
                f"{self.reload_timeout:g}s of the reload for {what} (workers from before it "
                f"still take requests); see nginx's error log"
            )
        self.last_reload_seconds = time.monotonic() - started

    def _master(self) -> int:
        out = self._run(f"cat -- {shlex.quote(self.pid_file)}", f"read nginx's pid file {self.pid_file}")
        try:
            return int(out.strip())
        except ValueError:
            raise TrafficError(f"nginx on {self.target.name}: pid file {self.pid_file} holds {out.strip()!r}") from None

    def _workers(self, master: int, shutting: bool) -> set[int]:
        return self._parse_workers(master, self._run("ps -e -o pid=,ppid=,args=", "list nginx's workers"), shutting)

    @staticmethod
    def _parse_workers(master: int, ps: str, shutting: bool) -> set[int]:
        """The master's worker processes that are shutting down (shutting=True), or that take requests."""
        found = set()
        for line in ps.splitlines():
            parts = line.split(None, 2)
            if (
                len(parts) == 3
                and parts[1] == str(master)
                and "worker process" in parts[2]
                and ("shutting down" in parts[2]) == shutting
            ):
                found.add(int(parts[0]))
        return found
