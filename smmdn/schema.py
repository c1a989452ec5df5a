"""Canonical frames shared by every part of smmdn (see ``../shared/DESIGN.md``, "Contracts").

A *series* is one (``site``, ``depth_cm``, ``sensor``). Replicate sensors at one site and depth have
different ``sensor`` labels; a network publishing one averaged value per depth uses one label.

Times: sub-daily data are timezone-aware instants handled in UTC (naive timestamps are an error);
daily data are calendar dates labelled as the source labels them. In memory both are pandas
``datetime64[ns, UTC]``; a daily label ``2020-09-01`` is held as ``2020-09-01T00:00Z`` and written back
to CSV as ``YYYY-MM-DD`` (``format_times``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from smmdn.errors import InputError

SERIES_KEY = ("site", "depth_cm", "sensor")
OBSERVATION_COLUMNS = ("time", "site", "depth_cm", "sensor", "vwc")
FORCING_KEY = ("time", "site")
SITE_COLUMNS = ("site", "latitude", "longitude", "elevation_m")
QUANTILE_LEVELS = {"q05": 0.05, "q25": 0.25, "q50": 0.5, "q75": 0.75, "q95": 0.95}
FORECAST_SUMMARY_COLUMNS = ("mean", "sd", *QUANTILE_LEVELS)

HOURLY_FORCING = (
    "precipitation",
    "temperature_2m",
    "relative_humidity_2m",
    "shortwave_radiation",
    "et0_fao_evapotranspiration",
    "wind_speed_10m",
)
DAILY_FORCING = (
    "precipitation_sum",
    "temperature_2m_mean",
    "temperature_2m_max",
    "temperature_2m_min",
    "shortwave_radiation_sum",
    "relative_humidity_2m_mean",
    "et0_fao_evapotranspiration",
)
VWC_PHYSICAL_MAX = 1.0  # above this a value is a unit error (percent), not a quarantine case


def mixture_columns(k: int) -> list[str]:
    """``weight_0..weight_{K-1}, mean_0.., sigma_0..`` in the order CSV files use."""
    return [f"{p}_{i}" for p in ("weight", "mean", "sigma") for i in range(k)]


def n_components(frame: pd.DataFrame) -> int:
    """K of a forecast frame, from its ``weight_k`` columns."""
    return sum(1 for c in frame.columns if c.startswith("weight_") and c[7:].isdigit())


def require_columns(frame: pd.DataFrame, columns: Iterable[str], where: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(
            f"missing column(s) {', '.join(missing)}",
            where=where,
            column=", ".join(missing),
            fix=f"provide columns {', '.join(columns)} (found: {', '.join(map(str, frame.columns))})",
        )


def parse_times(values: pd.Series, where: str, column: str = "time") -> pd.Series:
    """Parse a time column into UTC instants.

    Accepts calendar dates (``YYYY-MM-DD``, daily data) and timezone-aware timestamps. A naive
    timestamp with a clock time is ambiguous and rejected.
    """
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(values.dtype):
        naive_clock = values.notna() & (values != values.dt.normalize())
        if naive_clock.any():
            raise InputError(
                "timezone-naive timestamps",
                where=where,
                column=column,
                rows=list(values.index[naive_clock][:20]),
                fix="give sub-daily times with an offset (e.g. 2020-01-01T06:00Z) or daily data as YYYY-MM-DD",
            )
        return values.dt.tz_localize("UTC")
    text = values.astype("string").str.strip()
    bad_null = text.isna() | (text == "")
    if bad_null.any():
        raise InputError(
            "empty time values", where=where, column=column, rows=list(values.index[bad_null][:20]),
            fix="every row needs a time",
        )
    is_date = text.str.fullmatch(r"\d{4}-\d{2}-\d{2}")
    has_zone = text.str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$", regex=True)
    naive = ~is_date & ~has_zone
    if naive.any():
        raise InputError(
            "timezone-naive timestamps",
            where=where,
            column=column,
            rows=list(values.index[naive][:20]),
            fix="give sub-daily times with an offset (e.g. 2020-01-01T06:00Z) or daily data as YYYY-MM-DD",
        )
    parsed = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    bad = parsed.isna()
    if bad.any():
        raise InputError(
            "unparseable time values", where=where, column=column, rows=list(values.index[bad][:20]),
            fix="use ISO 8601 (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS+00:00)",
        )
    return parsed


def is_daily(times: pd.Series) -> bool:
    """True when every time is a UTC midnight (calendar-date labels)."""
    t = pd.DatetimeIndex(times.dropna())
    return len(t) > 0 and bool((t == t.normalize()).all())


def format_times(times: pd.Series) -> pd.Series:
    """Write times back for CSV: dates for daily data, ISO instants with offset otherwise."""
    if is_daily(times):
        return times.dt.strftime("%Y-%m-%d")
    return times.dt.strftime("%Y-%m-%dT%H:%M:%S%z").str.replace(r"\+0000$", "+00:00", regex=True)


def normalise_observations(frame: pd.DataFrame, where: str = "observations") -> pd.DataFrame:
    """Check and coerce an observation frame to the canonical shape (raises ``InputError``)."""
    require_columns(frame, OBSERVATION_COLUMNS, where)
    out = frame.copy()
    out["time"] = parse_times(out["time"], where)
    out["site"] = out["site"].astype("string")
    out["sensor"] = out["sensor"].astype("string")
    out["depth_cm"] = pd.to_numeric(out["depth_cm"], errors="coerce")
    out["vwc"] = pd.to_numeric(out["vwc"], errors="coerce")
    for key in ("site", "depth_cm", "sensor"):
        bad = out[key].isna()
        if bad.any():
            raise InputError(
                "missing key values", where=where, column=key, rows=list(out.index[bad][:20]),
                fix="every row needs site, depth_cm (number) and sensor",
            )
    too_big = out["vwc"] > VWC_PHYSICAL_MAX
    if too_big.any():
        raise InputError(
            "vwc above 1 m3/m3: looks like percent",
            where=where,
            column="vwc",
            rows=list(out.index[too_big][:20]),
            fix="give volumetric water content as a fraction (m3/m3): divide percent by 100",
        )
    return out


def numeric_columns(frame: pd.DataFrame, exclude: Iterable[str]) -> list[str]:
    excluded = set(exclude)
    return [c for c in frame.columns if c not in excluded and pd.api.types.is_numeric_dtype(frame[c])]


def empty_observations() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "time": pd.Series([], dtype="datetime64[ns, UTC]"),
            "site": pd.Series([], dtype="string"),
            "depth_cm": pd.Series([], dtype=np.float64),
            "sensor": pd.Series([], dtype="string"),
            "vwc": pd.Series([], dtype=np.float64),
        }
    )


# quality_flag tokens whose readings are kept in the store but neither teach the model nor judge it:
# validation's own spike and flatline, and every ISMN suspect code (``ismn_C03``, ``ismn_D06``, …;
# quality/ismn_flags.py). One home for training (cycle/inputs.py) and detection (alerts/detect.py).
UNTRUSTED_FLAGS = ("spike", "flatline", "ismn_")
