"""COSMOS-UK over HTTP: fetch a portal CSV export and hand it to ``smmdn.sources.cosmos.parse_cosmos_csv``.

Layout expected under ``SMMDN_COSMOS_URL`` (a mirror of portal exports, one file per site and
resolution): ``{cosmos_url}/{SITE_ID}/{resolution}.csv?start=YYYY-MM-DD&end=YYYY-MM-DD`` where
``resolution`` is ``1day``, ``1hour`` or ``30min``; a server may ignore the dates (we window rows
ourselves). Parsing (six header rows, percent VWC, replicate TDT sensors) lives in ``cosmos.py``.
"""

from __future__ import annotations

import pandas as pd
import requests

from smmdn.config import Settings
from smmdn.errors import InputError, SourceError
from smmdn.sources import http
from smmdn.sources.uscrn import window

SETTING = "cosmos_url"


def export_url(base: str, site_id: str, resolution: str) -> str:
    return f"{base.rstrip('/')}/{site_id}/{resolution}.csv"


def fetch_cosmos(
    session: requests.Session,
    settings: Settings,
    site: str,
    *,
    site_id: str,
    resolution: str = "1day",
    since: pd.Timestamp | None = None,
    until: pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(observations, forcing) of one COSMOS-UK site for (since, until]."""
    from smmdn.sources.cosmos import parse_cosmos_csv

    if not settings.cosmos_url:
        raise SourceError("no COSMOS-UK endpoint configured: set SMMDN_COSMOS_URL")
    url = export_url(settings.cosmos_url, site_id, resolution)
    params = {}
    if since is not None:
        params["start"] = since.strftime("%Y-%m-%d")
    if until is not None:
        params["end"] = until.strftime("%Y-%m-%d")
    response = http.get(session, url, settings=settings, setting=SETTING, params=params)
    assert response is not None
    text = http.read_text(response, setting=SETTING)
    try:
        obs, forcing = parse_cosmos_csv(text, url)
    except InputError as exc:  # a malformed export is the source's fault, not the operator's input
        raise SourceError(f"{url}: malformed COSMOS-UK export: {exc}; check SMMDN_COSMOS_URL") from exc
    except (ValueError, KeyError, IndexError, AttributeError, TypeError) as exc:
        raise SourceError(f"{url}: unreadable COSMOS-UK export: {type(exc).__name__}: {exc}") from exc
    return _as_site(obs, site, site_id, url, since, until), _as_site(forcing, site, site_id, url, since, until)


def _as_site(frame: pd.DataFrame, site: str, site_id: str, url: str, since: pd.Timestamp | None,
             until: pd.Timestamp | None) -> pd.DataFrame:
    """Relabel the export's own site id with the registry's, after checking it is the site we asked for."""
    if frame.empty:
        return frame
    found = set(frame["site"].astype(str)) - {site_id}
    if found:
        raise SourceError(f"{url}: export is for site {sorted(found)}, registry expects {site_id}")
    out = frame.copy()
    out["site"] = pd.array([site] * len(out), dtype="string")
    out["time"] = pd.to_datetime(out["time"], utc=True)  # daily labels (YYYY-MM-DD) as UTC midnights
    return window(out, since, until)
