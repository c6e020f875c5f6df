"""stage output: the whole redacted output of each host's step (its last 256 KB), beside the excerpt Slack shows"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("stage_results") as batch:
        batch.add_column(sa.Column("output", sa.Text, nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("stage_results") as batch:
        batch.drop_column("output")
