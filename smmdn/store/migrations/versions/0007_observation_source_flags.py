"""Observations keep their source's quality flags: ``ismn_flag`` (ISMN's flag) and ``provider_flag`` (the
data provider's), both nullable text, verbatim as published.

Why nullable: every reading stored before the upgrade came from a source without such flags; they stay
as they are (NULL), and nothing pending (outbox rows, quarantine rows) is touched. On TimescaleDB the
columns are added to the hypertable with a plain ``ALTER TABLE … ADD COLUMN`` (no rewrite, no default).
Downgrading drops the two columns and the flags with them; the readings themselves stay.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

from smmdn.store.tables import observation_flag_columns

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("observations") as batch:
        for column in observation_flag_columns():
            batch.add_column(column)


def downgrade() -> None:
    with op.batch_alter_table("observations") as batch:
        for column in reversed(observation_flag_columns()):
            batch.drop_column(column.name)
