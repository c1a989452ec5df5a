"""Campbell Scientific TOA5 logger files dropped into the landing directory.

Layout: line 1 environment (``"TOA5",station,model,serial,os,program,signature,table``), line 2 field
names, line 3 units, line 4 processing; then CSV records. ``"NAN"`` is missing. ``TIMESTAMP`` is the
logger's clock (local time without zone): the registry gives its UTC offset per logger.

Why rows and files are handled separately: a file that cannot be read at all (not TOA5, no mapping) is
rejected whole and moved aside with its reason; a readable file with a few broken records keeps the good
records and sends the broken ones to quarantine, so nothing is lost and nothing is read twice.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from smmdn.errors import InputError, SourceError
from smmdn.registry import Registry, Site, Toa5Source

MISSING = {"NAN", "NaN", "nan", ""}  # what a logger writes for "no value"; INF (over-range) is quarantined
ENV_FIELDS = ("format", "station", "model", "serial", "os", "program", "signature", "table")


@dataclass
class Toa5File:
    """A parsed TOA5 file: header facts plus raw records (strings) with their file line numbers."""

    environment: dict[str, str]
    fields: list[str]
    units: list[str]
    processing: list[str]
    records: list[list[str]]
    line_numbers: list[int]
    sha256: str = ""


@dataclass
class Toa5Batch:
    """What one file yields: canonical observations and the rows that could not be read (with reasons)."""

    site: str
    observations: pd.DataFrame
    bad_rows: pd.DataFrame
    missing_values: int = 0
    notes: list[str] = field(default_factory=list)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_toa5(data: bytes, where: str = "toa5") -> Toa5File:
    """Read the header and records; a file that is not TOA5 raises ``SourceError`` (reject whole file)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode("latin-1")
        except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes any byte
            raise SourceError(f"{where}: undecodable file: {exc}") from exc
    if "\x00" in text:
        raise SourceError(f"{where}: binary content (NUL bytes); not a TOA5 text file")
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise SourceError(f"{where}: not CSV: {exc}") from exc
    if len(rows) < 4:
        raise SourceError(f"{where}: {len(rows)} line(s); a TOA5 file has 4 header lines")
    env = rows[0]
    if not env or env[0] != "TOA5":
        raise SourceError(f"{where}: first field is {env[0] if env else ''!r}, not 'TOA5'")
    fields = rows[1]
    if not fields or fields[0] != "TIMESTAMP":
        raise SourceError(f"{where}: second header line must start with TIMESTAMP")
    if len(set(fields)) != len(fields):
        raise SourceError(f"{where}: duplicate field names in the header")
    environment = dict(zip(ENV_FIELDS, env, strict=False))
    records, numbers = [], []
    for i, row in enumerate(rows[4:], start=5):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        records.append(row)
        numbers.append(i)
    return Toa5File(environment, fields, rows[2], rows[3], records, numbers, sha256_bytes(data))


def find_site(file: Toa5File, registry: Registry, where: str) -> tuple[Site, Toa5Source]:
    """The registry site whose ``toa5`` block names this file's station (and table, when given)."""
    station = file.environment.get("station", "")
    table = file.environment.get("table", "")
    matches = [
        (s, s.sources.toa5)
        for s in registry.sites
        if s.sources.toa5 is not None
        and s.sources.toa5.station == station
        and (s.sources.toa5.table is None or s.sources.toa5.table == table)
    ]
    if not matches:
        raise SourceError(
            f"{where}: no registry site maps TOA5 station {station!r} table {table!r}; "
            "add a sources.toa5 block to the registry"
        )
    if len(matches) > 1:
        raise SourceError(f"{where}: TOA5 station {station!r} is mapped by several sites")
    return matches[0]  # type: ignore[return-value]


def parse_timestamp(text: str, formats: Sequence[str]) -> pd.Timestamp:
    """The logger's local time, read by one of ``formats`` exactly (``ValueError`` otherwise).

    Why strict: free-form parsing accepts '18/04/2024 02:00' and guesses day and month; a wrong guess is
    silent. A zone in the text is refused too: the registry's ``utc_offset_hours`` says the zone.
    """
    for fmt in formats:
        try:
            return pd.Timestamp(datetime.strptime(text, fmt))
        except ValueError:
            continue
    raise ValueError(text)


