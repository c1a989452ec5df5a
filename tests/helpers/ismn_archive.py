"""A small ISMN archive in the "header + values" format, for what the real samples lack: two depths and
two sensors at one depth at one station, and flags of every family (C01, C03, D06, M, G).

Layout as ISMN writes it: ``<NETWORK>/<STATION>/<NETWORK>_<NETWORK>_<STATION>_sm_<from>_<to>_<INSTRUMENT>_
<start>_<end>.stm``, a header line (network, network, station, lat, lon, elevation, depth_from, depth_to,
instrument), then ``YYYY/MM/DD HH:MM value ismn_flag provider_flag``, CR line ends as in the samples.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pandas as pd

NETWORK, STATION = "TESTNET", "TWIN"
LAT, LON, ELEV = 47.5, 8.25, 410.0
# (depth_from m, depth_to m, instrument) -> readings
SENSORS = {
    (0.05, 0.05, "EC5_A"): "base",
    (0.05, 0.05, "EC5_B"): "offset",
    (0.20, 0.20, "EC5_A"): "deep",
}
HOURS = 48
START = pd.Timestamp("2020-06-01 00:00")


def _values(kind: str) -> list[tuple[str, str, str]]:
    rows = []
    for i in range(HOURS):
        v = 0.25 + 0.001 * i + (0.01 if kind == "offset" else 0.0) + (0.05 if kind == "deep" else 0.0)
        flag = "G"
        if kind == "base" and i == 10:
            v, flag = -0.05, "C01"  # impossible: quarantined
        if kind == "base" and i == 20:
            flag = "D06"  # ISMN's spike: flagged, kept
        if kind == "offset" and i == 30:
            flag = "C03,D06"
        rows.append((f"{v:.4f}", flag, "M"))
    if kind == "deep":
        rows[40] = ("nan", "M", "M")  # no value: not a reading
    return rows


def file_name(depth_from: float, depth_to: float, instrument: str) -> str:
    end = START + pd.Timedelta(hours=HOURS - 1)
    return (f"{NETWORK}_{NETWORK}_{STATION}_sm_{depth_from:.6f}_{depth_to:.6f}_{instrument}_"
            f"{START:%Y%m%d}_{end:%Y%m%d}.stm")


def stm_text(depth_from: float, depth_to: float, instrument: str, kind: str) -> str:
    header = (f"{NETWORK:<10} {NETWORK:<15} {STATION:<17} {LAT:10.5f} {LON:11.5f} {ELEV:7.2f} "
              f"{depth_from:7.2f} {depth_to:7.2f} {instrument:<10} ")
    lines = [header]
    for i, (value, flag, provider) in enumerate(_values(kind)):
        t = START + pd.Timedelta(hours=i)
        lines.append(f"{t:%Y/%m/%d %H:%M} {value:>8} {flag} {provider}")
    return "\r".join(lines) + "\r"


def write_folder(root: Path) -> Path:
    """The archive extracted: ``root/TESTNET/TWIN/*.stm``; returns ``root``."""
    station = root / NETWORK / STATION
    station.mkdir(parents=True, exist_ok=True)
    for (dfrom, dto, instrument), kind in SENSORS.items():
        (station / file_name(dfrom, dto, instrument)).write_text(stm_text(dfrom, dto, instrument, kind),
                                                                 encoding="utf-8", newline="")
    return root


def write_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for (dfrom, dto, instrument), kind in SENSORS.items():
            zf.writestr(f"{NETWORK}/{STATION}/{file_name(dfrom, dto, instrument)}",
                        stm_text(dfrom, dto, instrument, kind))
    return path
