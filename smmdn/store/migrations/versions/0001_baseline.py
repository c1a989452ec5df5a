"""Baseline schema: sites, sensors, observations, forcing, model versions, forecast runs, forecasts,
alerts, quarantine, watermarks, processed files, validation runs; the latest-forecast view.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from smmdn.store.schema_v1 import BASELINE_TABLES, define_baseline

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# One row per series: the forecasts of the latest complete run that covers it. Dashboards read this.
LATEST_FORECASTS_VIEW = """
CREATE VIEW latest_forecasts AS
SELECT valid_time, site, depth_cm, issue_time, model_version, lead, run_id, weights, means, sigmas,
       mean, sd, q05, q25, q50, q75, q95
FROM (
  SELECT f.*, dense_rank() OVER (
           PARTITION BY f.site, f.depth_cm
           ORDER BY f.issue_time DESC, r.finished_at DESC, r.run_id DESC) AS freshness_rank
  FROM forecasts f JOIN forecast_runs r ON r.run_id = f.run_id
  WHERE r.status = 'complete'
) ranked
WHERE freshness_rank = 1
"""


def upgrade() -> None:
    bind = op.get_bind()
    tables = define_baseline(sa.MetaData())
    for name in BASELINE_TABLES:
        tables[name].create(bind, checkfirst=True)
    op.execute(LATEST_FORECASTS_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS latest_forecasts")
    bind = op.get_bind()
    tables = define_baseline(sa.MetaData())
    for name in reversed(BASELINE_TABLES):
        tables[name].drop(bind, checkfirst=True)
