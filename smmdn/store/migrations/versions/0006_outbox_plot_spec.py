"""The delivery outbox carries a plot spec (``attachment_spec``): plots are drawn at delivery, for messages
that are sent, not in the detection loop.

Rows queued before the upgrade keep their PNG bytes in ``attachment`` and are delivered with them: nothing
pending is touched. Downgrading drops the column; rows that only had a spec then go out without a plot.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

from smmdn.store.tables import outbox_plot_columns

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alert_outbox") as batch:  # nullable: a plain ADD COLUMN on both backends
        for column in outbox_plot_columns():
            batch.add_column(column)


def downgrade() -> None:
    with op.batch_alter_table("alert_outbox") as batch:
        for column in reversed(outbox_plot_columns()):
            batch.drop_column(column.name)
