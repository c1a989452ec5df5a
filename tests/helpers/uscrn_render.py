"""Render NOAA USCRN daily01 / hourly02 fixed-width lines from values (test fixtures).

The daily01 layout reproduces the real file byte for byte (a test renders the shared 2020 CSV and
compares it with the verbatim Fairbanks sample), so fixtures built from real values look real.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import pandas as pd


def _f(value: object, width: int, decimals: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        missing = -(10 ** (width - decimals - 2) - 1) if decimals else -(10 ** (width - 1) - 1)
        return f"{missing:{width}.{decimals}f}"
    return f"{float(value):{width}.{decimals}f}"


DAILY_CSV_COLUMNS = [
    ("t_daily_max", 7, 1), ("t_daily_min", 7, 1), ("t_daily_mean", 7, 1), ("t_daily_avg", 7, 1),
    ("p_daily_calc", 7, 1), ("solarad_daily", 8, 2),
]


def daily01_line(row: Mapping[str, object]) -> str:
    """One CRND0103 line from a row of the shared ``uscrn_daily01_2020.csv`` (missing → NOAA codes)."""
    date = str(row["lst_date"]).replace("-", "")
    parts = [f"{row['wban']!s:>5}", f"{date:>8}", f"{float(row['crx_vn']):6.3f}",
             f"{float(row['longitude']):7.2f}", f"{float(row['latitude']):7.2f}"]
    parts += [_f(row[c], w, d) for c, w, d in DAILY_CSV_COLUMNS]
    sur = row.get("sur_temp_daily_type")
    parts.append("C" if not isinstance(sur, str) else sur)
    parts += [_f(row[f"sur_temp_daily_{k}"], 7, 1) for k in ("max", "min", "avg")]
    parts += [_f(row[f"rh_daily_{k}"], 7, 1) for k in ("max", "min", "avg")]
    parts += [_f(row[f"soil_moisture_{d}_daily"], 7, 3) for d in (5, 10, 20, 50, 100)]
    parts += [_f(row[f"soil_temp_{d}_daily"], 7, 1) for d in (5, 10, 20, 50, 100)]
    return " ".join(parts)


def daily01_text(frame: pd.DataFrame) -> str:
    return "".join(daily01_line(r) + "\n" for r in frame.to_dict("records"))


def hourly02_line(wban: str, utc: pd.Timestamp, lst_offset_h: int, vwc: Iterable[float | None],
                  t: float = 10.0, p: float = 0.0, solar: float = 100.0, rh: float | None = 60.0) -> str:
    """One CRNH0203 line (243 characters) with the given soil moisture per depth (5..100 cm)."""
    lst = utc + pd.Timedelta(hours=lst_offset_h)
    parts = [f"{wban:>5}", utc.strftime("%Y%m%d"), utc.strftime("%H%M"), lst.strftime("%Y%m%d"),
             lst.strftime("%H%M"), f"{2.622:6.3f}", f"{-96.85:7.2f}", f"{40.70:7.2f}"]
    parts += [_f(t, 7, 1)] * 4 + [_f(p, 7, 1)]
    parts += [f"{solar:6.0f}", "0", f"{solar:6.0f}", "0", f"{solar:6.0f}", "0", "C"]
    parts += [_f(t, 7, 1), "0", _f(t, 7, 1), "0", _f(t, 7, 1), "0"]
    parts += [f"{-9999 if rh is None else rh:5.0f}", "0"]
    parts += [_f(v, 7, 3) for v in vwc]
    parts += [_f(t, 7, 1)] * 5
    return " ".join(parts)
