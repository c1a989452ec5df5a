"""Detector state: the cached daily values of each series and, per site, what they were built from.

Why a part of its own: detection (and verification) read these instead of re-reading the trailing window of
raw readings every day; the raw readings stay the truth (``smmdn.alerts.daycache`` rebuilds from them).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import pandas as pd
import sqlalchemy as sa

from smmdn.store import tables as T
from smmdn.store.bulk import upsert_rows
from smmdn.store.common import StoreHandle, Timeish, _now, _ts, _utc_column, read_frame, time_filters
from smmdn.store.frames import rows_of

DAY_COLUMNS = ["time", "site", "depth_cm", "sensor", "vwc", "n", "n_spike", "n_flatline", "n_gap", "last_reading",
               "level", "span", "rough"]
SITE_COLUMNS = ["site", "built_through", "first_day", "through_day", "fingerprint", "row_count", "digest",
                "band_since", "band"]
COUNTS = ("n", "n_spike", "n_flatline", "n_gap")


def read_detector_days(store: StoreHandle, sites: Sequence[str] | None = None) -> pd.DataFrame:
    """Every cached daily row (of ``sites``; None: all), with the dtypes ``alerts.detect.daily_readings`` gives."""
    t = T.detector_days
    query = sa.select(*(t.c[c] for c in DAY_COLUMNS))
    if sites is not None:
        query = query.where(t.c.site.in_(list(sites)))
    frame = _copy_days(store, query) if store.is_postgres else read_frame(store, query, ("time", "last_reading"))
    if frame.empty:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in DAY_COLUMNS})
    frame["site"], frame["sensor"] = frame["site"].astype(str), frame["sensor"].astype(str)
    for c in ("depth_cm", "vwc", "level", "span", "rough"):
        frame[c] = frame[c].astype(float)
    for c in COUNTS:
        frame[c] = frame[c].astype("int64")
    return frame[DAY_COLUMNS]


def _copy_days(store: StoreHandle, query: sa.Select) -> pd.DataFrame:
    """``detector_days`` rows streamed with ``COPY`` (``_copy_frame``)."""
    return _copy_frame(store, query, DAY_COLUMNS, ("time", "last_reading"), COUNTS,
                       ("depth_cm", "vwc", "level", "span", "rough"), ("vwc", "rough"))


def _copy_frame(store: StoreHandle, query: sa.Select, names: Sequence[str], times: Sequence[str],
                ints: Sequence[str], floats: Sequence[str], nullable: Sequence[str],
                bools: Sequence[str] = ()) -> pd.DataFrame:
    """Rows streamed with ``COPY … TO STDOUT`` as CSV, times as epoch microseconds. Why not ``pd.read_sql``:
    a window of daily rows is 30 per series, and it builds a Python object per value (about a second per
    30,000 rows). Floats travel in PostgreSQL's shortest exact text form and are parsed round-trip (pandas'
    default parser is off by an ulp now and then): the values read back are the stored ones, bit for bit.
    Text columns other than ``nullable`` are never NULL here."""
    cols = [sa.cast(sa.extract("epoch", c) * 1_000_000, sa.BigInteger).label(c.name) if c.name in times else c
            for c in query.selected_columns]
    compiled = query.with_only_columns(*cols, maintain_column_froms=True).compile(
        dialect=store.engine.dialect, compile_kwargs={"render_postcompile": True})
    buffer = io.BytesIO()
    with store._begin() as conn:
        raw = conn.connection.driver_connection
        with raw.cursor() as cur, cur.copy(f"COPY ({compiled}) TO STDOUT (FORMAT csv)", compiled.params) as copy:
            for block in copy:
                buffer.write(block)
    if not buffer.getbuffer().nbytes:
        return pd.DataFrame()
    buffer.seek(0)
    dtype = {c: str for c in names if c not in (*times, *ints, *floats, *bools)}
    frame = pd.read_csv(buffer, names=list(names), header=None, keep_default_na=False, float_precision="round_trip",
                        na_values={c: [""] for c in nullable},
                        dtype={**dtype, **{c: "int64" for c in (*times, *ints)}, **{c: float for c in floats}})
    for c in times:
        frame[c] = pd.to_datetime(frame[c], unit="us", utc=True).dt.as_unit("ns")
    for c in bools:
        frame[c] = frame[c].astype(str).eq("t")
    for c in dtype:
        frame[c] = frame[c].astype(object).where(frame[c].notna(), None)
    return frame


def read_detector_sites(store: StoreHandle, sites: Sequence[str] | None = None) -> pd.DataFrame:
    """Per site: ``built_through``, ``first_day``, ``through_day``, ``fingerprint``, ``row_count``, ``digest``."""
    t = T.detector_sites
    query = sa.select(*(t.c[c] for c in SITE_COLUMNS))
    if sites is not None:
        query = query.where(t.c.site.in_(list(sites)))
    return read_frame(store, query, ("built_through", "first_day", "through_day", "band_since"))


def write_detector_state(store: StoreHandle, rows: pd.DataFrame, sites: pd.DataFrame,
                         prune: dict[str, pd.Timestamp] | None = None,
                         replace: Sequence[str] = ()) -> int:
    """In one transaction: drop the cached rows of the ``replace`` sites (rebuilt from raw) and the rows older
    than each site's ``prune`` day, upsert ``rows`` and the per-site records. Returns the rows written."""
    d = T.detector_days
    with store._begin() as conn:
        if replace:
            conn.execute(d.delete().where(d.c.site.in_(list(replace))))
        for site, before in (prune or {}).items():
            conn.execute(d.delete().where(d.c.site == site).where(d.c.time < _ts(before)))
        written = 0
        if not rows.empty:
            out = rows[DAY_COLUMNS].copy()
            for c in COUNTS:
                out[c] = out[c].astype(int)
            upsert_rows(conn, d, DAY_COLUMNS, rows_of(out, DAY_COLUMNS), ["site", "depth_cm", "sensor", "time"],
                        [c for c in DAY_COLUMNS if c not in ("site", "depth_cm", "sensor", "time")])
            written = len(out)
        if not sites.empty:
            s = sites[SITE_COLUMNS].copy()
            s["updated_at"] = _now()
            columns = [*SITE_COLUMNS, "updated_at"]
            upsert_rows(conn, T.detector_sites, columns, rows_of(s, columns), ["site"],
                        SITE_COLUMNS[1:], ["updated_at"])
    return written


