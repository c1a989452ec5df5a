"""TimescaleDB: hypertables for observations, forcing and forecasts (a no-op on SQLite and on
PostgreSQL servers without the extension available; ``smmdn db check`` reports which).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

from smmdn.store.tables import BASELINE_HYPERTABLES
from smmdn.store.timescale import extension_available, make_hypertables

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql" or not extension_available(bind):
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    make_hypertables(bind, BASELINE_HYPERTABLES)


def downgrade() -> None:
    # Hypertables cannot be turned back into plain tables in place; 0001's downgrade drops them.
    pass
