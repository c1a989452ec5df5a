"""Alert lifecycle columns, delivery outbox, silences and maintenance windows, sensor replacements, and the
verification table (a TimescaleDB hypertable on ``valid_time`` where the extension is available).

0003 stays the empty placeholder it shipped as: databases already at 0004 upgrade from here.
Grants: 0004's default privileges cover these tables and the outbox/silence sequences (same owner).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from smmdn.store.schema_v1 import define_baseline
from smmdn.store.tables import (
    ACTIVE_ALERT_INDEX,
    ACTIVE_ALERT_KEY,
    ALERTING_HYPERTABLES,
    ALERTING_TABLES,
    alert_columns,
    define_alerting,
)
from smmdn.store.timescale import extension_version, make_hypertables

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _tables() -> dict[str, sa.Table]:
    md = sa.MetaData()
    return define_alerting(md, define_baseline(md)["alerts"])


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("alerts") as batch:  # SQLite: plain ADD COLUMN (all nullable or defaulted)
        for column in alert_columns():
            batch.add_column(column)
    op.create_index(ACTIVE_ALERT_INDEX, "alerts", list(ACTIVE_ALERT_KEY), unique=True,
                    postgresql_where=sa.text("status != 'resolved'"), sqlite_where=sa.text("status != 'resolved'"))
    tables = _tables()
    for name in ALERTING_TABLES:
        tables[name].create(bind, checkfirst=True)
    if bind.dialect.name == "postgresql" and extension_version(bind):
        make_hypertables(bind, ALERTING_HYPERTABLES)


def downgrade() -> None:
    bind = op.get_bind()
    tables = _tables()
    for name in reversed(ALERTING_TABLES):
        tables[name].drop(bind, checkfirst=True)
    op.drop_index(ACTIVE_ALERT_INDEX, table_name="alerts")
    with op.batch_alter_table("alerts") as batch:
        for column in reversed(alert_columns()):
            batch.drop_column(column.name)