def writes_since(store: StoreHandle, since: Timeish, start: Timeish = None,
                 sites: Sequence[str] | None = None) -> pd.DataFrame:
    """Per series and write stamp (``updated_at``: one per observation write) after ``since``, of readings at
    or after ``start``: the first and last reading time and the row count. Aggregated in the database; a
    handful of stamps per series (the writes since the last run), which tell new writes from ones already
    folded in (``smmdn.alerts.daycache``)."""
    t = T.observations
    query = sa.select(t.c.site, t.c.depth_cm, t.c.sensor, t.c.updated_at, sa.func.min(t.c.time).label("first"),
                      sa.func.max(t.c.time).label("last"), sa.func.count().label("rows")
                      ).where(t.c.updated_at > _ts(since))
    query = time_filters(query, t.c.time, start, None)
    if sites is not None:
        query = query.where(t.c.site.in_(list(sites)))
    query = query.group_by(t.c.site, t.c.depth_cm, t.c.sensor, t.c.updated_at)
    names = ["site", "depth_cm", "sensor", "updated_at", "first", "last", "rows"]
    with store._begin() as conn:
        frame = pd.DataFrame(conn.execute(query).all(), columns=names)
    for c in ("first", "last", "updated_at"):
        frame[c] = _utc_column(frame[c]) if len(frame) else pd.Series([], dtype="datetime64[ns, UTC]")
    frame["site"], frame["sensor"] = frame["site"].astype(str), frame["sensor"].astype(str)
    frame["depth_cm"] = frame["depth_cm"].astype(float)
    frame["rows"] = frame["rows"].astype("int64")
    return frame


def clock(store: StoreHandle) -> pd.Timestamp:
    """The ingest clock now (what ``updated_at`` of a reading written now would be)."""
    return pd.Timestamp(_now())


# --- the detector's daily scores (revision 0011) --------------------------------------------------------
SCORE_COLUMNS = ["time", "site", "depth_cm", "sensor", "vwc", "run_id", "rules", "has_forecast", "q50", "pit",
                 "outside", "severe", "scored_at", "digest"]
SCORE_BOOLS = ("has_forecast", "outside", "severe")


