"""Large TOA5 logger files written block by block (for the streaming ingest tests and benchmark).

The layout is a Campbell CR1000 one-minute table: TIMESTAMP, RECORD, battery and panel temperature,
then one volumetric water content column per depth (fractions, 4 decimals), a smooth daily signal with
noise, so validation flags nothing by itself; callers plant what they test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

DEPTHS = (5, 10, 20, 50)
START = pd.Timestamp("2023-01-01 00:00:00")
WIDE_MET = ("AirT_C", "RH", "Rain_mm", "SlrW")


def columns(depths: tuple[int, ...] = DEPTHS) -> list[str]:
    return [f"VWC_{d}cm" for d in depths]


def registry_yaml(station: str = "Big", site: str = "big", depths: tuple[int, ...] = DEPTHS) -> str:
    """A registry with one logger site mapping every VWC column (UTC logger clock)."""
    mapped = "\n".join(f"          {c}: {{depth_cm: {d}, sensor: a}}" for c, d in zip(columns(depths), depths,
                                                                                     strict=True))
    return (f"version: 1\nsites:\n  - id: {site}\n    name: Big logger\n    lat: 52.0\n    lon: 0.5\n"
            f"    sources:\n      toa5:\n        station: {station}\n        table: Min\n"
            f"        utc_offset_hours: 0\n        columns:\n{mapped}\n")


def header(station: str = "Big", depths: tuple[int, ...] = DEPTHS, wide: bool = False) -> str:
    names = ["TIMESTAMP", "RECORD", "BattV", "PTemp_C", *columns(depths)]
    units = ["TS", "RN", "Volts", "Deg C", *(["m^3/m^3"] * len(depths))]
    if wide:
        names += [*(f"T_{d}cm" for d in depths), *(f"EC_{d}cm" for d in depths), *WIDE_MET]
        units += [*(["Deg C"] * len(depths)), *(["dS/m"] * len(depths)), "Deg C", "%", "mm", "W/m^2"]
    proc = ["", "", *(["Smp"] * (len(names) - 2))]
    quoted = [",".join(f'"{x}"' for x in row) for row in (names, units, proc)]
    env = f'"TOA5","{station}","CR1000","1234","CR1000.Std.32","CPU:big.CR1","4321","Min"'
    return "\n".join([env, *quoted]) + "\n"


def records(first: int, count: int, depths: tuple[int, ...] = DEPTHS, seed: int = 0,
            start: pd.Timestamp = START, wide: bool = False) -> str:
    """``count`` one-minute records from record number ``first`` as CSV text."""
    rng = np.random.default_rng(seed + first)
    n = np.arange(first, first + count)
    times = (start + pd.to_timedelta(n, unit="min")).strftime('"%Y-%m-%d %H:%M:%S"')
    frame = pd.DataFrame({"t": times, "r": n, "b": np.round(12.6 + 0.1 * rng.random(count), 2),
                          "p": np.round(10 + 5 * np.sin(n / 1440 * 2 * np.pi), 2)})
    for i, d in enumerate(depths):
        base = 0.20 + 0.02 * i + 0.03 * np.sin(n / (1440 * 30) * 2 * np.pi)
        frame[f"v{d}"] = np.round(base + 0.002 * rng.standard_normal(count), 4)
    if wide:  # what a real soil station logs beside water content (not mapped, still parsed past)
        for d in depths:
            frame[f"t{d}"] = np.round(8 + 4 * np.sin(n / 1440 * 2 * np.pi) / (1 + d / 10), 3)
        for d in depths:
            frame[f"e{d}"] = np.round(0.05 + 0.01 * rng.random(count), 4)
        frame["air"] = np.round(10 + 6 * np.sin(n / 1440 * 2 * np.pi), 2)
        frame["rh"] = np.round(70 + 20 * rng.random(count), 1)
        frame["rain"] = np.where(rng.random(count) < 0.01, 0.2, 0.0)
        frame["slr"] = np.round(np.clip(400 * np.sin(n / 1440 * 2 * np.pi), 0, None), 1)
    return frame.to_csv(header=False, index=False, quoting=0, lineterminator="\n").replace('"""', '"')


TEMPLATE_RECORDS = 4 * 30 * 1440  # 120 days: a whole number of the signal's daily and 30-day periods


def write_file(path: Path, target_bytes: int, station: str = "Big", depths: tuple[int, ...] = DEPTHS,
               seed: int = 0, wide: bool = False) -> int:
    """Write a file of about ``target_bytes`` (whole records); returns the number of records.

    Why a template: rendering floats is slow; the values of 120 days are rendered once and repeated
    with fresh timestamps and record numbers (the signal's periods divide 120 days, so it stays smooth).
    """
    template = records(0, TEMPLATE_RECORDS, depths, seed, wide=wide).splitlines()
    tails = [line.split(",", 2)[2] for line in template]
    written = 0
    with path.open("w", encoding="ascii", newline="") as fh:
        fh.write(header(station, depths, wide))
        size = fh.tell()
        while size < target_bytes:
            n = np.arange(written, written + TEMPLATE_RECORDS)
            stamps = np.datetime_as_string((START + pd.to_timedelta(n, unit="min")).to_numpy("datetime64[s]"))
            lines = [f'"{t[:10]} {t[11:]}",{r},{tail}\n' for t, r, tail in zip(stamps, n.tolist(), tails, strict=True)]
            text = "".join(lines)
            if size + len(text) > target_bytes:
                keep = max(1, int((target_bytes - size) / (len(text) / len(lines))))
                lines = lines[:keep]
                text = "".join(lines)
            fh.write(text)
            size += len(text)
            written += len(lines)
    return written
