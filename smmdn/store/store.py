"""The ``Store``: one API over PostgreSQL+TimescaleDB and SQLite — a thin facade over its parts.

Writes are idempotent upserts on natural keys, one transaction per call (or per ``transaction()``
block), so a failure leaves nothing partial. Reads return canonical pandas frames.

Each table group is a module of functions taking the ``Store`` (sites, observations, forcing, forecasts,
models, ledger, alerts, verification, detector_state); the facade binds the long-standing ones as methods so
callers write ``store.read_sites()``. The facade itself holds only the plumbing: the engine, transactions, schema set-up
and checks, retention.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from smmdn.store import detector_state, forcing, forecasts, ledger, models, observations, sites
from smmdn.store import tables as T
from smmdn.store.common import Timeish, _now, _ts, _utc_column
from smmdn.store.engine import is_postgres, make_engine

__all__ = ["Store", "Timeish", "_ts", "_utc_column"]


class Store:
    """Database handle. ``Store(url)``; ``store.init()`` creates or upgrades the schema."""

    def __init__(self, url_or_engine: str | sa.Engine, *, _conn: sa.Connection | None = None) -> None:
        self.engine = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
        self._conn = _conn

    @classmethod
    def from_settings(cls, settings: Any = None) -> Store:
        from smmdn.config import get_settings

        settings = settings or get_settings()
        return cls(settings.resolved_database_url)

    # --- plumbing ---------------------------------------------------------------------------------
    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    @property
    def is_postgres(self) -> bool:
        return is_postgres(self.engine)

    @contextmanager
    def _begin(self) -> Iterator[sa.Connection]:
        if self._conn is not None:
            yield self._conn
            return
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """A ``Store`` whose calls share one transaction: all commit, or all roll back."""
        if self._conn is not None:
            yield self
            return
        with self.engine.begin() as conn:
            yield Store(self.engine, _conn=conn)

    def dispose(self) -> None:
        self.engine.dispose()

    # --- schema -----------------------------------------------------------------------------------
    def init(self, retention_days: int | None = None) -> dict[str, Any]:
        """Create or upgrade the schema (safe to run twice); apply licence-dependent policies."""
        from smmdn.store import migrate, timescale

        before, after = migrate.upgrade(self.engine)
        report: dict[str, Any] = {"revision_before": before, "revision": after}
        if self.is_postgres:
            with self.engine.begin() as conn:
                policy = timescale.apply_policies(conn, retention_days)
            report["policies"] = policy.__dict__
        return report

    def check(self) -> dict[str, Any]:
        """Backend, versions, licence, hypertables and row counts (``smmdn db check``)."""
        from smmdn.store import migrate, timescale

        info: dict[str, Any] = {"backend": self.backend, "url": self.engine.url.render_as_string(True)}
        info["revision"] = migrate.current_revision(self.engine)
        info["head"] = migrate.head_revision()
        with self.engine.connect() as conn:
            if self.is_postgres:
                info["server_version"] = conn.execute(sa.text("SHOW server_version")).scalar()
                info["timescaledb_version"] = timescale.extension_version(conn)
                info["timescaledb_licence"] = timescale.licence(conn)
                info["hypertables"] = timescale.hypertables(conn)
            else:
                info["server_version"] = conn.execute(sa.text("SELECT sqlite_version()")).scalar()
                info["timescaledb_version"] = None
                info["timescaledb_licence"] = None
                info["hypertables"] = []
            existing = set(sa.inspect(conn).get_table_names())
            info["row_counts"] = {
                name: conn.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar_one()
                for name in T.metadata.tables
                if name in existing
            }
        return info

    def apply_retention(self, days: int) -> dict[str, int]:
        """Delete raw observations and forcing older than ``days`` (drop_chunks on TimescaleDB)."""
        from smmdn.store import timescale

        cutoff = _now() - timedelta(days=days)
        removed: dict[str, int] = {}
        with self._begin() as conn:
            for table in ("observations", "forcing"):
                if self.is_postgres and table in timescale.hypertables(conn):
                    removed[f"{table}_chunks"] = timescale.drop_old_chunks(conn, table, timedelta(days=days))
                else:
                    tbl = T.metadata.tables[table]
                    removed[table] = conn.execute(tbl.delete().where(tbl.c.time < cutoff)).rowcount
        return removed

    # --- the parts, bound as methods -------------------------------------------------------------------
    upsert_sites = sites.upsert_sites
    upsert_sensors = sites.upsert_sensors
    end_sensor = sites.end_sensor
    read_sites = sites.read_sites
    read_sensors = sites.read_sensors

    write_observations = observations.write_observations
    read_observations = observations.read_observations
    read_daily_observations = observations.read_daily_observations
    aggregate_observations = observations.aggregate_observations

    write_forcing = forcing.write_forcing
    read_forcing = forcing.read_forcing

    start_forecast_run = forecasts.start_forecast_run
    finish_forecast_run = forecasts.finish_forecast_run
    write_forecasts = forecasts.write_forecasts
    read_forecasts = forecasts.read_forecasts
    latest_forecasts = forecasts.latest_forecasts
    forecast_runs = forecasts.forecast_runs

    register_model_version = models.register_model_version
    promote = models.promote
    roll_back = models.roll_back
    set_model_status = models.set_model_status
    champion = models.champion
    model_versions = models.model_versions

    get_watermark = ledger.get_watermark
    set_watermark = ledger.set_watermark
    file_seen = ledger.file_seen
    record_file = ledger.record_file
    file_record = ledger.file_record
    write_validation_run = ledger.write_validation_run
    validation_runs = ledger.validation_runs
    write_quarantine = ledger.write_quarantine
    list_quarantine = ledger.list_quarantine
    release_quarantine = ledger.release_quarantine

    read_detector_days = detector_state.read_detector_days
    read_detector_sites = detector_state.read_detector_sites
    write_detector_state = detector_state.write_detector_state

    # --- generic ----------------------------------------------------------------------------------
    def count(self, table: str) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.text(f"SELECT count(*) FROM {T.metadata.tables[table].name}")).scalar_one()
