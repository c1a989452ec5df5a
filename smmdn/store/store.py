"""The ``Store``: one API over PostgreSQL+TimescaleDB and SQLite.

Writes are idempotent upserts on natural keys, one transaction per call (or per ``transaction()``
block), so a failure leaves nothing partial. Reads return canonical pandas frames.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa

from smmdn.errors import InputError
from smmdn.store import tables as T
from smmdn.store.bulk import WriteResult, upsert_frame, upsert_rows
from smmdn.store.engine import is_postgres, make_engine
from smmdn.store.frames import (
    expand_mixture,
    forcing_long_for_write,
    forecasts_for_write,
    observations_for_write,
    rows_of,
)

Timeish = datetime | pd.Timestamp | str | None
FORCING_PRIORITY = {"observed": 0, "archive": 1, "forecast": 2}


def _ts(value: Timeish) -> datetime | None:
    """A UTC-aware datetime (naive input is read as UTC)."""
    if value is None:
        return None
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def _utc_column(series: pd.Series) -> pd.Series:
    converted = pd.to_datetime(series, utc=True)
    return converted.dt.as_unit("ns") if hasattr(converted.dt, "as_unit") else converted


def _now() -> datetime:
    return datetime.now(UTC)


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

    # --- registry ---------------------------------------------------------------------------------
    def upsert_sites(self, frame: pd.DataFrame) -> WriteResult:
        if "site" not in frame.columns:
            raise InputError("missing column site", where="sites", column="site", fix="give a site id per row")
        out = frame.copy()
        out["site"] = out["site"].astype(str)
        for column, default in (("tags", list), ("attributes", dict)):
            if column not in out.columns:
                out[column] = [default() for _ in range(len(out))]
        for column in ("name", "latitude", "longitude", "elevation_m", "timezone", "source"):
            if column not in out.columns:
                out[column] = None
        from smmdn.store.frames import reject_duplicates, reject_null_keys

        reject_null_keys(out, ("site",), "sites")
        reject_duplicates(out, ("site",), "sites")
        out["updated_at"] = _now()
        columns = [
            "site",
            "name",
            "latitude",
            "longitude",
            "elevation_m",
            "timezone",
            "tags",
            "source",
            "attributes",
            "updated_at",
        ]
        compare = columns[1:-1]
        with self._begin() as conn:
            return upsert_rows(conn, T.sites, columns, rows_of(out, columns), ["site"], compare, ["updated_at"])

    def upsert_sensors(self, frame: pd.DataFrame) -> WriteResult:
        from smmdn.store.frames import reject_duplicates, reject_null_keys

        out = frame.copy()
        for column in ("site", "depth_cm", "sensor"):
            if column not in out.columns:
                raise InputError(
                    f"missing column {column}",
                    where="sensors",
                    column=column,
                    fix="give site, depth_cm and sensor",
                )
        out["site"] = out["site"].astype(str)
        out["sensor"] = out["sensor"].astype(str)
        out["depth_cm"] = pd.to_numeric(out["depth_cm"])
        reject_null_keys(out, ("site", "depth_cm", "sensor"), "sensors")
        reject_duplicates(out, ("site", "depth_cm", "sensor"), "sensors")
        out["active_from"] = _utc_column(out["active_from"]) if "active_from" in out else pd.Timestamp(T.NO_ISSUE_TIME)
        out["active_from"] = out["active_from"].fillna(pd.Timestamp(T.NO_ISSUE_TIME))
        out["active_to"] = _utc_column(out["active_to"]) if "active_to" in out else pd.NaT
        if "source" not in out:
            out["source"] = None
        if "attributes" not in out:
            out["attributes"] = [{} for _ in range(len(out))]
        columns = ["site", "depth_cm", "sensor", "active_from", "active_to", "source", "attributes"]
        with self._begin() as conn:
            self._require_sites(conn, out["site"], "sensors")
            return upsert_rows(
                conn, T.sensors, columns, rows_of(out, columns), ["site", "depth_cm", "sensor"], columns[3:]
            )

    def end_sensor(self, site: str, depth_cm: float, sensor: str, at: Timeish) -> None:
        """Close a sensor's active period (replacement or removal)."""
        with self._begin() as conn:
            conn.execute(
                T.sensors.update()
                .where(
                    T.sensors.c.site == site,
                    T.sensors.c.depth_cm == float(depth_cm),
                    T.sensors.c.sensor == sensor,
                )
                .values(active_to=_ts(at))
            )

    def read_sites(self) -> pd.DataFrame:
        with self.engine.connect() as conn:
            frame = pd.read_sql(sa.select(T.sites).order_by(T.sites.c.site), conn)
        return self._json_columns(frame, ("tags", "attributes"))

    def read_sensors(self, active_at: Timeish = None) -> pd.DataFrame:
        query = sa.select(T.sensors).order_by(T.sensors.c.site, T.sensors.c.depth_cm, T.sensors.c.sensor)
        if active_at is not None:
            at = _ts(active_at)
            query = query.where(
                T.sensors.c.active_from <= at,
                sa.or_(T.sensors.c.active_to.is_(None), T.sensors.c.active_to > at),
            )
        with self.engine.connect() as conn:
            frame = pd.read_sql(query, conn)
        for column in ("active_from", "active_to"):
            frame[column] = _utc_column(frame[column])
        return self._json_columns(frame, ("attributes",))

    @staticmethod
    def _json_columns(frame: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
        for column in columns:
            frame[column] = [json.loads(v) if isinstance(v, str) else v for v in frame[column]]
        return frame

    def _require_sites(self, conn: sa.Connection, sites: pd.Series, table: str) -> None:
        wanted = set(map(str, pd.unique(sites)))
        if not wanted:
            return
        known = {r[0] for r in conn.execute(sa.select(T.sites.c.site).where(T.sites.c.site.in_(wanted)))}
        unknown = sorted(wanted - known)
        if unknown:
            rows = list(sites.index[sites.astype(str).isin(unknown)][:20])
            raise InputError(
                f"unknown site(s) {', '.join(unknown[:10])}",
                where=table,
                column="site",
                rows=rows,
                fix="register the sites first (smmdn sites load REGISTRY.yaml, or Store.upsert_sites)",
            )

    # --- observations -----------------------------------------------------------------------------
    def write_observations(self, frame: pd.DataFrame, source: str) -> WriteResult:
        """Upsert canonical observations (+ optional ``quality_flag``) from ``source``."""
        out = observations_for_write(frame)
        now = _now()
        out["source"] = source
        out["ingested_at"] = now
        out["updated_at"] = now
        flags = [c for c in T.OBSERVATION_FLAG_COLUMNS if c in out.columns]  # ISMN's and the provider's
        columns = [
            "time",
            "site",
            "depth_cm",
            "sensor",
            "vwc",
            "quality_flag",
            *flags,
            "source",
            "ingested_at",
            "updated_at",
        ]
        with self._begin() as conn:
            self._require_sites(conn, out["site"], "observations")
            return upsert_rows(
                conn,
                T.observations,
                columns,
                rows_of(out, columns),
                ["site", "depth_cm", "sensor", "time"],
                ["vwc", "quality_flag", *flags, "source"],
                ["updated_at"],
            )

    def read_observations(
        self,
        sites: Sequence[str] | None = None,
        start: Timeish = None,
        end: Timeish = None,
        as_of: Timeish = None,
        source_flags: bool = False,
    ) -> pd.DataFrame:
        """Observations in [start, end), optionally only those known at ``as_of`` (first ingest).

        ``source_flags`` adds the source's own flags (``ismn_flag``, ``provider_flag``; empty text where the
        source gave none); off by default so every existing reader sees the columns it always saw.
        """
        t = T.observations
        query = sa.select(
            t.c.time,
            t.c.site,
            t.c.depth_cm,
            t.c.sensor,
            t.c.vwc,
            t.c.quality_flag,
            *((t.c[c] for c in T.OBSERVATION_FLAG_COLUMNS) if source_flags else ()),
            t.c.source,
            t.c.ingested_at,
        )
        query = self._time_filters(query, t.c.time, start, end)
        if sites:
            query = query.where(t.c.site.in_(list(sites)))
        if as_of is not None:
            query = query.where(t.c.ingested_at <= _ts(as_of))
        query = query.order_by(t.c.site, t.c.depth_cm, t.c.sensor, t.c.time)
        return self._read_observation_rows(query)

    def _read_observation_rows(self, query: sa.Select) -> pd.DataFrame:
        """Run an observations select fast: rows are many (a day of hourly readings per series).

        Why not ``pd.read_sql``: it builds a Python datetime per value and then infers the column type,
        seconds per million rows. PostgreSQL streams the rows with ``COPY … TO STDOUT`` as CSV with times
        in epoch microseconds (pandas' C reader, no Python objects); SQLite hands over ISO strings that
        pandas parses in one vectorised call.
        """
        names = [c.name for c in query.selected_columns]
        times = [n for n in names if n in ("time", "ingested_at")]
        text = {n: str for n in ("site", "sensor", "quality_flag", "source", *T.OBSERVATION_FLAG_COLUMNS)
                if n in names}
        if self.is_postgres:
            cols = [
                sa.cast(sa.extract("epoch", c) * 1_000_000, sa.BigInteger).label(c.name) if c.name in times else c
                for c in query.selected_columns
            ]
            compiled = query.with_only_columns(*cols, maintain_column_froms=True).compile(
                dialect=self.engine.dialect, compile_kwargs={"render_postcompile": True}
            )
            buffer = io.BytesIO()
            with self.engine.connect() as conn:
                raw = conn.connection.driver_connection
                with (
                    raw.cursor() as cur,
                    cur.copy(f"COPY ({compiled}) TO STDOUT (FORMAT csv)", compiled.params) as copy,
                ):
                    for block in copy:
                        buffer.write(block)
            buffer.seek(0)
            frame = (
                pd.read_csv(
                    buffer, names=names, header=None, na_filter=False, dtype={**text, **{n: "int64" for n in times}}
                )
                if buffer.getbuffer().nbytes
                else pd.DataFrame({n: pd.Series(dtype="int64" if n in times else object) for n in names})
            )
            for n in times:
                frame[n] = pd.to_datetime(frame[n], unit="us", utc=True).dt.as_unit("ns")
        else:
            cols = [
                sa.type_coerce(c, sa.String).label(c.name) if c.name in times else c for c in query.selected_columns
            ]
            with self.engine.connect() as conn:
                rows = conn.execute(query.with_only_columns(*cols, maintain_column_froms=True)).all()
            frame = pd.DataFrame(rows, columns=names)
            for n in times:
                frame[n] = pd.to_datetime(frame[n], utc=True, format="ISO8601").dt.as_unit("ns")
        for n in text:
            frame[n] = frame[n].astype(object)
        for n in T.OBSERVATION_FLAG_COLUMNS:
            if n in frame:  # NULL reads as "" from COPY and as None from SQLite: one spelling
                frame[n] = frame[n].fillna("").astype(object)
        for n in ("depth_cm", "vwc"):
            if n in frame:
                frame[n] = frame[n].astype("float64")
        return frame

    def read_daily_observations(
        self,
        offsets: Mapping[str, float],
        sites: Sequence[str] | None = None,
        start: Timeish = None,
        end: Timeish = None,
        as_of: Timeish = None,
        exclude_flags: Sequence[str] = (),
    ) -> pd.DataFrame:
        """Daily mean vwc per series for readings in [start, end), aggregated in the database.

        A day is the site's local standard date: UTC + ``offsets[site]`` hours (0 when absent), labelled
        by its midnight as a UTC timestamp. Readings whose quality flag contains any of
        ``exclude_flags`` are left out. Columns: time, site, depth_cm, sensor, vwc, n (readings),
        first_ingested (earliest ``ingested_at`` among them).

        Why in SQL: the daily model needs one value per series and day; moving a year of hourly rows
        into pandas only to average them costs 24 times the rows, seconds per thousand series.
        """
        t = T.observations
        if self.is_postgres:
            epoch = sa.func.floor(sa.extract("epoch", t.c.time))  # whole seconds: 23:59:59.7 stays in its day
        else:
            epoch = sa.cast(sa.func.strftime("%s", t.c.time), sa.Integer)
        shifts = {str(site): round(h * 3600) for site, h in offsets.items() if h}
        shift = sa.case(shifts, value=t.c.site, else_=0) if shifts else sa.literal(0)
        local = sa.cast(epoch, sa.BigInteger) + shift
        day = local // 86400  # integer division on both backends (SQLAlchemy 2's "/" is true division)
        query = sa.select(
            day.label("day"),
            t.c.site,
            t.c.depth_cm,
            t.c.sensor,
            sa.func.avg(t.c.vwc).label("vwc"),
            sa.func.count().label("n"),
            sa.func.min(t.c.ingested_at).label("first_ingested"),
        )
        query = self._time_filters(query, t.c.time, start, end)
        if sites:
            query = query.where(t.c.site.in_(list(sites)))
        if as_of is not None:
            query = query.where(t.c.ingested_at <= _ts(as_of))
        for word in exclude_flags:
            query = query.where(sa.not_(t.c.quality_flag.contains(word, autoescape=True)))
        query = query.group_by(day, t.c.site, t.c.depth_cm, t.c.sensor).order_by(
            t.c.site, t.c.depth_cm, t.c.sensor, day
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        frame = pd.DataFrame(rows, columns=["day", "site", "depth_cm", "sensor", "vwc", "n", "first_ingested"])
        days = pd.to_numeric(frame["day"]).astype("int64") * 86400
        frame.insert(0, "time", pd.to_datetime(days, unit="s", utc=True).dt.as_unit("ns"))
        frame["site"] = frame["site"].astype("string")
        frame["sensor"] = frame["sensor"].astype("string")
        frame["depth_cm"] = frame["depth_cm"].astype("float64")
        frame["vwc"] = frame["vwc"].astype("float64")
        frame["n"] = frame["n"].astype("int64")
        frame["first_ingested"] = _utc_column(frame["first_ingested"])
        return frame.drop(columns=["day"])

    @staticmethod
    def _time_filters(query, column, start: Timeish, end: Timeish):  # type: ignore[no-untyped-def]
        if start is not None:
            query = query.where(column >= _ts(start))
        if end is not None:
            query = query.where(column < _ts(end))
        return query

    # --- forcing ----------------------------------------------------------------------------------
    def write_forcing(
        self, frame: pd.DataFrame, source: str, kind: str = "observed", issue_time: Timeish = None
    ) -> WriteResult:
        """Upsert wide canonical forcing. Weather forecasts need ``issue_time`` (argument or column)."""
        if kind not in T.FORCING_KINDS:
            raise InputError(
                f"unknown forcing kind {kind!r}",
                where="forcing",
                column="kind",
                fix=f"use one of {', '.join(T.FORCING_KINDS)}",
            )
        if kind == "forecast" and issue_time is None and "issue_time" not in frame.columns:
            raise InputError(
                "weather forecasts need an issue_time",
                where="forcing",
                column="issue_time",
                fix="pass issue_time= or an issue_time column",
            )
        long = forcing_long_for_write(frame, _ts(issue_time) if kind == "forecast" else None)
        if "issue_time" not in long.columns or kind != "forecast":
            long["issue_time"] = pd.Timestamp(T.NO_ISSUE_TIME)
        now = _now()
        long["kind"], long["source"], long["ingested_at"], long["updated_at"] = kind, source, now, now
        columns = [
            "time",
            "site",
            "variable",
            "kind",
            "source",
            "issue_time",
            "value",
            "ingested_at",
            "updated_at",
        ]
        with self._begin() as conn:
            self._require_sites(conn, long["site"], "forcing")
            return upsert_rows(
                conn,
                T.forcing,
                columns,
                rows_of(long, columns),
                ["site", "variable", "kind", "source", "issue_time", "time"],
                ["value"],
                ["updated_at"],
            )

    def read_forcing(
        self,
        sites: Sequence[str] | None = None,
        start: Timeish = None,
        end: Timeish = None,
        kinds: Sequence[str] | None = None,
        source: str | None = None,
        as_of: Timeish = None,
        variables: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Wide forcing (time, site, variables…); where kinds overlap: observed > archive > the
        latest forecast issued at or before ``as_of``. Adds ``forcing_kind`` per row (the worst used).

        ``as_of``: forecasts issued by then, other forcing ingested by then (replays without hindsight).
        """
        t = T.forcing
        query = sa.select(t.c.time, t.c.site, t.c.variable, t.c.kind, t.c.issue_time, t.c.value)
        query = self._time_filters(query, t.c.time, start, end)
        if sites:
            query = query.where(t.c.site.in_(list(sites)))
        if kinds:
            query = query.where(t.c.kind.in_(list(kinds)))
        if source:
            query = query.where(t.c.source == source)
        if variables:
            query = query.where(t.c.variable.in_(list(variables)))
        if as_of is not None:
            # A weather forecast was knowable at its issue time (even if archived into the store later,
            # e.g. from the historical-forecast API); other forcing only once it was ingested.
            cutoff = _ts(as_of)
            query = query.where(
                sa.or_(
                    sa.and_(t.c.kind == "forecast", t.c.issue_time <= cutoff),
                    sa.and_(t.c.kind != "forecast", t.c.ingested_at <= cutoff),
                )
            )
        with self.engine.connect() as conn:
            long = pd.read_sql(query, conn)
        if long.empty:
            return pd.DataFrame(
                {"time": pd.Series([], dtype="datetime64[ns, UTC]"), "site": pd.Series([], dtype=object)}
            )
        long["time"] = _utc_column(long["time"])
        long["issue_time"] = _utc_column(long["issue_time"])
        long["rank"] = long["kind"].map(FORCING_PRIORITY)
        long = long.sort_values(
            ["site", "time", "variable", "rank", "issue_time"], ascending=[True, True, True, True, False]
        )
        best = long.drop_duplicates(["site", "time", "variable"], keep="first")
        wide = best.pivot_table(index=["time", "site"], columns="variable", values="value", aggfunc="first")
        kind_rank = best.groupby(["time", "site"])["rank"].max()
        wide = wide.reset_index()
        wide.columns.name = None
        names = {v: k for k, v in FORCING_PRIORITY.items()}
        wide["forcing_kind"] = kind_rank.reindex(pd.MultiIndex.from_frame(wide[["time", "site"]])).map(names).to_numpy()
        return wide.sort_values(["site", "time"]).reset_index(drop=True)

    # --- forecasts --------------------------------------------------------------------------------
    def start_forecast_run(
        self,
        issue_time: Timeish,
        model_version: str,
        *,
        run_id: str | None = None,
        input_freshness: dict | None = None,
        validation: dict | None = None,
        stale_forcing: bool = False,
    ) -> str:
        """Register a run as 'running': its forecasts stay invisible to views until it completes."""
        run_id = run_id or uuid.uuid4().hex
        with self._begin() as conn:
            existing = conn.execute(
                sa.select(T.forecast_runs.c.run_id).where(T.forecast_runs.c.run_id == run_id)
            ).first()
            values = dict(
                issue_time=_ts(issue_time),
                model_version=model_version,
                status="running",
                started_at=_now(),
                finished_at=None,
                stale_forcing=stale_forcing,
                input_freshness=input_freshness or {},
                validation=validation or {},
            )
            if existing:
                conn.execute(T.forecast_runs.update().where(T.forecast_runs.c.run_id == run_id).values(**values))
            else:
                conn.execute(T.forecast_runs.insert().values(run_id=run_id, **values))
        return run_id

    def finish_forecast_run(self, run_id: str, status: str = "complete", message: str | None = None) -> None:
        if status not in T.RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        with self._begin() as conn:
            n = conn.execute(
                sa.select(sa.func.count()).select_from(T.forecasts).where(T.forecasts.c.run_id == run_id)
            ).scalar_one()
            conn.execute(
                T.forecast_runs.update()
                .where(T.forecast_runs.c.run_id == run_id)
                .values(status=status, finished_at=_now(), n_rows=n, message=message)
            )

    def write_forecasts(self, frame: pd.DataFrame, run_id: str, model_version: str | None = None) -> WriteResult:
        """Upsert a forecast frame (canonical mixture columns) belonging to ``run_id``."""
        out, k = forecasts_for_write(frame)
        if "model_version" not in out.columns:
            if model_version is None:
                raise InputError(
                    "forecasts need a model_version",
                    where="forecasts",
                    column="model_version",
                    fix="pass model_version= or add the column",
                )
            out["model_version"] = model_version
        out["run_id"] = run_id
        out["lead"] = out["lead"].astype(int)
        columns = [
            "valid_time",
            "site",
            "depth_cm",
            "issue_time",
            "model_version",
            "lead",
            "run_id",
            "weights",
            "means",
            "sigmas",
            "mean",
            "sd",
            "q05",
            "q25",
            "q50",
            "q75",
            "q95",
        ]
        key = ["site", "depth_cm", "valid_time", "issue_time", "model_version"]
        arrays = {
            name: [f"{prefix}_{i}" for i in range(k)]
            for name, prefix in (("weights", "weight"), ("means", "mean"), ("sigmas", "sigma"))
        }
        f = T.forecasts.c
        may_exist = sa.select(
            sa.exists().where(
                f.valid_time.between(_ts(out["valid_time"].min()), _ts(out["valid_time"].max())),
                f.issue_time.in_([_ts(t) for t in out["issue_time"].unique()]),
                f.model_version.in_(out["model_version"].unique().tolist()),
            )
        )
        with self._begin() as conn:
            self._require_sites(conn, out["site"], "forecasts")
            return upsert_frame(conn, T.forecasts, out, columns, key, columns[5:], arrays=arrays, fresh_probe=may_exist)

    def _read_forecast_query(self, query) -> pd.DataFrame:  # type: ignore[no-untyped-def]
        with self.engine.connect() as conn:
            frame = pd.read_sql(query, conn)
        for column in ("valid_time", "issue_time"):
            if column in frame:
                frame[column] = _utc_column(frame[column])
        for column in ("weights", "means", "sigmas"):
            frame[column] = [json.loads(v) if isinstance(v, str) else list(v) for v in frame[column]]
        return expand_mixture(frame)

    def read_forecasts(
        self,
        issue_time: Timeish = None,
        sites: Sequence[str] | None = None,
        start: Timeish = None,
        end: Timeish = None,
        complete_only: bool = True,
        issued_before: Timeish = None,
    ) -> pd.DataFrame:
        """Forecasts by issue time and/or valid-time window (only from complete runs by default)."""
        f, r = T.forecasts, T.forecast_runs
        query = sa.select(f).join(r, r.c.run_id == f.c.run_id)
        if complete_only:
            query = query.where(r.c.status == "complete")
        if issue_time is not None:
            query = query.where(f.c.issue_time == _ts(issue_time))
        if issued_before is not None:
            query = query.where(f.c.issue_time < _ts(issued_before))
        if sites:
            query = query.where(f.c.site.in_(list(sites)))
        query = self._time_filters(query, f.c.valid_time, start, end)
        query = query.order_by(f.c.site, f.c.depth_cm, f.c.issue_time, f.c.valid_time)
        return self._read_forecast_query(query)

    def latest_forecasts(self, sites: Sequence[str] | None = None) -> pd.DataFrame:
        """The ``latest_forecasts`` view: each series' newest complete forecast."""
        view = sa.table("latest_forecasts", *(sa.column(c.name) for c in T.forecasts.columns))
        query = sa.select(view)
        if sites:
            query = query.where(view.c.site.in_(list(sites)))
        return self._read_forecast_query(query.order_by(view.c.site, view.c.depth_cm, view.c.valid_time))

    def forecast_runs(self) -> pd.DataFrame:
        with self.engine.connect() as conn:
            frame = pd.read_sql(sa.select(T.forecast_runs).order_by(T.forecast_runs.c.issue_time), conn)
        for column in ("issue_time", "started_at", "finished_at"):
            frame[column] = _utc_column(frame[column])
        return frame

    def aggregate_observations(
        self,
        bucket: timedelta,
        sites: Sequence[str] | None = None,
        start: Timeish = None,
        end: Timeish = None,
    ) -> pd.DataFrame:
        """Mean/min/max/count of vwc per series and time bucket (``time_bucket`` on TimescaleDB)."""
        seconds = int(bucket.total_seconds())
        params: dict[str, Any] = {}
        where = ["1=1"]
        if sites:
            where.append("site IN ({})".format(", ".join(f":s{i}" for i in range(len(sites)))))
            params.update({f"s{i}": s for i, s in enumerate(sites)})
        if start is not None:
            where.append("time >= :start")
            params["start"] = _ts(start)
        if end is not None:
            where.append("time < :end")
            params["end"] = _ts(end)
        with self.engine.connect() as conn:
            from smmdn.store import timescale

            if self.is_postgres and timescale.extension_version(conn):
                bucket_sql = f"time_bucket(INTERVAL '{seconds} seconds', time)"
            elif self.is_postgres:
                bucket_sql = f"to_timestamp(floor(extract(epoch FROM time) / {seconds}) * {seconds})"
            else:
                if start is not None:
                    params["start"] = params["start"].replace(tzinfo=None)
                if end is not None:
                    params["end"] = params["end"].replace(tzinfo=None)
                bucket_sql = f"datetime((CAST(strftime('%s', time) AS INTEGER) / {seconds}) * {seconds}, 'unixepoch')"
            sql = (
                f"SELECT {bucket_sql} AS bucket, site, depth_cm, sensor, avg(vwc) AS vwc_mean, "
                "min(vwc) AS vwc_min, max(vwc) AS vwc_max, count(*) AS n "
                f"FROM observations WHERE {' AND '.join(where)} "
                "GROUP BY 1, site, depth_cm, sensor ORDER BY site, depth_cm, sensor, 1"
            )
            frame = pd.read_sql(sa.text(sql), conn, params=params)
        frame["bucket"] = _utc_column(frame["bucket"])
        return frame

    # --- models -----------------------------------------------------------------------------------
    def register_model_version(
        self,
        version: str,
        *,
        kind: str,
        artifact_uri: str,
        parent: str | None = None,
        train_start: Timeish = None,
        train_end: Timeish = None,
        metrics: dict | None = None,
        status: str = "challenger",
        note: str | None = None,
    ) -> None:
        if status not in T.MODEL_STATUSES:
            raise ValueError(f"unknown model status {status!r}")
        values = dict(
            parent=parent,
            kind=kind,
            artifact_uri=artifact_uri,
            train_start=_ts(train_start),
            train_end=_ts(train_end),
            metrics=metrics or {},
            status=status,
            note=note,
        )
        with self._begin() as conn:
            if conn.execute(sa.select(T.model_versions.c.version).where(T.model_versions.c.version == version)).first():
                conn.execute(T.model_versions.update().where(T.model_versions.c.version == version).values(**values))
            else:
                conn.execute(T.model_versions.insert().values(version=version, created_at=_now(), **values))

    def promote(self, version: str, note: str | None = None) -> str | None:
        """Make ``version`` the champion (the previous one retires). Returns the previous champion."""
        mv = T.model_versions
        with self._begin() as conn:
            if not conn.execute(sa.select(mv.c.version).where(mv.c.version == version)).first():
                raise InputError(
                    f"unknown model version {version!r}",
                    where="model_versions",
                    column="version",
                    fix="list versions with `smmdn models list`",
                )
            previous = conn.execute(sa.select(mv.c.version).where(mv.c.status == "champion")).scalar()
            conn.execute(mv.update().where(mv.c.status == "champion").values(status="retired"))
            conn.execute(
                mv.update()
                .where(mv.c.version == version)
                .values(status="champion", promoted_at=_now(), note=note if note is not None else mv.c.note)
            )
        return previous

    def roll_back(self, target: str, note: str) -> str | None:
        """Make ``target`` champion again and mark the champion it replaces rejected (an operator judged it
        bad), in one transaction: a second rollback then walks further back instead of flipping back."""
        mv = T.model_versions
        with self._begin() as conn:
            if not conn.execute(sa.select(mv.c.version).where(mv.c.version == target)).first():
                raise InputError(f"unknown model version {target!r}", where="model_versions", column="version",
                                 fix="list versions with `smmdn models list`")
            previous = conn.execute(sa.select(mv.c.version).where(mv.c.status == "champion")).scalar()
            conn.execute(mv.update().where(mv.c.status == "champion").values(status="rejected", note=note))
            conn.execute(mv.update().where(mv.c.version == target).values(
                status="champion", promoted_at=_now(), note=f"rolled back to (from {previous})"))
        return previous

    def set_model_status(self, version: str, status: str, note: str | None = None) -> None:
        if status not in T.MODEL_STATUSES:
            raise ValueError(f"unknown model status {status!r}")
        mv = T.model_versions
        with self._begin() as conn:
            conn.execute(
                mv.update()
                .where(mv.c.version == version)
                .values(status=status, note=note if note is not None else mv.c.note)
            )

    def champion(self) -> dict[str, Any] | None:
        mv = T.model_versions
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(mv).where(mv.c.status == "champion")).mappings().first()
        return dict(row) if row else None

    def model_versions(self) -> pd.DataFrame:
        with self.engine.connect() as conn:
            frame = pd.read_sql(sa.select(T.model_versions).order_by(T.model_versions.c.created_at), conn)
        return self._json_columns(frame, ("metrics",))

    # --- ingest bookkeeping -----------------------------------------------------------------------
    def get_watermark(self, source: str, key: str) -> pd.Timestamp | None:
        w = T.watermarks
        with self._begin() as conn:
            value = conn.execute(sa.select(w.c.value).where(w.c.source == source, w.c.key == key)).scalar()
        return None if value is None else pd.Timestamp(_ts(value))

    def set_watermark(self, source: str, key: str, value: Timeish) -> None:
        rows = [(source, key, _ts(value), _now())]
        with self._begin() as conn:
            upsert_rows(
                conn,
                T.watermarks,
                ["source", "key", "value", "updated_at"],
                rows,
                ["source", "key"],
                ["value"],
                ["updated_at"],
            )

    def file_seen(self, sha256: str) -> bool:
        with self._begin() as conn:
            return (
                conn.execute(sa.select(T.processed_files.c.sha256).where(T.processed_files.c.sha256 == sha256)).first()
                is not None
            )

    def record_file(self, source: str, path: str, sha256: str, status: str, reason: str | None = None) -> None:
        rows = [(sha256, source, str(path), status, reason, _now())]
        with self._begin() as conn:
            upsert_rows(
                conn,
                T.processed_files,
                ["sha256", "source", "path", "status", "reason", "processed_at"],
                rows,
                ["sha256"],
                ["source", "path", "status", "reason"],
                ["processed_at"],
            )

    def write_validation_run(self, source: str, success: bool, summary: dict, data_docs: str | None = None) -> int:
        with self._begin() as conn:
            result = conn.execute(
                T.validation_runs.insert().values(
                    source=source,
                    success=bool(success),
                    summary=summary,
                    data_docs=data_docs,
                    created_at=_now(),
                )
            )
            return int(result.inserted_primary_key[0])

    def validation_runs(self, source: str | None = None) -> pd.DataFrame:
        query = sa.select(T.validation_runs).order_by(T.validation_runs.c.id)
        if source:
            query = query.where(T.validation_runs.c.source == source)
        with self.engine.connect() as conn:
            frame = pd.read_sql(query, conn)
        return self._json_columns(frame, ("summary",))

    # --- quarantine -------------------------------------------------------------------------------
    def write_quarantine(self, frame: pd.DataFrame, table: str, source: str) -> int:
        """Keep rejected rows exactly as received, with their ``reason`` (nothing is dropped)."""
        if frame.empty:
            return 0
        if "reason" not in frame.columns:
            raise InputError(
                "quarantined rows need a reason",
                where="quarantine",
                column="reason",
                fix="add a reason per row",
            )
        records = []
        now = _now()
        for _, row in frame.iterrows():
            payload = {
                k: (
                    None
                    if pd.isna(v)
                    else (v.isoformat() if isinstance(v, pd.Timestamp) else (v.item() if hasattr(v, "item") else v))
                )
                for k, v in row.items()
                if k != "reason" and not isinstance(v, list | dict)
            }
            site = row.get("site")
            time = row.get("time")
            try:
                time = _ts(time) if time is not None and not pd.isna(time) else None
            except (ValueError, TypeError):
                time = None
            records.append(
                dict(
                    table_name=table,
                    source=source,
                    site=None if pd.isna(site) else str(site),
                    time=time,
                    reason=str(row["reason"]),
                    row=payload,
                    quarantined_at=now,
                )
            )
        with self._begin() as conn:
            conn.execute(T.quarantine.insert(), records)
        return len(records)

    def list_quarantine(self, table: str | None = None, released: bool = False) -> pd.DataFrame:
        q = T.quarantine
        query = sa.select(q).order_by(q.c.id)
        if table:
            query = query.where(q.c.table_name == table)
        query = query.where(q.c.released_at.is_not(None) if released else q.c.released_at.is_(None))
        with self.engine.connect() as conn:
            frame = pd.read_sql(query, conn)
        return self._json_columns(frame, ("row",))

    def release_quarantine(self, ids: Sequence[int], released_by: str = "operator") -> pd.DataFrame:
        """Mark rows released and return them (the caller re-validates and writes them)."""
        q = T.quarantine
        with self._begin() as conn:
            frame = pd.read_sql(sa.select(q).where(q.c.id.in_(list(ids)), q.c.released_at.is_(None)), conn)
            conn.execute(q.update().where(q.c.id.in_(list(ids))).values(released_at=_now(), released_by=released_by))
        return self._json_columns(frame, ("row",))

    # --- generic ----------------------------------------------------------------------------------
    def count(self, table: str) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.text(f"SELECT count(*) FROM {T.metadata.tables[table].name}")).scalar_one()
