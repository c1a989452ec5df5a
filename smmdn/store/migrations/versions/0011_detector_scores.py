"""Detector state (issue 25): the write band per site, and the daily scores, so a run costs one day.

The write band: per site, the writes folded in just before the state's clock.

Why: a write is stamped when it starts and becomes visible when it commits, so the detector re-reads readings
stamped up to ``SLACK`` before its last clock; when those were written just before the run (a backfill, the
day's ingest) every run re-read them. With the write stamps seen in that band recorded, the next run
re-reads it only if a write stamped in it committed late (a stamp it had not seen).

Two nullable columns on ``detector_sites``. A site's state without them (written before this revision)
re-reads its band once, as before, and records it.

The daily scores: a new table ``detector_scores`` (per series and day of the window: the verdict against
the forecast it was judged by, and what it was computed from), so a run scores its new day only. It starts
empty: the first detection after the upgrade scores its whole window, as every run did before.

Nothing else changes. Down drops the table and the columns (a cache: nothing is lost).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from smmdn.store.tables import band_columns, define_detector_scores

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("detector_sites") as batch:
        for column in band_columns():
            batch.add_column(column)
    define_detector_scores(sa.MetaData()).create(op.get_bind())


def downgrade() -> None:
    op.drop_table("detector_scores")
    with op.batch_alter_table("detector_sites") as batch:
        for column in reversed(band_columns()):
            batch.drop_column(column.name)
