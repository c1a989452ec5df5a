"""The shared pre-parsed USCRN ``daily01`` CSV (one row per station and day) -> canonical frames.

Dates (``lst_date``) are **local standard time** calendar days, as NOAA labels them; they are kept as
date labels (no shift to UTC) and the sites frame says so in ``time_reference``. USCRN averages three
probes per depth in this product, so each depth has one series with sensor label ``avg``.
Station meteorology becomes forcing under Open-Meteo's daily names where they fit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from smmdn.errors import InputError

DEPTHS_CM = (5, 10, 20, 50, 100)
SENSOR_LABEL = "avg"
FORCING_MAP = {
    "p_daily_calc": "precipitation_sum",
    "t_daily_mean": "temperature_2m_mean",
    "t_daily_max": "temperature_2m_max",
    "t_daily_min": "temperature_2m_min",
    "solarad_daily": "shortwave_radiation_sum",
    "rh_daily_avg": "relative_humidity_2m_mean",
}
REQUIRED = ("wban", "lst_date", "longitude", "latitude", *FORCING_MAP)


def read_uscrn_daily_csv(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Return (observations, forcing, sites) from the pre-parsed USCRN daily CSV."""
    try:
        raw = pd.read_csv(path, dtype={"wban": str, "lst_date": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"not a readable CSV: {type(exc).__name__}: {exc}", where=str(path),
                         fix="use the shared uscrn_daily01_<year>.csv (UTF-8, comma-separated)") from exc
    return parse_uscrn_daily_frame(raw, str(path))


def _numbers(raw: pd.DataFrame, columns: list[str], where: str) -> pd.DataFrame:
    """``columns`` as floats; a cell that is there but not a number is an ``InputError`` naming it."""
    out = raw.copy()
    for column in columns:
        values = pd.to_numeric(raw[column], errors="coerce")
        bad = values.isna() & raw[column].notna()
        if bad.any():
            rows = [int(i) + 2 for i in raw.index[bad][:20]]  # file line numbers (line 1 is the header)
            raise InputError(f"non-numeric values in {column}", where=where, column=column, rows=rows,
                             fix="numbers only (missing values empty); use the shared uscrn_daily01_<year>.csv")
        out[column] = values.astype(float)
    return out


def parse_uscrn_daily_frame(raw: pd.DataFrame, where: str = "uscrn daily csv") -> tuple[pd.DataFrame, ...]:
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise InputError(f"not a USCRN daily01 CSV: missing {', '.join(missing)}", where=where,
                         column=", ".join(missing), fix="use the shared uscrn_daily01_<year>.csv")
    soil = [f"soil_moisture_{d}_daily" for d in DEPTHS_CM if f"soil_moisture_{d}_daily" in raw.columns]
    raw = _numbers(raw.reset_index(drop=True), [*soil, "latitude", "longitude"], where)
    raw["wban"] = raw["wban"].astype(str).str.strip().str.zfill(5)
    long = raw.melt(id_vars=["lst_date", "wban"], value_vars=soil, var_name="col", value_name="vwc")
    long = long.dropna(subset=["vwc"])
    long = long[long["vwc"] >= 0]  # negative values are instrument codes, not water contents
    long = long[np.isfinite(long["vwc"].to_numpy())]  # inf: no reading either (validation never sees it)
    obs = pd.DataFrame({
        "time": long["lst_date"].to_numpy(),
        "site": long["wban"].to_numpy(),
        "depth_cm": long["col"].str.extract(r"soil_moisture_(\d+)_daily")[0].astype(int).to_numpy(),
        "sensor": SENSOR_LABEL,
        "vwc": long["vwc"].astype(float).to_numpy(),
    }).sort_values(["site", "depth_cm", "time"], kind="stable").reset_index(drop=True)
    forcing = raw[["lst_date", "wban", *FORCING_MAP]].rename(columns={"lst_date": "time", "wban": "site",
                                                                       **FORCING_MAP})
    forcing = forcing.sort_values(["site", "time"], kind="stable").reset_index(drop=True)
    sites = (
        raw.groupby("wban", sort=True)[["latitude", "longitude"]].median().reset_index()
        .rename(columns={"wban": "site"})
    )
    sites["elevation_m"] = float("nan")  # not in daily01: join NOAA's station list when needed
    sites["time_reference"] = "local standard time (USCRN lst_date)"
    return obs, forcing, sites
