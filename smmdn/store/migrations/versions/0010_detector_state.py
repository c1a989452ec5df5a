"""Detector state per series (issues 16, 25, 26): the daily values detection reads instead of re-reading the
trailing window of raw readings, and per site what they were built from (``smmdn.store.detector_state``).

Nothing existing changes. The new tables start empty: the first detection after the upgrade is a cold start
(it builds each site's days from the raw readings, as every run did before) and later runs read only what
changed. Down removes both tables; a cache, nothing is lost.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from smmdn.store.tables import DETECTOR_TABLES, define_detector_state

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    tables = define_detector_state(sa.MetaData())
    bind = op.get_bind()
    for name in DETECTOR_TABLES:
        tables[name].create(bind)


def downgrade() -> None:
    for name in reversed(DETECTOR_TABLES):
        op.drop_table(name)