def to_observations(file: Toa5File, site: str, spec: Toa5Source, where: str = "toa5") -> Toa5Batch:
    """Map configured columns to canonical rows; broken records go to ``bad_rows`` with a reason.

    Non-finite values (INF, Infinity, 1e999) are broken records, not missing ones: a logger writes INF
    for an over-range reading, and that must be seen in quarantine rather than silently dropped.
    A file none of whose TIMESTAMPs matches the configured formats is rejected whole (``InputError``).
    """
    absent = [c for c in spec.columns if c not in file.fields]
    if absent:
        raise SourceError(f"{where}: mapped column(s) {', '.join(absent)} not in the file header")
    index = {name: i for i, name in enumerate(file.fields)}
    offset = pd.Timedelta(hours=spec.utc_offset_hours)
    good_time: list[pd.Timestamp] = []
    good_vals: dict[str, list[float]] = {c: [] for c in spec.columns}
    bad: list[dict[str, object]] = []
    missing = bad_times = 0
    for row, line in zip(file.records, file.line_numbers, strict=True):
        raw = ",".join(row)
        if len(row) != len(file.fields):
            bad.append({"site": site, "line": line, "raw": raw,
                        "reason": f"record has {len(row)} fields, header has {len(file.fields)}"})
            continue
        try:
            local = parse_timestamp(row[0].strip(), spec.timestamp_formats)
        except (ValueError, TypeError):
            bad.append({"site": site, "line": line, "raw": raw,
                        "reason": f"unparseable TIMESTAMP {row[0]!r} (expected {' or '.join(spec.timestamp_formats)})"})
            bad_times += 1
            continue
        values: dict[str, float] = {}
        problem = None
        for col in spec.columns:
            cell = row[index[col]].strip()
            if cell in MISSING:
                values[col] = np.nan
                continue
            try:
                values[col] = float(cell)
            except ValueError:
                problem = f"non-numeric {col}={cell!r}"
                break
            if not math.isfinite(values[col]):
                problem = f"non-finite {col}={cell!r}"
                break
        if problem:
            bad.append({"site": site, "line": line, "raw": raw, "time": local - offset,
                        "reason": problem})
            continue
        good_time.append(local - offset)
        for col, value in values.items():
            good_vals[col].append(value)
    if file.records and bad_times == len(file.records):
        raise InputError(
            f"no TIMESTAMP matches the expected format (first: {file.records[0][0]!r})", where=where,
            column="TIMESTAMP", rows=file.line_numbers[:10],
            fix=f"write times as {spec.timestamp_formats[0]} at the logger, or set sources.toa5.timestamp_formats "
                "for this station in the registry")
    parts = []
    times = pd.DatetimeIndex(good_time, tz=None)
    utc = times.tz_localize("UTC") if len(times) else pd.DatetimeIndex([], tz="UTC")
    for col, mapping in spec.columns.items():
        vals = np.asarray(good_vals[col], dtype=np.float64)
        if mapping.unit == "percent":
            vals = vals / 100.0
        keep = ~np.isnan(vals)
        missing += int((~keep).sum())
        parts.append(pd.DataFrame({"time": utc[keep], "site": site, "depth_cm": float(mapping.depth_cm),
                                   "sensor": mapping.sensor, "vwc": vals[keep]}))
    obs = pd.concat(parts, ignore_index=True)
    obs["site"] = obs["site"].astype("string")
    obs["sensor"] = obs["sensor"].astype("string")
    obs["time"] = pd.to_datetime(obs["time"], utc=True)
    bad_frame = pd.DataFrame(bad, columns=["site", "line", "raw", "time", "reason"])
    if not bad_frame.empty:
        bad_frame["time"] = pd.to_datetime(bad_frame["time"]).dt.tz_localize("UTC") if bad_frame[
            "time"].notna().any() else bad_frame["time"]
    return Toa5Batch(site, obs, bad_frame, missing)


def read_logger_file(path: Path, registry: Registry) -> tuple[str, Toa5Batch]:
    """Parse one landing file: (sha256, batch). ``SourceError`` means reject the whole file."""
    data = path.read_bytes()
    file = parse_toa5(data, where=str(path))
    site, spec = find_site(file, registry, str(path))
    return file.sha256, to_observations(file, site.id, spec, where=str(path))


def landing_files(landing: Path, settle_s: float = 0.0, now: float | None = None) -> list[Path]:
    """Candidate files at the top of the landing directory (sub-folders hold processed/rejected).

    Files changed in the last ``settle_s`` seconds may still be uploading and wait for the next run;
    hidden, ``.part`` and ``.tmp`` files are never read.
    """
    import time

    if not landing.exists():
        return []
    now = time.time() if now is None else now
    out = []
    for p in landing.iterdir():
        if not p.is_file() or p.name.startswith(".") or p.suffix in (".part", ".tmp"):
            continue
        if p.name.endswith(".reason.txt"):
            continue
        try:
            if now - p.stat().st_mtime < settle_s:
                continue
        except OSError:
            continue
        out.append(p)
    return sorted(out)
