"""Secrets Manager values for shared/.env (`secrets_manager: {secret_id: shop/prod, keys: [DATABASE_URL]}`).

The secret is a JSON object of key/value pairs. Its values are handed to the redactor the moment they arrive, so
no output, error, message or audit row can show them. The keys asked for become `KEY='value'` lines held in
memory (a memfd on Linux, else a 0600 file in a private temporary folder) that the preflight sends to each host
over SFTP and merges into shared/.env there: the values are never on a command line a host's `ps` could show."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
from pathlib import Path

from bot.aws.config import AWSSettings, SecretsSource
from bot.aws.session import AWSError, asking, client
from bot.redact import redact


class SharedEnv:
    """`KEY='value'` lines for shared/.env, readable by this process at `path` until close()."""

    def __init__(self, source: str, keys: tuple[str, ...], content: bytes):
        self.source, self.keys = source, keys
        self._fd: int | None = None
        self._folder: Path | None = None
        if hasattr(os, "memfd_create"):
            self._fd = os.memfd_create("deploybot-env", os.MFD_CLOEXEC)
            os.write(self._fd, content)
            self.path = Path(f"/proc/{os.getpid()}/fd/{self._fd}")
        else:
            self._folder = Path(tempfile.mkdtemp(prefix="deploybot-env-"))  # 0700
            self.path = self._folder / "env"
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(content)

    def describe(self) -> str:
        return f"{', '.join(self.keys)} from {self.source}"

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def __del__(self) -> None:
        self.close()


def read(settings: AWSSettings, cfg: SecretsSource) -> dict[str, str]:
    """The asked-for keys of the secret; every value of it is masked from now on in this process."""
    with asking(f"reading the secret {cfg.secret_id}"):
        answer = client("secretsmanager", settings).get_secret_value(SecretId=cfg.secret_id)
    try:
        data = json.loads(answer.get("SecretString") or "")
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise AWSError(f"the secret {cfg.secret_id} is not a JSON object of key/value pairs")
    redact.remember(str(v) for v in data.values() if isinstance(v, str | int | float))
    missing = [k for k in cfg.keys if k not in data]
    if missing:
        raise AWSError(f"the secret {cfg.secret_id} has no {', '.join(missing)} (secrets_manager.keys)")
    values = {}
    for key in cfg.keys:
        value = data[key]
        if isinstance(value, dict | list) or value is None:
            raise AWSError(f"the secret {cfg.secret_id}: {key} is not a plain value")
        value = str(value).lower() if isinstance(value, bool) else str(value)
        if "\n" in value or "\0" in value:
            raise AWSError(f"the secret {cfg.secret_id}: {key} holds a line break, which shared/.env cannot hold")
        values[key] = value
    return values


def shared_env(settings: AWSSettings, cfg: SecretsSource) -> SharedEnv:
    values = read(settings, cfg)
    content = "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items()).encode()
    return SharedEnv(f"Secrets Manager secret {cfg.secret_id}", tuple(values), content)
