"""Baseline schema (revision 0001), frozen: a function so the migration builds its own copy.

Table definitions (SQLAlchemy Core), one schema for PostgreSQL+TimescaleDB and SQLite.

Keys and partitioning (the hypertables are partitioned by their time column, which therefore is part
of every unique key, as TimescaleDB requires):

| table            | natural key                                                     | hypertable on |
|------------------|-----------------------------------------------------------------|---------------|
| observations     | site, depth_cm, sensor, time                                    | time          |
| forcing          | site, variable, kind, source, issue_time, time                  | time          |
| forecasts        | site, depth_cm, valid_time, issue_time, model_version           | valid_time    |
| sites            | site                                                            | –             |
| sensors          | site, depth_cm, sensor                                          | –             |
| model_versions   | version                                                         | –             |
| forecast_runs    | run_id                                                          | –             |
| alerts           | id (surrogate); dedup_key unique                                | –             |
| quarantine       | id (surrogate)                                                  | –             |
| watermarks       | source, key                                                     | –             |
| processed_files  | sha256                                                          | –             |
| validation_runs  | id (surrogate)                                                  | –             |

Keys never hold NULL (PostgreSQL treats NULLs as distinct, so ``ON CONFLICT`` would never fire):
forcing that is not a weather forecast carries ``issue_time = NO_ISSUE_TIME`` (1970-01-01T00:00Z) and
an explicit ``kind`` (observed | archive | forecast).

Forcing is stored long (one row per variable) because every source brings its own set of variables and
"any extra numeric column is an input"; reads pivot it back to the wide canonical frame.

Times are ``timestamptz`` on PostgreSQL and naive-UTC on SQLite; the store converts at the boundary.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

NO_ISSUE_TIME = datetime(1970, 1, 1, tzinfo=UTC)
FORCING_KINDS = ("observed", "archive", "forecast")
MODEL_STATUSES = ("champion", "challenger", "retired", "rejected")
RUN_STATUSES = ("running", "complete", "failed")


Time = sa.DateTime(timezone=True)
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# Mixture parameters: real[] on PostgreSQL (compact, COPY-able), JSON arrays on SQLite.
FloatArray = sa.JSON().with_variant(postgresql.ARRAY(sa.REAL()), "postgresql")


def _now() -> datetime:
    return datetime.now(UTC)


def define_baseline(metadata: sa.MetaData) -> dict[str, sa.Table]:
    """Add the revision-0001 tables to ``metadata``. Never edit: later revisions add, in tables.py."""

    sites = sa.Table(
        "sites",
        metadata,
        sa.Column("site", sa.Text, primary_key=True),
        sa.Column("name", sa.Text),
        sa.Column("latitude", sa.Float),
        sa.Column("longitude", sa.Float),
        sa.Column("elevation_m", sa.Float),
        sa.Column("timezone", sa.Text, comment="How the site's daily dates are labelled (e.g. LST UTC-6)."),
        sa.Column("tags", Json, nullable=False, default=list),
        sa.Column("source", sa.Text),
        sa.Column("attributes", Json, nullable=False, default=dict, comment="Numeric static attributes."),
        sa.Column("updated_at", Time, nullable=False, default=_now),
    )

    sensors = sa.Table(
        "sensors",
        metadata,
        sa.Column("site", sa.Text, sa.ForeignKey("sites.site"), primary_key=True),
        sa.Column("depth_cm", sa.Float, primary_key=True),
        sa.Column("sensor", sa.Text, primary_key=True),
        sa.Column("active_from", Time, nullable=False, default=NO_ISSUE_TIME),
        sa.Column("active_to", Time, comment="End of the active period (sensor replaced or removed)."),
        sa.Column("source", sa.Text),
        sa.Column("attributes", Json, nullable=False, default=dict),
    )

    observations = sa.Table(
        "observations",
        metadata,
        sa.Column("time", Time, primary_key=True),
        sa.Column("site", sa.Text, primary_key=True),
        sa.Column("depth_cm", sa.Float, primary_key=True),
        sa.Column("sensor", sa.Text, primary_key=True),
        sa.Column("vwc", sa.Float, nullable=False, comment="Volumetric water content, m3/m3."),
        sa.Column("quality_flag", sa.Text, nullable=False, default="ok"),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("ingested_at", Time, nullable=False, comment="First time this reading was known."),
        sa.Column("updated_at", Time, nullable=False, comment="Last time its value or flag changed."),
    )

    forcing = sa.Table(
        "forcing",
        metadata,
        sa.Column("time", Time, primary_key=True),
        sa.Column("site", sa.Text, primary_key=True),
        sa.Column("variable", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, primary_key=True),
        sa.Column("source", sa.Text, primary_key=True),
        sa.Column("issue_time", Time, primary_key=True),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("ingested_at", Time, nullable=False),
        sa.Column("updated_at", Time, nullable=False),
        sa.CheckConstraint("kind IN ('observed', 'archive', 'forecast')", name="forcing_kind"),
    )

    model_versions = sa.Table(
        "model_versions",
        metadata,
        sa.Column("version", sa.Text, primary_key=True),
        sa.Column("parent", sa.Text),
        sa.Column("kind", sa.Text, nullable=False, comment="full | fine-tune"),
        sa.Column("created_at", Time, nullable=False, default=_now),
        sa.Column("train_start", Time),
        sa.Column("train_end", Time),
        sa.Column("metrics", Json, nullable=False, default=dict),
        sa.Column("artifact_uri", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False, default="challenger"),
        sa.Column("note", sa.Text),
        sa.Column("promoted_at", Time),
    )

    forecast_runs = sa.Table(
        "forecast_runs",
        metadata,
        sa.Column("run_id", sa.Text, primary_key=True),
        sa.Column("issue_time", Time, nullable=False),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False, default="running"),
        sa.Column("started_at", Time, nullable=False, default=_now),
        sa.Column("finished_at", Time),
        sa.Column("stale_forcing", sa.Boolean, nullable=False, default=False),
        sa.Column("input_freshness", Json, nullable=False, default=dict),
        sa.Column("validation", Json, nullable=False, default=dict),
        sa.Column("n_rows", sa.Integer),
        sa.Column("message", sa.Text),
    )

    forecasts = sa.Table(
        "forecasts",
        metadata,
        sa.Column("valid_time", Time, primary_key=True),
        sa.Column("site", sa.Text, primary_key=True),
        sa.Column("depth_cm", sa.Float, primary_key=True),
        sa.Column("issue_time", Time, primary_key=True),
        sa.Column("model_version", sa.Text, primary_key=True),
        sa.Column("lead", sa.Integer, nullable=False),
        sa.Column("run_id", sa.Text, nullable=False),
        sa.Column("weights", FloatArray, nullable=False),
        sa.Column("means", FloatArray, nullable=False),
        sa.Column("sigmas", FloatArray, nullable=False),
        sa.Column("mean", sa.Float, nullable=False),
        sa.Column("sd", sa.Float, nullable=False),
        sa.Column("q05", sa.Float, nullable=False),
        sa.Column("q25", sa.Float, nullable=False),
        sa.Column("q50", sa.Float, nullable=False),
        sa.Column("q75", sa.Float, nullable=False),
        sa.Column("q95", sa.Float, nullable=False),
    )

    alerts = sa.Table(
        "alerts",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("dedup_key", sa.Text, nullable=False, unique=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("site", sa.Text, nullable=False),
        sa.Column("depth_cm", sa.Float, nullable=False),
        sa.Column("sensor", sa.Text, nullable=False, comment="'*' for alerts about the whole cluster."),
        sa.Column("window_start", Time, nullable=False),
        sa.Column("window_end", Time, nullable=False),
        sa.Column("observed", sa.Float),
        sa.Column("predicted_low", sa.Float),
        sa.Column("predicted_high", sa.Float),
        sa.Column("pit", sa.Float),
        sa.Column("status", sa.Text, nullable=False, default="open"),
        sa.Column("message", sa.Text),
        sa.Column("details", Json, nullable=False, default=dict),
        sa.Column("created_at", Time, nullable=False, default=_now),
        sa.Column("notified_at", Time),
    )

    quarantine = sa.Table(
        "quarantine",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("table_name", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("site", sa.Text),
        sa.Column("time", Time),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("row", Json, nullable=False, comment="The rejected row exactly as received."),
        sa.Column("quarantined_at", Time, nullable=False, default=_now),
        sa.Column("released_at", Time),
        sa.Column("released_by", sa.Text),
    )

    watermarks = sa.Table(
        "watermarks",
        metadata,
        sa.Column("source", sa.Text, primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("value", Time, nullable=False),
        sa.Column("updated_at", Time, nullable=False, default=_now),
    )

    processed_files = sa.Table(
        "processed_files",
        metadata,
        sa.Column("sha256", sa.Text, primary_key=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("processed_at", Time, nullable=False, default=_now),
    )

    validation_runs = sa.Table(
        "validation_runs",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("success", sa.Boolean, nullable=False),
        sa.Column("summary", Json, nullable=False),
        sa.Column("data_docs", sa.Text),
        sa.Column("created_at", Time, nullable=False, default=_now),
    )

    sa.Index("ix_forecasts_series_issue", forecasts.c.site, forecasts.c.depth_cm, forecasts.c.issue_time)
    sa.Index("ix_forecast_runs_issue", forecast_runs.c.issue_time)
    sa.Index("ix_alerts_status", alerts.c.status)
    sa.Index("ix_quarantine_open", quarantine.c.table_name, quarantine.c.released_at)
    return {
        t.name: t
        for t in (
            sites,
            sensors,
            observations,
            forcing,
            model_versions,
            forecast_runs,
            forecasts,
            alerts,
            quarantine,
            watermarks,
            processed_files,
            validation_runs,
        )
    }


BASELINE_TABLES = (
    "sites",
    "sensors",
    "observations",
    "forcing",
    "model_versions",
    "forecast_runs",
    "forecasts",
    "alerts",
    "quarantine",
    "watermarks",
    "processed_files",
    "validation_runs",
)
