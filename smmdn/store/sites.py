"""Site facts other roles read through the store: local-standard-time offsets, and how fresh each site is.

Daily labels of observations and forcing use the site's local standard time (USCRN's convention), so
detection, verification and the cycle's inputs all need the same offsets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import sqlalchemy as sa

from smmdn.store import tables as T
from smmdn.store.store import Timeish, _ts

if TYPE_CHECKING:
    from smmdn.store.store import Store


def site_offsets(store: Store) -> dict[str, float]:
    """Local-standard-time offset in hours per site (0 where the registry gives none)."""
    sites = store.read_sites()
    out: dict[str, float] = {}
    for site, attrs in zip(sites["site"], sites["attributes"], strict=True):
        value = (attrs or {}).get("lst_utc_offset_hours")
        out[str(site)] = float(value) if value is not None else 0.0
    return out


def site_freshness(store: Store, since: Timeish, now: Timeish) -> pd.DataFrame:
    """Per site, from the database's aggregates (cheap at tens of thousands of series): series reporting and
    the last reading in [since, now], and the newest complete forecast issued for valid times after ``since``.

    Columns: site, series, last_reading, latest_issue (NaT where none).
    """
    o, f, r = T.observations, T.forecasts, T.forecast_runs
    with store._begin() as conn:
        seen = pd.DataFrame(conn.execute(
            sa.select(o.c.site, sa.func.count(sa.distinct(sa.cast(o.c.depth_cm, sa.Text) + "|" + o.c.sensor)),
                      sa.func.max(o.c.time))
            .where(o.c.time >= _ts(since), o.c.time <= _ts(now)).group_by(o.c.site)).all(),
            columns=["site", "series", "last_reading"])
        issued = pd.DataFrame(conn.execute(
            sa.select(f.c.site, sa.func.max(f.c.issue_time)).join(r, r.c.run_id == f.c.run_id)
            .where(r.c.status == "complete", f.c.valid_time >= _ts(since)).group_by(f.c.site)).all(),
            columns=["site", "latest_issue"])
    out = seen.merge(issued, on="site", how="outer")
    for column in ("last_reading", "latest_issue"):
        out[column] = pd.to_datetime(out[column], utc=True)
    out["series"] = out["series"].fillna(0).astype(int)
    return out.sort_values("site").reset_index(drop=True)
