"""RDS snapshots before migrations (`backup: {rds_snapshot: {instance: shop-prod}}`), and the restore a rollback
may ask for: a snapshot restores into a new DB instance (RDS cannot restore over an existing one), which the
operator then points the app at; the instance the app uses now is left as it is."""

from __future__ import annotations

import time
from collections.abc import Callable

from bot.aws.config import AWSSettings
from bot.aws.session import AWSError, asking, client


def snapshot_name(instance: str, deployment_id: int, stamp: str) -> str:
    """`shop-prod-d42-20261124t091600`: the instance, the deployment, its UTC time (stamp: 20261124T091600-d42)."""
    return f"{instance}-d{deployment_id}-{stamp[:15].lower()}"


def restored_name(instance: str, deployment_id: int) -> str:
    """The new instance a snapshot taken by deployment `deployment_id` restores into (at most 63 characters)."""
    return f"{instance[:40].rstrip('-')}-d{deployment_id}-restored"


def create_snapshot(settings: AWSSettings, instance: str, name: str, tags: dict[str, str]) -> None:
    with asking(f"creating RDS snapshot {name} of {instance}"):
        client("rds", settings).create_db_snapshot(
            DBSnapshotIdentifier=name,
            DBInstanceIdentifier=instance,
            Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
        )


def wait_available(
    settings: AWSSettings,
    name: str,
    timeout: float,
    interval: float,
    stopping: Callable[[], bool] = lambda: False,
) -> str:
    """Poll the snapshot until `available`; AWSError when it fails, or is not available within `timeout` seconds
    (the snapshot itself goes on: RDS finishes it whatever the bot does)."""
    deadline = time.monotonic() + timeout
    while True:
        with asking(f"reading RDS snapshot {name}"):
            found = client("rds", settings).describe_db_snapshots(DBSnapshotIdentifier=name)["DBSnapshots"]
        status = found[0].get("Status", "unknown") if found else "missing"
        if status == "available":
            return status
        if status in ("failed", "deleted", "missing", "incompatible-restore"):
            raise AWSError(f"RDS snapshot {name} is {status}")
        if time.monotonic() >= deadline or stopping():
            raise AWSError(f"RDS snapshot {name} still {status} after {timeout:g}s (rds_snapshot.wait_seconds)")
        time.sleep(interval)


def restore(settings: AWSSettings, snapshot: str, new_instance: str) -> str:
    """Start restoring `snapshot` into the new instance `new_instance`; its status (`creating` on AWS)."""
    with asking(f"restoring RDS snapshot {snapshot} into a new instance {new_instance}"):
        made = client("rds", settings).restore_db_instance_from_db_snapshot(
            DBInstanceIdentifier=new_instance, DBSnapshotIdentifier=snapshot
        )
    return str(made["DBInstance"].get("DBInstanceStatus", "creating"))
