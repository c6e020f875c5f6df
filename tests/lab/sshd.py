"""The files one lab sshd needs: its config, host key, authorized_keys and the command-recording wrapper.

Why a forced command: tests must prove that *no command reached a host* (a hostile version, an unknown
host key). sshd replaces every command a client sends with the forced one and passes the original in
$SSH_ORIGINAL_COMMAND, so the wrapper records it before running it. An SFTP session arrives the same way
(as the external sftp-server binary; `internal-sftp` could not be run by the wrapper), so uploads are
recorded too. sshd's own VERBOSE log (-E) gives the connections and accepted logins.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.lab.system import sh

SFTP_SERVER = "/usr/lib/openssh/sftp-server"

WRAPPER = r"""#!/bin/sh
# Forced command: record what came in (NUL-separated: commands may hold newlines), then run it with sh.
printf '%s\0' "$SSH_ORIGINAL_COMMAND" >> "$1"
exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"
"""

CONFIG = """# deploybot test lab: one sshd per namespace host
Port 22
ListenAddress {address}
HostKey {dir}/ssh_host_ed25519_key
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
MaxStartups 200:30:400
MaxSessions 100
Subsystem sftp {sftp}
LogLevel VERBOSE
"""

_ACCEPTED = re.compile(r"\bAccepted publickey for ")
_CONNECTION = re.compile(r"\bConnection from \S+ port \d+")


def keygen(path: Path) -> None:
    """An ed25519 key pair at path (and path.pub), made once and kept, so known_hosts stays valid across runs."""
    if not path.exists() or not path.with_name(path.name + ".pub").exists():
        path.unlink(missing_ok=True)
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"deploybot-lab {path.name}", "-f", str(path))


def write_wrapper(path: Path) -> None:
    path.write_text(WRAPPER)
    path.chmod(0o755)


def write_host_files(dir: Path, address: str, client_public_key: str, wrapper: Path, log: Path) -> str:
    """Config, host key and authorized_keys for one host; returns its known_hosts line."""
    key = dir / "ssh_host_ed25519_key"
    keygen(key)
    (dir / "sshd_config").write_text(CONFIG.format(address=address, dir=dir, sftp=SFTP_SERVER))
    (dir / "authorized_keys").write_text(
        f'command="{wrapper} {log}",no-port-forwarding,no-agent-forwarding,no-X11-forwarding {client_public_key}\n'
    )
    kind, blob = (dir / "ssh_host_ed25519_key.pub").read_text().split()[:2]
    return f"{address} {kind} {blob}"


def count_accepted(log_text: str) -> int:
    return len(_ACCEPTED.findall(log_text))


def count_connections(log_text: str) -> int:
    return len(_CONNECTION.findall(log_text))
