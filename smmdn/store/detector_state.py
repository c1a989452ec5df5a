"""Detector state: the cached daily values of each series and, per site, what they were built from.

Why a part of its own: detection (and verification) read these instead of re-reading the trailing window of
raw readings every day; the raw readings stay the truth (``smmdn.alerts.daycache`` rebuilds from them).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import sqlalchemy as sa

from smmdn.store import tables as T
from smmdn.store.bulk import upsert_rows
from smmdn.store.common import StoreHandle, Timeish, _now, _ts, _utc_column, read_frame, time_filters
from smmdn.store.frames import rows_of

DAY_COLUMNS = ["time", "site", "depth_cm", "sensor", "vwc", "n", "n_spike", "n_flatline", "n_gap", "last_reading",
               "level", "span", "rough"]
SITE_COLUMNS = ["site", "built_through", "first_day", "through_day", "fingerprint", "row_count", "digest"]
COUNTS = ("n", "n_spike", "n_flatline", "n_gap")


def read_detector_days(store: StoreHandle, sites: Sequence[str] | None = None) -> pd.DataFrame:
    """Every cached daily row (of ``sites``; None: all), with the dtypes ``alerts.detect.daily_readings`` gives."""
    t = T.detector_days
    query = sa.select(*(t.c[c] for c in DAY_COLUMNS))
    if sites is not None:
        query = query.where(t.c.site.in_(list(sites)))
    frame = read_frame(store, query, ("time", "last_reading"))
    if frame.empty:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in DAY_COLUMNS})
    frame["site"], frame["sensor"] = frame["site"].astype(str), frame["sensor"].astype(str)
    for c in ("depth_cm", "vwc", "level", "span", "rough"):
        frame[c] = frame[c].astype(float)
    for c in COUNTS:
        frame[c] = frame[c].astype("int64")
    return frame[DAY_COLUMNS]


def read_detector_sites(store: StoreHandle, sites: Sequence[str] | None = None) -> pd.DataFrame:
    """Per site: ``built_through``, ``first_day``, ``through_day``, ``fingerprint``, ``row_count``, ``digest``."""
    t = T.detector_sites
    query = sa.select(*(t.c[c] for c in SITE_COLUMNS))
    if sites is not None:
        query = query.where(t.c.site.in_(list(sites)))
    return read_frame(store, query, ("built_through", "first_day", "through_day"))


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


def changed_readings(store: StoreHandle, since: Timeish, start: Timeish = None, end: Timeish = None,
                     sites: Sequence[str] | None = None) -> pd.DataFrame:
    """Per series with readings in [start, end) written or changed after ``since``: the first and last such
    reading time (``first``, ``last``) and the latest ``updated_at`` among them — what cached days must be
    recomputed for (a late reading, a corrected flag). One row per series, aggregated in the database."""
    t = T.observations
    query = sa.select(t.c.site, t.c.depth_cm, t.c.sensor, sa.func.min(t.c.time).label("first"),
                      sa.func.max(t.c.time).label("last"), sa.func.max(t.c.updated_at).label("updated_at")
                      ).where(t.c.updated_at > _ts(since))
    query = time_filters(query, t.c.time, start, end)
    if sites is not None:
        query = query.where(t.c.site.in_(list(sites)))
    query = query.group_by(t.c.site, t.c.depth_cm, t.c.sensor)
    names = ["site", "depth_cm", "sensor", "first", "last", "updated_at"]
    with store._begin() as conn:
        frame = pd.DataFrame(conn.execute(query).all(), columns=names)
    for c in ("first", "last", "updated_at"):
        frame[c] = _utc_column(frame[c]) if len(frame) else pd.Series([], dtype="datetime64[ns, UTC]")
    frame["site"], frame["sensor"] = frame["site"].astype(str), frame["sensor"].astype(str)
    frame["depth_cm"] = frame["depth_cm"].astype(float)
    return frame


def clock(store: StoreHandle) -> pd.Timestamp:
    """The ingest clock now (what ``updated_at`` of a reading written now would be)."""
    return pd.Timestamp(_now())
