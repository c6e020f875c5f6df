"""The modals that act on a deployment: choosing a release to roll back to, and rejecting with a reason. No I/O."""

from __future__ import annotations

import json

from bot.domain import DeploymentRecord
from bot.service import RollbackOptions
from handlers.block_kit import Blocks, deployment_title, esc, section, user


def rollback_modal(options: RollbackOptions, channel: str, version: str | None = None) -> dict:
    choices = list(dict.fromkeys([v for v in (version, options.previous_good) if v] + options.available))[:100]
    initial = version or options.previous_good
    select: dict = {
        "type": "static_select",
        "action_id": "version",
        "options": [{"text": {"type": "plain_text", "text": v[:75]}, "value": v} for v in choices],
    }
    if initial:
        select["initial_option"] = {"text": {"type": "plain_text", "text": initial[:75]}, "value": initial}
    blocks: Blocks = [
        section(f"Roll back *{esc(options.environment)}* from *{esc(options.current or 'unknown')}*."),
        {
            "type": "input",
            "block_id": "version",
            "label": {"type": "plain_text", "text": "Target version"},
            "element": select,
        },
        {
            "type": "input",
            "block_id": "reason",
            "label": {"type": "plain_text", "text": "Reason"},
            "element": {"type": "plain_text_input", "action_id": "reason", "multiline": True, "max_length": 500},
        },
    ]
    snapshot = options.snapshot
    if options.migrations_since or snapshot:
        if options.migrations_since:
            blocks.append(
                section(
                    ":warning: The deploy being undone ran database migrations. The old release may "
                    "not work with the migrated schema; restoring the database backup loses the writes "
                    "made since."
                )
            )
        if snapshot:
            blocks.append(section(_snapshot_step(snapshot, options.previous_good)))
        blocks.append(
            {
                "type": "input",
                "block_id": "restore_db",
                "optional": True,
                "label": {"type": "plain_text", "text": "Database"},
                "element": {
                    "type": "checkboxes",
                    "action_id": "restore_db",
                    "options": [{"text": {"type": "plain_text", "text": _restore_label(snapshot)}, "value": "yes"}],
                },
            }
        )
    return {
        "type": "modal",
        "callback_id": "rollback_submit",
        "private_metadata": json.dumps({"env": options.environment, "channel": channel}),
        "title": {"type": "plain_text", "text": "Roll back"},
        "submit": {"type": "plain_text", "text": "Roll back"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": blocks,
    }


def _snapshot_step(snapshot: dict, version: str | None) -> str:
    """The restore step of an RDS snapshot, said before anyone ticks it: it makes a new instance."""
    return (
        f":camera_with_flash: RDS snapshot `{esc(snapshot['snapshot'])}` of `{esc(snapshot['of'])}` was taken "
        f"before the migration that followed *{esc(version or '?')}*. Restoring it creates a *new* DB instance "
        f"`{esc(snapshot['instance'])}` (restore_db_instance_from_db_snapshot); `{esc(snapshot['of'])}` is left "
        "as it is, and the app uses it until you point it at the new one."
    )


def _restore_label(snapshot: dict | None) -> str:
    return "Also restore the database" + (" (the RDS snapshot, into a new instance)" if snapshot else " backup")


def reject_modal(dep: DeploymentRecord, channel: str) -> dict:
    return {
        "type": "modal",
        "callback_id": "reject_submit",
        "private_metadata": json.dumps({"deployment": dep.id, "channel": channel}),
        "title": {"type": "plain_text", "text": "Reject deployment"},
        "submit": {"type": "plain_text", "text": "Reject"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            section(f"Reject {deployment_title(dep)} requested by {user(dep.requested_by)}?"),
            {
                "type": "input",
                "block_id": "reason",
                "optional": True,
                "label": {"type": "plain_text", "text": "Reason (shown in the channel)"},
                "element": {"type": "plain_text_input", "action_id": "reason", "max_length": 300},
            },
        ],
    }
