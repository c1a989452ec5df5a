"""NOAA USCRN public directory: hourly02 and daily01 station files → canonical observations + forcing.

Layouts from NCEI's ``hourly02/readme.txt`` (38 fields, 243 characters) and ``daily01/readme.txt``
(28 fields, 216 characters). Missing values are the smallest number a field can hold (-9999, -9999.0,
-99.000). USCRN averages three probes per depth and publishes one value: sensor label ``avg``.

Times: hourly02 ``UTC_DATE``+``UTC_TIME`` is the *end* of the hour in UTC and is used as is. daily01
``LST_DATE`` is a local-standard-time calendar date, kept as a date label (see the site's registry note).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import numpy as np
import pandas as pd
import requests

from smmdn.config import Settings
from smmdn.errors import SourceError
from smmdn.sources import http

log = logging.getLogger(__name__)

DEPTHS_CM = (5, 10, 20, 50, 100)
SENSOR = "avg"

HOURLY_FIELDS = (
    "WBANNO", "UTC_DATE", "UTC_TIME", "LST_DATE", "LST_TIME", "CRX_VN", "LONGITUDE", "LATITUDE",
    "T_CALC", "T_HR_AVG", "T_MAX", "T_MIN", "P_CALC", "SOLARAD", "SOLARAD_FLAG", "SOLARAD_MAX",
    "SOLARAD_MAX_FLAG", "SOLARAD_MIN", "SOLARAD_MIN_FLAG", "SUR_TEMP_TYPE", "SUR_TEMP", "SUR_TEMP_FLAG",
    "SUR_TEMP_MAX", "SUR_TEMP_MAX_FLAG", "SUR_TEMP_MIN", "SUR_TEMP_MIN_FLAG", "RH_HR_AVG", "RH_HR_AVG_FLAG",
    "SOIL_MOISTURE_5", "SOIL_MOISTURE_10", "SOIL_MOISTURE_20", "SOIL_MOISTURE_50", "SOIL_MOISTURE_100",
    "SOIL_TEMP_5", "SOIL_TEMP_10", "SOIL_TEMP_20", "SOIL_TEMP_50", "SOIL_TEMP_100",
)
DAILY_FIELDS = (
    "WBANNO", "LST_DATE", "CRX_VN", "LONGITUDE", "LATITUDE", "T_DAILY_MAX", "T_DAILY_MIN", "T_DAILY_MEAN",
    "T_DAILY_AVG", "P_DAILY_CALC", "SOLARAD_DAILY", "SUR_TEMP_DAILY_TYPE", "SUR_TEMP_DAILY_MAX",
    "SUR_TEMP_DAILY_MIN", "SUR_TEMP_DAILY_AVG", "RH_DAILY_MAX", "RH_DAILY_MIN", "RH_DAILY_AVG",
    "SOIL_MOISTURE_5_DAILY", "SOIL_MOISTURE_10_DAILY", "SOIL_MOISTURE_20_DAILY", "SOIL_MOISTURE_50_DAILY",
    "SOIL_MOISTURE_100_DAILY", "SOIL_TEMP_5_DAILY", "SOIL_TEMP_10_DAILY", "SOIL_TEMP_20_DAILY",
    "SOIL_TEMP_50_DAILY", "SOIL_TEMP_100_DAILY",
)
# Open-Meteo names for the station's own meteorology (DESIGN.md "Contracts").
HOURLY_FORCING_MAP = {
    "P_CALC": "precipitation",  # mm in the hour
    "T_HR_AVG": "temperature_2m",  # degC, mean of the hour
    "RH_HR_AVG": "relative_humidity_2m",  # %
    "SOLARAD": "shortwave_radiation",  # W/m2, mean of the hour
}
DAILY_FORCING_MAP = {
    "P_DAILY_CALC": "precipitation_sum",  # mm
    "T_DAILY_AVG": "temperature_2m_mean",  # degC, mean of hourly temperatures
    "T_DAILY_MAX": "temperature_2m_max",
    "T_DAILY_MIN": "temperature_2m_min",
    "SOLARAD_DAILY": "shortwave_radiation_sum",  # MJ/m2
    "RH_DAILY_AVG": "relative_humidity_2m_mean",  # %
}
TEXT_FIELDS = {"WBANNO", "UTC_DATE", "UTC_TIME", "LST_DATE", "LST_TIME", "SUR_TEMP_TYPE", "SUR_TEMP_DAILY_TYPE"}
MISSING_CODES = (-99999.0, -9999.0, -999.0, -99.0)


def _split(text: str, fields: tuple[str, ...], where: str) -> pd.DataFrame:
    """Whitespace-split rows (equivalent to the fixed columns: every field is right-aligned, none empty)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise SourceError(f"{where}: empty USCRN file")
    bad = [i + 1 for i, ln in enumerate(lines) if len(ln.split()) != len(fields)]
    if bad:
        raise SourceError(
            f"{where}: {len(bad)} line(s) without {len(fields)} fields (first: line {bad[0]}); "
            "truncated download or not a USCRN file"
        )
    try:
        frame = pd.read_csv(
            io.StringIO("\n".join(lines)), sep=r"\s+", header=None, names=list(fields),
            dtype={f: "string" for f in TEXT_FIELDS & set(fields)}, engine="c",
        )
    except (ValueError, pd.errors.ParserError) as exc:
        raise SourceError(f"{where}: unreadable USCRN file: {exc}") from exc
    numeric = [f for f in fields if f not in TEXT_FIELDS and not f.endswith("_FLAG")]
    for f in numeric:
        if not pd.api.types.is_numeric_dtype(frame[f]):
            values = pd.to_numeric(frame[f], errors="coerce")
            if values.isna().any():
                raise SourceError(f"{where}: non-numeric values in {f}")
            frame[f] = values
        frame[f] = frame[f].astype(np.float64).where(~frame[f].isin(MISSING_CODES))
    return frame


