"""OGC SensorThings API v1.1: Datastream → Observations, incremental on phenomenonTime.

Why these details: FROST servers page with ``@iot.nextLink`` (absolute URL with ``$skip``); a
``phenomenonTime`` may be an ISO 8601 interval ``start/end`` (we label the value with its end, like
USCRN's end-of-hour times); units differ between deployments, so the Datastream's
``unitOfMeasurement`` decides percent → fraction and anything else is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import requests

from smmdn.config import Settings
from smmdn.errors import SourceError
from smmdn.sources import http

log = logging.getLogger(__name__)

SETTING = "sensorthings_url"
PAGE_SIZE = 1000
MAX_PAGES = 10_000  # a server whose nextLink never ends is broken, not infinite data
PERCENT_UNITS = {"%", "percent", "percentage", "ucum:%", "vol%", "% vol"}
FRACTION_UNITS = {"m3/m3", "m3 m-3", "m³/m³", "m^3/m^3", "ucum:m3/m3", "ucum:m3.m-3", "1", "fraction", "cm3/cm3"}


def unit_scale(unit: dict[str, Any] | None, where: str) -> float:
    """Factor that turns a Datastream's values into m3/m3 (1 or 0.01); unknown units are an error."""
    if not isinstance(unit, dict):
        raise SourceError(f"{where}: Datastream has no unitOfMeasurement")
    labels = {str(unit.get(k, "")).strip().lower() for k in ("symbol", "name", "definition")} - {""}
    if labels & PERCENT_UNITS:
        return 0.01
    if labels & FRACTION_UNITS:
        return 1.0
    raise SourceError(
        f"{where}: unitOfMeasurement {unit} is neither percent nor m3/m3; "
        "register only volumetric water content datastreams"
    )


def interval_end(value: Any) -> str:
    """``a/b`` → ``b``; an instant stays as it is."""
    text = str(value)
    return text.split("/", 1)[1] if "/" in text else text


def parse_observations(values: Iterable[dict[str, Any]], where: str) -> pd.DataFrame:
    """Observation entities → (time UTC, value) frame. Null results become NaN (validation decides)."""
    times: list[str] = []
    results: list[Any] = []
    for i, entity in enumerate(values):
        if not isinstance(entity, dict) or "phenomenonTime" not in entity or "result" not in entity:
            raise SourceError(f"{where}: observation #{i} lacks phenomenonTime/result")
        times.append(interval_end(entity["phenomenonTime"]))
        results.append(entity["result"])
    if not times:
        return pd.DataFrame({"time": pd.Series([], dtype="datetime64[ns, UTC]"), "value": pd.Series([], dtype=float)})
    text = pd.Series(times, dtype="string")
    if not text.str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$", regex=True).all():
        raise SourceError(f"{where}: phenomenonTime without a time zone")
    parsed = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    if parsed.isna().any():
        raise SourceError(f"{where}: unparseable phenomenonTime {times[int(parsed.isna().to_numpy().argmax())]!r}")
    numbers = pd.to_numeric(pd.Series(results, dtype=object), errors="coerce")
    non_numeric = numbers.isna() & pd.Series([r is not None for r in results])
    if non_numeric.any():
        raise SourceError(f"{where}: non-numeric result {results[int(non_numeric.to_numpy().argmax())]!r}")
    return pd.DataFrame({"time": parsed.to_numpy(), "value": numbers.to_numpy(dtype=np.float64)}).assign(
        time=lambda f: pd.to_datetime(f["time"], utc=True)
    )


def _same_server(link: object, base: str) -> bool:
    """A nextLink must stay on the configured server (never follow a page to another host)."""
    from urllib.parse import urlsplit

    if not isinstance(link, str):
        return False
    a, b = urlsplit(link), urlsplit(base)
    return a.scheme in ("http", "https") and a.netloc == b.netloc and a.path.startswith(b.path.rstrip("/"))


