"""The shared pre-parsed USCRN ``daily01`` CSV (one row per station and day) -> canonical frames.

Dates (``lst_date``) are **local standard time** calendar days, as NOAA labels them; they are kept as
date labels (no shift to UTC) and the sites frame says so in ``time_reference``. USCRN averages three
probes per depth in this product, so each depth has one series with sensor label ``avg``.
Station meteorology becomes forcing under Open-Meteo's daily names where they fit.
"""

from __future__ import annotations

from pathlib import Path

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
    raw = pd.read_csv(path, dtype={"wban": str, "lst_date": str})
    return parse_uscrn_daily_frame(raw, str(path))


def parse_uscrn_daily_frame(raw: pd.DataFrame, where: str = "uscrn daily csv") -> tuple[pd.DataFrame, ...]:
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise InputError(f"not a USCRN daily01 CSV: missing {', '.join(missing)}", where=where,
                         column=", ".join(missing), fix="use the shared uscrn_daily01_<year>.csv")
    raw = raw.copy()
    raw["wban"] = raw["wban"].astype(str).str.strip().str.zfill(5)
    soil = [f"soil_moisture_{d}_daily" for d in DEPTHS_CM if f"soil_moisture_{d}_daily" in raw.columns]
    long = raw.melt(id_vars=["lst_date", "wban"], value_vars=soil, var_name="col", value_name="vwc")
    long = long.dropna(subset=["vwc"])
    long = long[long["vwc"] >= 0]  # negative values are instrument codes, not water contents
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