def _check_wban(frame: pd.DataFrame, wban: str | None, where: str) -> None:
    if wban is None:
        return
    found = set(frame["WBANNO"].str.lstrip("0")) - {wban.lstrip("0")}
    if found:
        raise SourceError(f"{where}: station WBAN {sorted(found)} in file, registry says {wban}")


def _observations(frame: pd.DataFrame, time: pd.Series, site: str, column: str, sensor: str) -> pd.DataFrame:
    """Wide depth columns → long canonical rows (vectorised; missing cells are not observations)."""
    stamps = time.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    values = frame[[column.format(depth=d) for d in DEPTHS_CM]].to_numpy(dtype=np.float64).T.ravel()
    n = len(stamps)
    keep = ~np.isnan(values)
    obs = pd.DataFrame(
        {
            "time": pd.DatetimeIndex(np.tile(stamps, len(DEPTHS_CM))[keep]).tz_localize("UTC"),
            "site": pd.array([site] * int(keep.sum()), dtype="string"),
            "depth_cm": np.repeat(np.asarray(DEPTHS_CM, dtype=np.float64), n)[keep],
            "sensor": pd.array([sensor] * int(keep.sum()), dtype="string"),
            "vwc": values[keep],
        }
    )
    return obs.sort_values(["depth_cm", "time"], kind="stable").reset_index(drop=True)


def _forcing(frame: pd.DataFrame, time: pd.Series, site: str, mapping: dict[str, str]) -> pd.DataFrame:
    out = pd.DataFrame({"time": time.reset_index(drop=True),
                        "site": pd.array([site] * len(frame), dtype="string")})
    for src, name in mapping.items():
        out[name] = frame[src].to_numpy(dtype=np.float64)
    return out


