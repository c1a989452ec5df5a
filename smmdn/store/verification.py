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
from smmdn.store.common import Timeish, _ts, aware, read_frame, time_filters
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
