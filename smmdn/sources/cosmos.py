"""COSMOS-UK portal CSV export (daily) -> canonical observation and forcing frames.

Layout: 6 header rows (timestamp, site-id, site-name, parameter-id, parameter-name, parameter-units),
then one row per day with ``dd/mm/yyyy`` dates; missing values are empty cells. VWC is in percent and
is converted to m3/m3. TDT1 and TDT2 are two replicate point probes at 10 cm: sensors ``TDT1`` and
``TDT2`` of one (site, depth) — the spread the mixture learns. The field-scale neutron probe
(COSMOS_VWC) is not a point sensor at a fixed depth and is left out. Meteorology becomes forcing, with
Open-Meteo names where they fit; other numeric parameters keep their lower-cased COSMOS ids.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from smmdn.errors import InputError

HEADER_ROWS = 6
TDT_DEPTH_CM = 10.0
REPLICATES = {"TDT1_VWC_LEVEL2_MEAN": "TDT1", "TDT2_VWC_LEVEL2_MEAN": "TDT2"}
FORCING_MAP = {
    "PRECIPITATION_LEVEL2_TOTAL": "precipitation_sum",
    "TA_LEVEL2_MEAN": "temperature_2m_mean",
    "TA_LEVEL2_MAX": "temperature_2m_max",
    "TA_LEVEL2_MIN": "temperature_2m_min",
    "RH_LEVEL2_MEAN": "relative_humidity_2m_mean",
    "PE_LEVEL2": "potential_evaporation",
    "RN_LEVEL2_TOTAL": "net_radiation_sum",
    "WS_LEVEL2_MEAN": "wind_speed_10m_mean",
    "PA_LEVEL2_MEAN": "surface_pressure_mean",
    "Q_LEVEL2_MEAN": "absolute_humidity_mean",
}


def parse_cosmos_csv(text: str, source_name: str = "cosmos-uk csv") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parse one site's portal export; returns (observations, forcing) in canonical form.

    Raises ``InputError`` naming ``source_name`` when the header or columns are not what the portal writes.
    """
    lines = text.splitlines()
    if len(lines) < HEADER_ROWS + 1:
        raise InputError("too short for a COSMOS-UK export (6 header rows + data)", where=source_name,
                         fix="give the CSV exported from the COSMOS-UK portal")
    header = {row.split(",", 1)[0].strip(): row.split(",")[1:] for row in lines[:HEADER_ROWS]}
    if "site-id" not in header or "parameter-id" not in header:
        raise InputError("missing site-id / parameter-id header rows", where=source_name, column="header",
                         fix="give the CSV exported from the COSMOS-UK portal (6 header rows)")
    site = header["site-id"][0].strip() if header["site-id"] else ""
    params = [p.strip() for p in header["parameter-id"]]
    if not site or len(set(params)) != len(params) or "date" in params:
        raise InputError("empty site-id or repeated parameter ids in the header", where=source_name,
                         column="site-id / parameter-id", fix="give the CSV exported from the COSMOS-UK portal")
    units = dict(zip(params, [u.strip() for u in header.get("parameter-units", [])], strict=False))
    import csv

    wide = [i + HEADER_ROWS + 1 for i, row in enumerate(csv.reader(lines[HEADER_ROWS:])) if len(row) > len(params) + 1]
    if wide:  # pandas would drop the extra fields (or shift the date into the index): refuse instead
        raise InputError(f"rows with more fields than the {len(params)} parameter ids", where=source_name,
                         rows=wide[:20], fix="give the CSV exported from the COSMOS-UK portal, unedited")
    try:  # index_col=False: belt and braces, the date stays a column
        body = pd.read_csv(io.StringIO("\n".join(lines[HEADER_ROWS:])), header=None, names=["date", *params],
                           dtype={"date": str}, index_col=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise InputError(f"data rows not readable as CSV: {str(exc).splitlines()[0] if str(exc) else exc}",
                         where=source_name, fix="give the CSV exported from the COSMOS-UK portal") from exc
    dates = pd.to_datetime(body["date"].astype("string").str.strip(), format="%d/%m/%Y", errors="coerce")
    bad = dates.isna()
    if bad.any():
        raise InputError("dates not in dd/mm/yyyy", where=source_name, column="date",
                         rows=[int(i) + HEADER_ROWS + 1 for i in np.flatnonzero(bad.to_numpy())[:20]],
                         fix="keep the portal's dd/mm/yyyy date column")
    time = dates.dt.strftime("%Y-%m-%d")
    present = [c for c in REPLICATES if c in body.columns]
    if not present:
        raise InputError("no TDT VWC columns", where=source_name, column=", ".join(REPLICATES),
                         fix="export TDT1_VWC_LEVEL2_MEAN and TDT2_VWC_LEVEL2_MEAN")
    parts = []
    for col in present:
        vwc = pd.to_numeric(body[col], errors="coerce")
        if units.get(col, "%") == "%":
            vwc = vwc / 100.0
        parts.append(pd.DataFrame({"time": time, "site": site, "depth_cm": TDT_DEPTH_CM, "sensor": REPLICATES[col],
                                   "vwc": vwc}))
    obs = pd.concat(parts, ignore_index=True).dropna(subset=["vwc"])
    obs = obs[(obs["vwc"] >= 0) & (obs["vwc"] <= 1)].sort_values(["sensor", "time"]).reset_index(drop=True)
    skip = {"COSMOS_VWC_1DAY", "SWE_CRNS_1DAY", "WD_LEVEL2_MEAN", *REPLICATES}
    forcing = pd.DataFrame({"time": time, "site": site})
    for col in params:
        if col in skip or col.endswith("_TSOIL_LEVEL2_MEAN"):
            continue  # soil states are targets' neighbours, not forcing; direction is circular
        forcing[FORCING_MAP.get(col, col.lower())] = pd.to_numeric(body[col], errors="coerce").astype(np.float64)
    return obs, forcing.reset_index(drop=True)


def read_cosmos_csv(path: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """File wrapper: (observations, forcing, sites) — the portal export carries no coordinates."""
    try:
        with open(path, encoding="utf-8-sig") as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text: {exc}", where=str(path),
                         fix="save the COSMOS-UK portal export as UTF-8 CSV (as the portal delivers it)") from exc
    obs, forcing = parse_cosmos_csv(text, str(path))
    sites = pd.DataFrame({"site": obs["site"].unique()})
    return obs, forcing, sites
