"""Everything one site's picture needs, read once from the store: daily observations of every replicate, the
forecast that was issued before each past day, the latest run ahead, daily rain, and the open alerts.

Past days show the *lead-1* fan (the forecast issued before that day: what detection judged the day by);
the future shows the newest complete run. Bands are the central 50 % (q25–q75) and 90 % (q05–q95)
intervals of the mixture, as stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from smmdn.alerts.detect import latest_before
from smmdn.errors import InputError
from smmdn.store import alerts as db
from smmdn.store.sites import site_offsets
from smmdn.timeutil import DAY, utc

if TYPE_CHECKING:
    from smmdn.store.store import Store

RAIN = ("precipitation_sum", "precipitation")
QUANTILES = ["q05", "q25", "q50", "q75", "q95"]


@dataclass
class SiteView:
    """One site over ``[start, end)`` plus the latest forecast beyond it."""

    site: str
    info: dict[str, Any]
    start: pd.Timestamp
    end: pd.Timestamp
    depths: list[float]
    observations: pd.DataFrame  # time, depth_cm, sensor, vwc (daily means of every reading)
    past: pd.DataFrame  # time, depth_cm, q05..q95 (the forecast issued before each day)
    future: pd.DataFrame  # time, depth_cm, lead, q05..q95, issue_time (the newest complete run)
    rain: pd.DataFrame  # time, rain_mm
    alerts: pd.DataFrame  # open alerts: id, kind, depth_cm, sensor, window_start

    @property
    def issue_time(self) -> pd.Timestamp | None:
        return None if self.future.empty else pd.Timestamp(self.future["issue_time"].max())


def known_site(store: Store, site: str) -> dict[str, Any]:
    """The site's registry row; an unknown site is bad input (exit 2), never an empty picture."""
    sites = store.read_sites()
    rows = sites.loc[sites["site"].astype(str) == site] if not sites.empty else sites
    if rows.empty:
        known = ", ".join(sorted(sites["site"].astype(str))[:10]) if not sites.empty else "none loaded"
        raise InputError(f"unknown site {site!r}", where="--site", column="site",
                         fix=f"use a site id from `smmdn sites list` (known: {known})")
    return rows.iloc[0].to_dict()


def site_view(store: Store, site: str, *, days: int = 30, depth: float | None = None,
              now: Any = None) -> SiteView:
    """Read one site's picture: the last ``days`` days up to ``now`` (default: the newest data) and ahead."""
    info = known_site(store, site)
    latest = store.latest_forecasts(sites=[site])
    if now is None:
        anchor = latest["issue_time"].max() + DAY if not latest.empty else utc(None).floor("D")
    else:
        anchor = utc(now).floor("D") + DAY
    start = anchor - days * DAY
    offsets = site_offsets(store)
    daily = store.read_daily_observations(offsets, sites=[site], start=start - DAY, end=anchor + DAY)
    obs = daily.loc[(daily["time"] >= start) & (daily["time"] < anchor), ["time", "depth_cm", "sensor", "vwc"]] \
        if not daily.empty else pd.DataFrame(columns=["time", "depth_cm", "sensor", "vwc"])
    issued = store.read_forecasts(sites=[site], start=start, end=anchor)
    past = latest_before(issued)
    past = past.rename(columns={"valid_time": "time"})[["time", "depth_cm", *QUANTILES]] if not past.empty else \
        pd.DataFrame(columns=["time", "depth_cm", *QUANTILES])
    future = latest.rename(columns={"valid_time": "time"})[["time", "depth_cm", "lead", *QUANTILES, "issue_time"]] \
        if not latest.empty else pd.DataFrame(columns=["time", "depth_cm", "lead", *QUANTILES, "issue_time"])
    horizon = future["time"].max() + DAY if not future.empty else anchor
    forcing = store.read_forcing(sites=[site], start=start, end=horizon, variables=list(RAIN))
    rain_col = next((c for c in RAIN if c in forcing), None)
    if forcing.empty or rain_col is None:
        rain = pd.DataFrame(columns=["time", "rain_mm"])
    else:
        f = forcing.dropna(subset=[rain_col])
        rain = f.groupby(f["time"].dt.floor("D"))[rain_col].sum().rename("rain_mm").reset_index()
    alerts = db.read_alerts(store, status=db.ACTIVE, site=site)
    alerts = alerts[["id", "kind", "depth_cm", "sensor", "window_start"]] if not alerts.empty else \
        pd.DataFrame(columns=["id", "kind", "depth_cm", "sensor", "window_start"])
    depths = sorted({float(d) for frame in (obs, future, past) for d in frame["depth_cm"]})
    if depth is not None:
        if float(depth) not in depths:
            raise InputError(f"site {site} has no depth {depth:g} cm", where="--depth", column="depth_cm",
                             fix=f"one of: {', '.join(f'{d:g}' for d in depths) or 'none with data'}")
        depths = [float(depth)]
    return SiteView(site, info, start, anchor, depths, obs, past, future, rain, alerts)