def _iso(ts: pd.Timestamp) -> str:
    return ts.tz_convert("UTC").isoformat(timespec="milliseconds").replace("+00:00", "Z")


def datastream_url(base: str, datastream_id: int | str) -> str:
    """Entity URL; string ids are quoted as OData requires (FROST may use either)."""
    key = datastream_id if isinstance(datastream_id, int) else "'{}'".format(str(datastream_id).replace("'", "''"))
    return f"{base.rstrip('/')}/Datastreams({key})"


def observations_url(base: str, datastream_id: int | str) -> str:
    return datastream_url(base, datastream_id) + "/Observations"


def time_filter(since: pd.Timestamp | None, until: pd.Timestamp | None) -> str | None:
    parts = []
    if since is not None:
        parts.append(f"phenomenonTime gt {_iso(since)}")
    if until is not None:
        parts.append(f"phenomenonTime le {_iso(until)}")
    return " and ".join(parts) or None


def fetch_datastream(
    session: requests.Session,
    settings: Settings,
    datastream_id: int | str,
    *,
    since: pd.Timestamp | None = None,
    until: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """All observations of one Datastream in (since, until], in m3/m3, following every nextLink."""
    base = settings.sensorthings_url
    if not base:
        raise SourceError("no SensorThings endpoint configured: set SMMDN_SENSORTHINGS_URL")
    ds_url = datastream_url(base, datastream_id)
    meta = http.get_json(session, ds_url, settings=settings, setting=SETTING)
    if not isinstance(meta, dict):
        raise SourceError(f"{ds_url}: expected a Datastream object")
    scale = unit_scale(meta.get("unitOfMeasurement"), ds_url)

    params: dict[str, Any] | None = {
        "$orderby": "phenomenonTime asc",
        "$select": "phenomenonTime,result",
        "$top": PAGE_SIZE,
    }
    flt = time_filter(since, until)
    if flt:
        params["$filter"] = flt  # type: ignore[index]
    url: str | None = observations_url(base, datastream_id)
    pages: list[pd.DataFrame] = []
    for _ in range(MAX_PAGES):
        if url is None:
            break
        page = http.get_json(session, url, settings=settings, setting=SETTING, params=params)
        if not isinstance(page, dict) or not isinstance(page.get("value"), list):
            raise SourceError(f"{url}: expected an entity collection with a 'value' array")
        pages.append(parse_observations(page["value"], url))
        next_link = page.get("@iot.nextLink")
        if next_link is not None and not _same_server(next_link, base):
            raise SourceError(
                f"{url}: @iot.nextLink {str(next_link)[:120]!r} does not point at {base}; set the server's "
                "serviceRootUrl or SMMDN_SENSORTHINGS_URL to the address it publishes"
            )
        url, params = next_link, None  # the nextLink carries every query option
    else:
        raise SourceError(f"{ds_url}: more than {MAX_PAGES} pages; the server's nextLink does not end")
    frame = pd.concat(pages, ignore_index=True) if pages else parse_observations([], ds_url)
    frame["value"] = frame["value"] * scale
    return frame


def fetch_sensorthings(
    session: requests.Session,
    settings: Settings,
    site: str,
    datastreams: Iterable[tuple[int | str, float, str]],
    *,
    since: pd.Timestamp | None = None,
    until: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Canonical observations for a site from (datastream id, depth_cm, sensor) triples."""
    parts = []
    for ds_id, depth, sensor in datastreams:
        frame = fetch_datastream(session, settings, ds_id, since=since, until=until)
        parts.append(pd.DataFrame({"time": frame["time"], "site": site, "depth_cm": float(depth),
                                   "sensor": sensor, "vwc": frame["value"]}))
    if not parts:
        from smmdn.schema import empty_observations

        return empty_observations()
    obs = pd.concat(parts, ignore_index=True)
    obs["site"] = obs["site"].astype("string")
    obs["sensor"] = obs["sensor"].astype("string")
    return obs
