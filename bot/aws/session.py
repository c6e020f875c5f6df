"""boto3 clients, made once per service and place and shared by every thread (boto3 clients are thread-safe;
making one costs about a quarter of a second). Credentials come from boto3's default chain and stay in this
process: nothing here passes them to a host, a log line or a message.

Every AWS failure leaves this package as an AWSError whose message says what was asked and what AWS answered
(its error code and message), never a credential."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bot.aws.config import AWSSettings

_clients: dict[tuple, Any] = {}
_lock = threading.Lock()


class AWSError(RuntimeError):
    """AWS could not be asked, or answered an error; the message is fit for the person who asked."""


def client(service: str, settings: AWSSettings | None = None) -> Any:
    """A boto3 client for `service`, at the configured region and endpoint (else AWS_REGION and AWS_ENDPOINT_URL,
    which boto3 reads itself)."""
    settings = settings or AWSSettings()
    key = (
        service,
        settings.region,
        settings.endpoint_url,
        os.environ.get("AWS_ENDPOINT_URL"),
        os.environ.get("AWS_PROFILE"),
        os.environ.get("AWS_ACCESS_KEY_ID"),
    )
    with _lock:
        made = _clients.get(key)
        if made is None:
            import boto3
            from botocore.config import Config

            options: dict = {
                "retries": {"max_attempts": 3, "mode": "standard"},
                "connect_timeout": 5,
                "read_timeout": 30,
            }
            if service == "s3":  # SigV4 presigned URLs (X-Amz-Signature), accepted in every region
                options["signature_version"] = "s3v4"
            session = boto3.session.Session(region_name=settings.region)
            made = session.client(service, endpoint_url=settings.endpoint_url, config=Config(**options))
            _clients[key] = made
        return made


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError ('NoSuchKey', '404', 'AccessDenied'), else ''."""
    response = getattr(exc, "response", None)
    return str((response or {}).get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


@contextmanager
def asking(what: str) -> Iterator[None]:
    """Turn whatever boto3 raises while doing `what` into an AWSError naming it."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        err = exc.response.get("Error", {})
        detail = f"{err.get('Code', 'error')}: {err.get('Message') or 'no message'}".rstrip(": ")
        raise AWSError(f"{what}: {detail}") from None
    except BotoCoreError as exc:  # no credentials, no region, endpoint unreachable ...
        raise AWSError(f"{what}: {exc}") from None
