"""Bad landing files for the fault suite, rendered from the simulated network's real TOA5 layout.

Each case owns one day of its own in 2023 (shifted copies of simulated readings, long before the cycle's
history), so the rows found in the store for that day can only have come from that case's file: the
accounting "stored + quarantined + missing == rows in the file" needs no ingest internals.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from smmdn.demo.feeds import column_name, write_toa5_file
from smmdn.demo.simulate import DEPTHS_CM, SENSORS

SITE = "DEMO01"  # the poisoned site; DEMO02 only ever gets good files
STATION = f"Demo_{SITE}"
COLUMNS = [column_name(d, s) for d in DEPTHS_CM for s in SENSORS]
HEADER_LINES = 4


@dataclass(frozen=True)
class Case:
    """One bad file: ``name`` in landing, the UTC day its rows claim, its data lines (after the header)."""

    name: str
    day: pd.Timestamp
    data_lines: int  # records a reader can see in the file (after damage)


def wide_day(readings: pd.DataFrame, source_day: pd.Timestamp, target_day: pd.Timestamp) -> pd.DataFrame:
    """SITE's 24 hourly readings of ``source_day`` moved to ``target_day`` (times x columns, m3/m3)."""
    mine = readings.loc[(readings["site"] == SITE) & (readings["time"] >= source_day)
                        & (readings["time"] < source_day + pd.Timedelta(days=1))]
    wide = mine.assign(col=[column_name(d, s) for d, s in zip(mine["depth_cm"], mine["sensor"], strict=True)]
                       ).pivot_table(index="time", columns="col", values="vwc", aggfunc="first").sort_index()
    wide = wide.reindex(columns=COLUMNS)
    wide.index = wide.index - source_day + target_day
    return wide


def settle(path: Path) -> Path:
    """Date a file an hour back: fully uploaded, past the landing directory's settle time."""
    old = time.time() - 3600
    os.utime(path, (old, old))
    return path


def _render(landing: Path, name: str, wide: pd.DataFrame, day: pd.Timestamp) -> list[str]:
    """The lines of a good TOA5 file for ``wide`` (written by the demo's real writer, then renamed)."""
    path = write_toa5_file(landing, STATION, "Hourly", wide, day)
    lines = path.read_text().splitlines()
    path.unlink()
    return lines


def _write(landing: Path, name: str, data: bytes) -> Path:
    path = landing / name
    path.write_bytes(data)
    return settle(path)


def _join(lines: list[str]) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode()


def _cell(line: str, column: str, value: str) -> str:
    fields = line.split(",")
    fields[2 + COLUMNS.index(column)] = value
    return ",".join(fields)


def build(landing: Path, readings: pd.DataFrame, source_day: pd.Timestamp) -> dict[str, Case]:
    """Write every bad file into ``landing``; returns the cases by key."""
    landing.mkdir(parents=True, exist_ok=True)
    cases: dict[str, Case] = {}

    def add(key: str, offset_days: int, make: Callable[[list[str]], tuple[bytes, int]]) -> None:
        day = pd.Timestamp("2023-06-01", tz="UTC") + pd.Timedelta(days=offset_days)
        lines = _render(landing, key, wide_day(readings, source_day, day), day)
        data, records = make(lines)
        name = f"{STATION}_Hourly_{key}.dat"
        _write(landing, name, data)
        cases[key] = Case(name, day, records)

    def non_finite(lines: list[str]) -> tuple[bytes, int]:
        for i, cell in ((5, "inf"), (9, "1e999"), (14, "-Infinity")):
            lines[i] = _cell(lines[i], COLUMNS[i % len(COLUMNS)], cell)
        return _join(lines), len(lines) - HEADER_LINES

    def truncated(lines: list[str]) -> tuple[bytes, int]:
        data = _join(lines)
        cut = data[: int(len(data) * 0.6)]  # an upload cut off in the middle of a record
        return cut, cut.count(b"\n") - HEADER_LINES + 1

    def header_only(lines: list[str]) -> tuple[bytes, int]:
        return _join(lines[:HEADER_LINES]), 0

    def wrong_columns(lines: list[str]) -> tuple[bytes, int]:
        lines[1] = lines[1].replace("VWC_", "SWC_")  # a logger program nobody mapped
        return _join(lines), len(lines) - HEADER_LINES

    def percent(lines: list[str]) -> tuple[bytes, int]:
        lines[2] = lines[2].replace("m^3/m^3", "%")
        body = []
        for line in lines[HEADER_LINES:]:
            fields = line.split(",")
            body.append(",".join(fields[:2] + [f"{float(v) * 100:.2f}" if v != "NAN" else v for v in fields[2:]]))
        return _join(lines[:HEADER_LINES] + body), len(body)

    def non_utf8(lines: list[str]) -> tuple[bytes, int]:
        data = bytearray(_join(lines))
        at = data.index(b"CPU:soil")  # the logger program's name in the first header line (Latin-1)
        data[at + 3: at + 3] = b"\xe9\xff"
        spot = data.rindex(b",0.")  # and a value cell of the last record
        data[spot + 1: spot + 1] = b"\x80"
        return bytes(data), len(lines) - HEADER_LINES

    def duplicated_shuffled(lines: list[str]) -> tuple[bytes, int]:
        body = lines[HEADER_LINES:]
        body = body + body[:6]  # six records uploaded twice
        random.Random(22).shuffle(body)
        return _join(lines[:HEADER_LINES] + body), len(body)

    def future(lines: list[str]) -> tuple[bytes, int]:
        body = [line.replace('"2023-', '"2099-', 1) for line in lines[HEADER_LINES:]]
        return _join(lines[:HEADER_LINES] + body), len(body)

    add("nonfinite", 0, non_finite)
    add("truncated", 1, truncated)
    add("headeronly", 2, header_only)
    add("wrongcolumns", 3, wrong_columns)
    add("percent", 4, percent)
    add("nonutf8", 5, non_utf8)
    add("dupshuffled", 6, duplicated_shuffled)
    add("future", 7, future)
    cases["future"] = Case(cases["future"].name, cases["future"].day.replace(year=2099), cases["future"].data_lines)
    twice = landing / f"{STATION}_Hourly_twice.dat"
    add("twice", 8, lambda lines: (_join(lines), len(lines) - HEADER_LINES))
    copy = landing / f"{STATION}_Hourly_twice-renamed.dat"
    copy.write_bytes(twice.read_bytes())
    settle(copy)
    cases["twice-renamed"] = Case(copy.name, cases["twice"].day, cases["twice"].data_lines)
    return cases


def write_long(landing: Path, readings: pd.DataFrame, records: int, start: pd.Timestamp) -> Path:
    """One long upload of SITE (``records`` hourly records from ``start``): the simulated readings repeated,
    big enough that writing it to the database takes a noticeable while."""
    mine = readings.loc[readings["site"] == SITE]
    wide = mine.assign(col=[column_name(d, s) for d, s in zip(mine["depth_cm"], mine["sensor"], strict=True)]
                       ).pivot_table(index="time", columns="col", values="vwc", aggfunc="first").sort_index()
    wide = wide.reindex(columns=COLUMNS).dropna()
    repeats = -(-records // len(wide))
    long = pd.concat([wide] * repeats).iloc[:records]
    long.index = pd.date_range(start, periods=records, freq="h")
    return write_toa5_file(landing, STATION, "Hourly", long, start)