def parse_hourly02(
    text: str, site: str, *, wban: str | None = None, sensor: str = SENSOR, where: str = "hourly02"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parse a CRNH0203 file → (observations with UTC end-of-hour times, hourly forcing)."""
    frame = _split(text, HOURLY_FIELDS, where)
    _check_wban(frame, wban, where)
    stamp = frame["UTC_DATE"] + frame["UTC_TIME"].str.zfill(4)
    time = pd.to_datetime(stamp, format="%Y%m%d%H%M", utc=True, errors="coerce")
    if time.isna().any():
        raise SourceError(f"{where}: unparseable UTC_DATE/UTC_TIME on line {int(time.isna().idxmax()) + 1}")
    return (
        _observations(frame, time, site, "SOIL_MOISTURE_{depth}", sensor),
        _forcing(frame, time, site, HOURLY_FORCING_MAP),
    )


def parse_daily01(
    text: str, site: str, *, wban: str | None = None, sensor: str = SENSOR, where: str = "daily01"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parse a CRND0103 file → (observations labelled by LST date, daily forcing)."""
    frame = _split(text, DAILY_FIELDS, where)
    _check_wban(frame, wban, where)
    time = pd.to_datetime(frame["LST_DATE"], format="%Y%m%d", utc=True, errors="coerce")
    if time.isna().any():
        raise SourceError(f"{where}: unparseable LST_DATE on line {int(time.isna().idxmax()) + 1}")
    return (
        _observations(frame, time, site, "SOIL_MOISTURE_{depth}_DAILY", sensor),
        _forcing(frame, time, site, DAILY_FORCING_MAP),
    )


def file_url(base: str, product: str, year: int, station_file: str) -> str:
    prefix = {"hourly02": "CRNH0203", "daily01": "CRND0103"}[product]
    return f"{base.rstrip('/')}/{product}/{year}/{prefix}-{year}-{station_file}.txt"


def _years(since: pd.Timestamp | None, until: pd.Timestamp) -> Iterator[int]:
    start = since.year if since is not None else until.year
    yield from range(start, until.year + 1)


def fetch_uscrn(
    session: requests.Session,
    settings: Settings,
    site: str,
    *,
    station_file: str,
    product: str = "hourly02",
    wban: str | None = None,
    sensor: str = SENSOR,
    since: pd.Timestamp | None = None,
    until: pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fetch the yearly files covering (since, until] and return rows strictly after ``since``.

    A missing year file (404) is normal early in January and yields nothing for that year.
    """
    until = until if until is not None else pd.Timestamp.now(tz="UTC")
    parse = parse_hourly02 if product == "hourly02" else parse_daily01
    obs_parts, forcing_parts = [], []
    for year in _years(since, until):
        url = file_url(settings.uscrn_url, product, year, station_file)
        response = http.get(session, url, settings=settings, setting="uscrn_url", allow_404=True)
        if response is None:
            log.info("USCRN %s: no file for %d yet (%s)", site, year, url)
            continue
        obs, forcing = parse(http.read_text(response, setting="uscrn_url"), site, wban=wban,
                             sensor=sensor, where=url)
        obs_parts.append(obs)
        forcing_parts.append(forcing)
    if not obs_parts:
        return _empty_like_obs(), pd.DataFrame(columns=["time", "site"])
    obs = pd.concat(obs_parts, ignore_index=True)
    forcing = pd.concat(forcing_parts, ignore_index=True)
    return window(obs, since, until), window(forcing, since, until)


def window(frame: pd.DataFrame, since: pd.Timestamp | None, until: pd.Timestamp | None) -> pd.DataFrame:
    """Rows with since < time <= until (the watermark is the last time already stored)."""
    keep = pd.Series(True, index=frame.index)
    if since is not None:
        keep &= frame["time"] > since
    if until is not None:
        keep &= frame["time"] <= until
    return frame[keep].reset_index(drop=True)


def _empty_like_obs() -> pd.DataFrame:
    from smmdn.schema import empty_observations

    return empty_observations()
