"""Verification: the forecast each scored day was judged by, and the score rows (CRPS, PIT, coverage).

Why a part of its own: verification reads forecasts and observations and writes its own table; the alert
lifecycle never touches it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd
import sqlalchemy as sa

from smmdn.store import tables as T
from smmdn.store.bulk import WriteResult, upsert_rows
from smmdn.store.common import Timeish, _ts, _utc_column, aware, read_frame, time_filters
from smmdn.store.frames import rows_of

if TYPE_CHECKING:
    from smmdn.store.store import Store


# --- verification ---------------------------------------------------------------------------------------
VERIFICATION_COLUMNS = ["valid_time", "site", "depth_cm", "sensor", "issue_time", "model_version", "lead",
                        "observed", "mean", "crps", "pit", "in_50", "in_90", "width_50", "width_90", "scored_at"]
VERIFICATION_KEY = ["site", "depth_cm", "sensor", "valid_time", "issue_time", "model_version"]


def write_verification(store: Store, frame: pd.DataFrame) -> WriteResult:
    """Upsert score rows (idempotent on the forecast+sensor key; a late observation rescores the row)."""
    if frame.empty:
        return WriteResult()
    out = frame[VERIFICATION_COLUMNS].copy()
    out["lead"] = out["lead"].astype(int)
    out["in_50"] = out["in_50"].astype(bool)
    out["in_90"] = out["in_90"].astype(bool)
    compare = ["lead", "observed", "mean", "crps", "pit", "in_50", "in_90", "width_50", "width_90"]
    with store._begin() as conn:
        return upsert_rows(conn, T.verification, VERIFICATION_COLUMNS, rows_of(out, VERIFICATION_COLUMNS),
                           VERIFICATION_KEY, compare, ["scored_at"])


def first_forecast_valid_time(store: Store) -> pd.Timestamp | None:
    """The earliest valid time of any stored forecast (where scoring starts without a watermark)."""
    with store._begin() as conn:
        return aware(conn.execute(sa.select(sa.func.min(T.forecasts.c.valid_time))).scalar())


def latest_scored_valid_time(store: Store, now: Timeish) -> pd.Timestamp | None:
    """The latest valid time scored at or before ``now``."""
    v = T.verification
    with store._begin() as conn:
        return aware(conn.execute(sa.select(sa.func.max(v.c.valid_time)).where(v.c.valid_time <= _ts(now))).scalar())


def read_verification(store: Store, *, start: Timeish = None, end: Timeish = None, sites: Sequence[str] | None = None,
                      issued_from: Timeish = None) -> pd.DataFrame:
    v = T.verification
    query = time_filters(sa.select(v), v.c.valid_time, start, end)
    if sites:
        query = query.where(v.c.site.in_(list(sites)))
    if issued_from is not None:
        query = query.where(v.c.issue_time >= _ts(issued_from))
    query = query.order_by(v.c.site, v.c.depth_cm, v.c.sensor, v.c.valid_time, v.c.issue_time)
    frame = read_frame(store, query, ("valid_time", "issue_time", "scored_at"))
    for column in ("in_50", "in_90"):
        frame[column] = frame[column].astype(bool)
    return frame


# --- the drift window, aggregated in the database -------------------------------------------------------
PIT_BINS = 10
AGGREGATE_COLUMNS = ["valid_time", "lead", "model_version", "bin", "n", "n_pit", "in_50", "in_90", "crps", "width_90",
                     "pit"]


def _pit_bin(pit: sa.ColumnElement, edges: Sequence[float]) -> sa.ColumnElement:
    """``np.histogram(pit, bins=len(edges) - 1, range=(0, 1))``'s bin of each PIT, in SQL: the last edge at or
    below it (the last bin also holds 1.0); NULL outside [0, 1] (and for NaN, which PostgreSQL sorts above
    every number)."""
    inner = sa.case(*((pit >= edges[i], i) for i in range(len(edges) - 2, 0, -1)), else_=0)
    return sa.case(((pit >= edges[0]) & (pit <= edges[-1]), inner), else_=None)


def window_aggregates(store: Store, start: Timeish, end: Timeish, edges: Sequence[float]) -> pd.DataFrame:
    """Score rows with ``valid_time`` in [start, end) summed per valid day, lead, model version and PIT bin
    (``bin``: NaN for a PIT outside [0, 1] or not finite): rows, finite PITs, rows inside the 50 % and 90 %
    intervals, and the sums of CRPS, 90 % width and finite PIT. Why: the drift verdict and the skill tables
    need only these, and a window of score rows is 7 × series × days rows to move (``AGGREGATE_COLUMNS``)."""
    v = T.verification
    finite = (v.c.pit > -1e308) & (v.c.pit < 1e308)  # not NULL, NaN or infinite, on both backends
    pit_bin = _pit_bin(v.c.pit, edges).label("bin")
    query = sa.select(
        v.c.valid_time, v.c.lead, v.c.model_version, pit_bin, sa.func.count().label("n"),
        sa.func.sum(sa.case((finite, 1), else_=0)).label("n_pit"),
        sa.func.sum(sa.case((v.c.in_50, 1), else_=0)).label("in_50"),
        sa.func.sum(sa.case((v.c.in_90, 1), else_=0)).label("in_90"),
        sa.func.sum(v.c.crps).label("crps"), sa.func.sum(v.c.width_90).label("width_90"),
        sa.func.sum(sa.case((finite, v.c.pit), else_=None)).label("pit"))
    query = time_filters(query, v.c.valid_time, start, end).group_by(
        v.c.valid_time, v.c.lead, v.c.model_version, pit_bin)
    with store._begin() as conn:
        frame = pd.DataFrame(conn.execute(query).all(), columns=AGGREGATE_COLUMNS)
    frame["valid_time"] = _utc_column(frame["valid_time"]) if len(frame) else pd.Series(
        [], dtype="datetime64[ns, UTC]")
    for c in ("lead", "n", "n_pit", "in_50", "in_90"):
        frame[c] = frame[c].astype("int64")
    for c in ("bin", "crps", "width_90", "pit"):
        frame[c] = frame[c].astype(float)
    return frame


def independent_scores(store: Store, start: Timeish, end: Timeish, versions: Sequence[str] | None) -> int:
    """Distinct (site, depth, valid day) among the score rows in [start, end) of ``versions`` (None: all)."""
    v = T.verification
    inner = time_filters(sa.select(v.c.site, v.c.depth_cm, v.c.valid_time).distinct(), v.c.valid_time, start, end)
    if versions is not None:
        if not versions:
            return 0
        inner = inner.where(v.c.model_version.in_(sorted(versions)))
    with store._begin() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(inner.subquery())).scalar_one())
