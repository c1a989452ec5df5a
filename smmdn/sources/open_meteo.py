"""Open-Meteo weather forcing: forecast, archive (reanalysis) and historical-forecast APIs.

All three share the request and response layout, so one parser serves them. Several sites go in one
request (comma-separated ``latitude``/``longitude``; the answer is then a JSON list in the same order).
Hourly data is requested in GMT; daily data in each site's local standard time (``Etc/GMT+6`` for
UTC-6) so daily labels line up with USCRN's LST dates. ``issue_time`` of a forecast is the request time
floored to the hour (Open-Meteo does not publish the model run time).

Data by Open-Meteo.com, CC BY 4.0 (see ``ATTRIBUTION``); the frames carry it in ``attrs``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import requests

from smmdn.config import Settings
from smmdn.errors import SourceError
from smmdn.schema import DAILY_FORCING, HOURLY_FORCING
from smmdn.sources import http

log = logging.getLogger(__name__)

ATTRIBUTION = "Weather data by Open-Meteo.com (https://open-meteo.com/), licensed CC BY 4.0"
Api = Literal["forecast", "archive", "historical-forecast"]
Resolution = Literal["hourly", "daily"]
SETTINGS_FOR_API = {
    "forecast": "open_meteo_url",
    "archive": "open_meteo_archive_url",
    "historical-forecast": "open_meteo_historical_forecast_url",
}
KIND_FOR_API = {"forecast": "forecast", "archive": "archive", "historical-forecast": "archive"}
MAX_FORECAST_DAYS = 16
MAX_SITES_PER_REQUEST = 50


@dataclass(frozen=True)
class Location:
    site: str
    latitude: float
    longitude: float
    utc_offset_hours: float = 0.0  # local standard time used for daily labels


def lst_timezone(offset_hours: float) -> str:
    """Open-Meteo timezone naming a fixed local standard time: -6 → ``Etc/GMT+6`` (POSIX sign)."""
    if offset_hours == 0:
        return "GMT"
    if offset_hours != int(offset_hours):
        raise SourceError(f"daily forcing needs a whole-hour LST offset, got {offset_hours}")
    return f"Etc/GMT{-int(offset_hours):+d}"


def build_params(
    locations: Sequence[Location],
    resolution: Resolution,
    variables: Sequence[str],
    *,
    api: Api,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    forecast_days: int | None = None,
    past_days: int | None = None,
    api_key: str | None = None,
) -> dict[str, str]:
    """Query parameters for one request (one timezone for all its locations)."""
    if not locations:
        raise SourceError("Open-Meteo request without locations")
    offsets = {loc.utc_offset_hours for loc in locations} if resolution == "daily" else {0.0}
    if len(offsets) != 1:
        raise SourceError("one Open-Meteo request must share one daily timezone; group sites by offset")
    params: dict[str, str] = {
        "latitude": ",".join(f"{loc.latitude:.4f}" for loc in locations),
        "longitude": ",".join(f"{loc.longitude:.4f}" for loc in locations),
        resolution: ",".join(variables),
        "timezone": lst_timezone(next(iter(offsets))),
        "wind_speed_unit": "ms",
    }
    if api == "forecast":
        if start is not None or end is not None:
            raise SourceError("the forecast API takes forecast_days/past_days, not dates")
        days = MAX_FORECAST_DAYS if forecast_days is None else forecast_days
        if not 0 <= days <= MAX_FORECAST_DAYS:
            raise SourceError(f"forecast_days must be 0..{MAX_FORECAST_DAYS}, got {days}")
        params["forecast_days"] = str(days)
        if past_days:
            params["past_days"] = str(int(past_days))
    else:
        if start is None or end is None:
            raise SourceError(f"the {api} API needs start and end dates")
        params["start_date"] = start.strftime("%Y-%m-%d")
        params["end_date"] = end.strftime("%Y-%m-%d")
    if api_key:
        params["apikey"] = api_key
    return params


def parse_response(
    payload: Any, locations: Sequence[Location], resolution: Resolution, where: str = "open-meteo"
) -> pd.DataFrame:
    """One response (object or list, in request order) → wide frame ``time, site, variables...``.

    Hourly local times are shifted to UTC by ``utc_offset_seconds``; daily labels stay dates.
    Nulls stay NaN (never zero): validation quarantines rows without any value.
    """
    if isinstance(payload, dict) and payload.get("error"):
        raise SourceError(f"{where}: Open-Meteo error: {payload.get('reason', payload)}")
    items = payload if isinstance(payload, list) else [payload]
    if len(items) != len(locations):
        raise SourceError(f"{where}: {len(items)} location(s) in the answer, {len(locations)} requested")
    frames = []
    for item, loc in zip(items, locations, strict=True):
        frames.append(_parse_one(item, loc.site, resolution, where))
    out = pd.concat(frames, ignore_index=True)
    out.attrs["attribution"] = ATTRIBUTION
    return out


def _parse_one(item: Any, site: str, resolution: Resolution, where: str) -> pd.DataFrame:
    if not isinstance(item, dict) or not isinstance(item.get(resolution), dict):
        raise SourceError(f"{where}: no '{resolution}' block in the answer for {site}")
    block = item[resolution]
    times = block.get("time")
    if not isinstance(times, list) or not times:
        raise SourceError(f"{where}: '{resolution}.time' missing or empty for {site}")
    n = len(times)
    offset = item.get("utc_offset_seconds", 0)
    if not isinstance(offset, int | float):
        raise SourceError(f"{where}: utc_offset_seconds is not a number")
    text = pd.Series(times, dtype="string")
    if resolution == "daily":
        time = pd.to_datetime(text, format="%Y-%m-%d", utc=True, errors="coerce")
    else:
        local = pd.to_datetime(text, format="%Y-%m-%dT%H:%M", errors="coerce")
        time = (local - pd.Timedelta(seconds=float(offset))).dt.tz_localize("UTC")
    if time.isna().any():
        raise SourceError(f"{where}: unparseable time {times[int(time.isna().to_numpy().argmax())]!r}")
    out = pd.DataFrame({"time": time, "site": pd.Series([site] * n, dtype="string")})
    for name, values in block.items():
        if name == "time":
            continue
        if not isinstance(values, list) or len(values) != n:
            raise SourceError(f"{where}: '{resolution}.{name}' has {len(values) if isinstance(values, list) else 'no'}"
                              f" values for {n} times")
        numbers = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").astype(np.float64)
        if (numbers.isna() & pd.Series([v is not None for v in values])).any():
            raise SourceError(f"{where}: non-numeric values in '{resolution}.{name}'")
        out[name] = numbers.to_numpy()
    return out


def default_variables(resolution: Resolution) -> tuple[str, ...]:
    return HOURLY_FORCING if resolution == "hourly" else DAILY_FORCING


def fetch_open_meteo(
    session: requests.Session,
    settings: Settings,
    locations: Sequence[Location],
    *,
    api: Api = "forecast",
    resolution: Resolution = "daily",
    variables: Sequence[str] | None = None,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    forecast_days: int | None = None,
    past_days: int | None = None,
) -> pd.DataFrame:
    """Fetch forcing for many sites (batched per timezone and ``MAX_SITES_PER_REQUEST``).

    An answer whose every value is null is a ``SourceError``: the upstream has nothing for this
    request, and storing it would hide that (the caller keeps its watermark and retries later).
    """
    setting = SETTINGS_FOR_API[api]
    url = getattr(settings, setting)
    names = tuple(variables) if variables else default_variables(resolution)
    key = settings.open_meteo_api_key.get_secret_value() if settings.open_meteo_api_key else None
    groups: dict[float, list[Location]] = {}
    for loc in locations:
        groups.setdefault(loc.utc_offset_hours if resolution == "daily" else 0.0, []).append(loc)
    frames = []
    for group in groups.values():
        for i in range(0, len(group), MAX_SITES_PER_REQUEST):
            chunk = group[i : i + MAX_SITES_PER_REQUEST]
            params = build_params(chunk, resolution, names, api=api, start=start, end=end,
                                  forecast_days=forecast_days, past_days=past_days, api_key=key)
            payload = http.get_json(session, url, settings=settings, setting=setting, params=params)
            frame = parse_response(payload, chunk, resolution, where=url)
            value_cols = [c for c in frame.columns if c not in ("time", "site")]
            if not value_cols or frame[value_cols].isna().all().all():
                raise SourceError(
                    f"{url}: every value is null for {', '.join(loc.site for loc in chunk)} "
                    f"({resolution} {', '.join(names)}); upstream has no data for this request yet"
                )
            frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    out.attrs["attribution"] = ATTRIBUTION
    out.attrs["api"] = api
    return out


def issue_time_now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC").floor("h")
