"""The live schema: the frozen baseline (``schema_v1``) plus what later revisions add.

Keys, partitioning and the reasons behind them are documented in ``smmdn.store.schema_v1``.
A later revision that adds a table or column declares it here *and* in its own migration.
"""

from __future__ import annotations

import sqlalchemy as sa

from smmdn.store.schema_v1 import (  # noqa: F401 - re-exported constants
    BASELINE_TABLES,
    FORCING_KINDS,
    MODEL_STATUSES,
    NO_ISSUE_TIME,
    RUN_STATUSES,
    FloatArray,
    Json,
    Time,
    define_baseline,
)

metadata = sa.MetaData()
_baseline = define_baseline(metadata)
sites = _baseline["sites"]
sensors = _baseline["sensors"]
observations = _baseline["observations"]
forcing = _baseline["forcing"]
model_versions = _baseline["model_versions"]
forecast_runs = _baseline["forecast_runs"]
forecasts = _baseline["forecasts"]
alerts = _baseline["alerts"]
quarantine = _baseline["quarantine"]
watermarks = _baseline["watermarks"]
processed_files = _baseline["processed_files"]
validation_runs = _baseline["validation_runs"]

HYPERTABLES = {"observations": "time", "forcing": "time", "forecasts": "valid_time"}
