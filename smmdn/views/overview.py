"""The network at a glance, one row per site: series reporting, last reading and its age, the latest forecast,
open alerts. Built from the database's aggregates, so it stays cheap at tens of thousands of series."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from smmdn.store import alerts as db
from smmdn.store.sites import site_freshness
from smmdn.timeutil import utc

if TYPE_CHECKING:
    from smmdn.store.store import Store

WINDOW = pd.Timedelta(days=14)


def network_overview(store: Store, now: Any = None) -> list[dict[str, Any]]:
    """Rows for the overview table (every site of the registry, quiet ones too)."""
    now = utc(now)
    fresh = site_freshness(store, now - WINDOW, now).set_index("site")
    sites = store.read_sites()
    alerts = db.read_alerts(store, status=db.ACTIVE)
    per_site = alerts.loc[alerts["site"] != "*"].groupby("site") if not alerts.empty else None
    rows = []
    for site in sorted(set(sites["site"].astype(str)) | set(fresh.index.astype(str))):
        f = fresh.loc[site] if site in fresh.index else None
        last = f["last_reading"] if f is not None else pd.NaT
        issue = f["latest_issue"] if f is not None else pd.NaT
        mine = per_site.get_group(site) if per_site is not None and site in per_site.groups else None
        rows.append({
            "site": site,
            "series": int(f["series"]) if f is not None else 0,
            "last_reading": "-" if pd.isna(last) else pd.Timestamp(last).strftime("%Y-%m-%d %H:%M"),
            "hours_since": None if pd.isna(last) else round((now - pd.Timestamp(last)) / pd.Timedelta(hours=1), 1),
            "latest_forecast": "-" if pd.isna(issue) else pd.Timestamp(issue).date().isoformat(),
            "open_alerts": 0 if mine is None else len(mine),
            "alert_kinds": "" if mine is None else ", ".join(sorted(set(mine["kind"]))),
        })
    return rows


def sites_with_open_alerts(store: Store) -> list[str]:
    """Sites an operator should look at today (the flow plots these, not every site)."""
    alerts = db.read_alerts(store, status=db.ACTIVE)
    return sorted(set(alerts["site"].astype(str)) - {"*"}) if not alerts.empty else []