def read_detector_scores(store: StoreHandle, sites: Sequence[str], start: Timeish) -> pd.DataFrame:
    """The cached daily scores of ``sites`` from ``start`` on."""
    t = T.detector_scores
    query = sa.select(*(t.c[c] for c in SCORE_COLUMNS)).where(t.c.time >= _ts(start))
    query = query.where(t.c.site.in_(list(sites)))
    if store.is_postgres:
        frame = _copy_frame(store, query, SCORE_COLUMNS, ("time", "scored_at"), (), ("depth_cm", "vwc", "q50", "pit"),
                            ("vwc", "q50", "pit", "run_id"), SCORE_BOOLS)
    else:
        frame = read_frame(store, query, ("time", "scored_at"))
    if frame.empty:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in SCORE_COLUMNS})
    frame["site"], frame["sensor"] = frame["site"].astype(str), frame["sensor"].astype(str)
    for c in ("depth_cm", "vwc", "q50", "pit"):
        frame[c] = frame[c].astype(float)
    for c in SCORE_BOOLS:
        frame[c] = frame[c].astype(bool)
    return frame[SCORE_COLUMNS]


def write_detector_scores(store: StoreHandle, rows: pd.DataFrame, sites: Sequence[str], start: Timeish) -> int:
    """In one transaction: drop the cached scores of ``sites`` before ``start`` (out of the window), upsert
    ``rows``. Returns the rows written."""
    t = T.detector_scores
    with store._begin() as conn:
        if sites:
            conn.execute(t.delete().where(t.c.site.in_(list(sites))).where(t.c.time < _ts(start)))
        if rows.empty:
            return 0
        out = rows[SCORE_COLUMNS].copy()
        for c in SCORE_BOOLS:
            out[c] = out[c].astype(bool)
        key = ["site", "depth_cm", "sensor", "time"]
        upsert_rows(conn, t, SCORE_COLUMNS, rows_of(out, SCORE_COLUMNS), key,
                    [c for c in SCORE_COLUMNS if c not in (*key, "scored_at", "digest")], ["scored_at", "digest"])
    return len(out)


def forecast_runs_since(store: StoreHandle, since: Timeish, run_ids: Sequence[str] = ()) -> pd.DataFrame:
    """(run_id, issue_time, finished_at, status) of the complete runs finished after ``since`` and of
    ``run_ids`` (whatever their status now)."""
    r = T.forecast_runs
    cond = (r.c.status == "complete") & (r.c.finished_at > _ts(since))
    if run_ids:
        cond = cond | r.c.run_id.in_(list(run_ids))
    query = sa.select(r.c.run_id, r.c.issue_time, r.c.finished_at, r.c.status).where(cond)
    with store._begin() as conn:
        frame = pd.DataFrame(conn.execute(query).all(), columns=["run_id", "issue_time", "finished_at", "status"])
    for c in ("issue_time", "finished_at"):
        frame[c] = _utc_column(frame[c]) if len(frame) else pd.Series([], dtype="datetime64[ns, UTC]")
    frame["run_id"] = frame["run_id"].astype(str)
    return frame


def forecasts_of_runs(store: StoreHandle, run_ids: Sequence[str], days: Sequence[pd.Timestamp],
                      sites: Sequence[str]) -> pd.DataFrame:
    """(site, depth_cm, valid_time, run_id) of the forecasts of ``run_ids`` valid at one of ``days`` (day
    starts) and issued before it."""
    f = T.forecasts
    query = sa.select(f.c.site, f.c.depth_cm, f.c.valid_time, f.c.run_id).where(
        f.c.run_id.in_(list(run_ids)), f.c.valid_time.in_([_ts(d) for d in days]), f.c.issue_time < f.c.valid_time,
        f.c.site.in_(list(sites))).distinct()
    with store._begin() as conn:
        frame = pd.DataFrame(conn.execute(query).all(), columns=["site", "depth_cm", "valid_time", "run_id"])
    frame["valid_time"] = _utc_column(frame["valid_time"]) if len(frame) else pd.Series(
        [], dtype="datetime64[ns, UTC]")
    frame["site"], frame["run_id"] = frame["site"].astype(str), frame["run_id"].astype(str)
    frame["depth_cm"] = frame["depth_cm"].astype(float)
    return frame
