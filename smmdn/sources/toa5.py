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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

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
    bad_times: int = 0  # records whose TIMESTAMP matched no configured format
    notes: list[str] = field(default_factory=list)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """A file's sha256, read block by block (for files refused before their bytes were streamed)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()


MAX_LINE_BYTES = 1 << 20  # a longer line is not a logger record: the file is refused, memory stays bounded
BLOCK_BYTES = 1 << 20  # read (and hashed) this much at a time


class Toa5Reader:
    """A TOA5 file read once, front to back: header first, then records in chunks of bounded size.

    Why: a logger file can be gigabytes. It is read block by block; every byte goes through the
    sha256 on the way (no second read to hash it), and only one chunk of records is held at a time.
    Each line is decoded as UTF-8, or as Latin-1 when it is not valid UTF-8 (a byte order mark at the
    start is dropped). A file that is not TOA5 raises ``SourceError`` (reject the whole file).
    """

    def __init__(self, stream: BinaryIO, where: str = "toa5") -> None:
        self.where = where
        self._stream = stream
        self._hash = hashlib.sha256()
        self._done = False
        self._row = 0
        self._rows = csv.reader(self._lines())
        head = []
        for _ in range(4):
            row = self._next()
            if row is None:
                raise SourceError(f"{where}: {len(head)} line(s); a TOA5 file has 4 header lines")
            head.append(row)
        env, fields = head[0], head[1]
        if not env or env[0] != "TOA5":
            raise SourceError(f"{where}: first field is {env[0] if env else ''!r}, not 'TOA5'")
        if not fields or fields[0] != "TIMESTAMP":
            raise SourceError(f"{where}: second header line must start with TIMESTAMP")
        if len(set(fields)) != len(fields):
            raise SourceError(f"{where}: duplicate field names in the header")
        self.environment = dict(zip(ENV_FIELDS, env, strict=False))
        self.fields, self.units, self.processing = fields, head[2], head[3]

    def _lines(self) -> Iterator[str]:
        carry = b""
        first = True
        while True:
            block = self._stream.read(BLOCK_BYTES)
            if block:
                self._hash.update(block)
            data = carry + block
            parts = data.splitlines(keepends=True)
            carry = parts.pop() if parts and block else b""
            if len(carry) > MAX_LINE_BYTES:
                raise SourceError(f"{self.where}: a line longer than {MAX_LINE_BYTES} bytes; not a TOA5 text file")
            for part in parts:
                if first and part.startswith(b"\xef\xbb\xbf"):
                    part = part[3:]
                first = False
                try:
                    text = part.decode("utf-8")
                except UnicodeDecodeError:
                    text = part.decode("latin-1")
                if "\x00" in text:
                    raise SourceError(f"{self.where}: binary content (NUL bytes); not a TOA5 text file")
                yield text
            if not block:
                self._done = True
                return

    def _next(self) -> list[str] | None:
        try:
            row = next(self._rows, None)
        except csv.Error as exc:
            raise SourceError(f"{self.where}: not CSV: {exc}") from exc
        if row is not None:
            self._row += 1
        return row

    def chunks(self, records: int) -> Iterator[Toa5File]:
        """The records in files of at most ``records`` each (header facts repeated), blank lines skipped.

        At least one file is yielded, empty for a header-only file.
        """
        size = max(1, int(records))
        yielded = False
        while True:
            chunk: list[list[str]] = []
            numbers: list[int] = []
            while len(chunk) < size:
                row = self._next()
                if row is None:
                    break
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                chunk.append(row)
                numbers.append(self._row)
            if chunk or not yielded:
                yielded = True
                yield Toa5File(self.environment, self.fields, self.units, self.processing, chunk, numbers)
            if len(chunk) < size:
                return

    def header(self) -> Toa5File:
        """The header facts as a file without records (what ``find_site`` reads)."""
        return Toa5File(self.environment, self.fields, self.units, self.processing, [], [])

    def close(self) -> None:
        """Close the underlying stream."""
        self._stream.close()

    @property
    def exhausted(self) -> bool:
        """True when every byte has been read (``sha256`` is then the file's)."""
        return self._done

    def sha256(self) -> str:
        """The sha256 of the whole file: the rest is read (and hashed, not kept) if it was not yet."""
        while not self._done:
            block = self._stream.read(BLOCK_BYTES)
            if not block:
                self._done = True
            else:
                self._hash.update(block)
        return self._hash.hexdigest()


def parse_toa5(data: bytes, where: str = "toa5") -> Toa5File:
    """Read the header and every record of an in-memory file (the same reader as streamed files)."""
    reader = Toa5Reader(io.BytesIO(data), where)
    records: list[list[str]] = []
    numbers: list[int] = []
    for chunk in reader.chunks(1 << 62):
        records.extend(chunk.records)
        numbers.extend(chunk.line_numbers)
    return Toa5File(reader.environment, reader.fields, reader.units, reader.processing, records, numbers,
                    reader.sha256())


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
    silent. A zone in the text is refused too: the registry's ``utc_offset_hours`` says the zone. Times
    pandas cannot hold (within a day of its limits, so the UTC offset cannot overflow) are refused too.
    """
    for fmt in formats:
        try:
            stamp = pd.Timestamp(datetime.strptime(text, fmt))
        except ValueError:
            continue
        if not _IN_RANGE[0] <= stamp <= _IN_RANGE[1]:
            raise ValueError(text)
        return stamp
    raise ValueError(text)


_IN_RANGE = (pd.Timestamp.min + pd.Timedelta(days=1), pd.Timestamp.max - pd.Timedelta(days=1))


def _parse_times(stamps: list[str], formats: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``parse_timestamp`` for many stamps at once → (datetime64[ns] values, parsed mask).

    Why exact: per format, pandas parses the column and a value is taken only where formatting it back
    gives the text again (a canonical spelling, which ``strptime`` reads the same way); every other
    stamp is read by ``strptime`` itself with that format before the next format is tried, so the
    first matching format wins exactly as in ``parse_timestamp``.
    """
    n = len(stamps)
    values = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
    ok = np.zeros(n, dtype=bool)
    texts = pd.Series(stamps, dtype=object)
    for fmt in formats:
        todo = np.flatnonzero(~ok)
        if not len(todo):
            break
        sub = texts.iloc[todo]
        parsed = pd.to_datetime(sub, format=fmt, errors="coerce")
        exact = (parsed.notna() & (_canonical(parsed, fmt) == sub)).to_numpy()
        exact &= ((parsed >= _IN_RANGE[0]) & (parsed <= _IN_RANGE[1])).to_numpy()
        values[todo[exact]] = parsed.to_numpy()[exact]
        ok[todo[exact]] = True
        for i in todo[~exact]:
            try:
                stamp = pd.Timestamp(datetime.strptime(stamps[i], fmt))
            except ValueError:
                continue
            if _IN_RANGE[0] <= stamp <= _IN_RANGE[1]:
                values[i], ok[i] = stamp.to_datetime64(), True
    return values, ok


def _canonical(parsed: pd.Series, fmt: str) -> pd.Series:
    """``parsed`` written back in ``fmt`` (numpy's fast ISO writer for the Campbell default format)."""
    if fmt != "%Y-%m-%d %H:%M:%S":
        return parsed.dt.strftime(fmt)
    text = np.datetime_as_string(parsed.to_numpy("datetime64[s]"), unit="s")
    return pd.Series(np.char.replace(text, "T", " ", count=1), index=parsed.index, dtype=object)


def _floats(cells: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cells as floats with Python's ``float`` → (values, missing mask, unusable mask: not a number or not finite)."""
    n = len(cells)
    missing = np.fromiter((c in MISSING for c in cells), dtype=bool, count=n)
    try:
        values = np.fromiter(map(float, ("nan" if m else c for c, m in zip(cells, missing, strict=True))),
                             dtype=np.float64, count=n)
        unusable = np.zeros(n, dtype=bool)
    except ValueError:  # some cell is not a number: find which, one by one
        values = np.full(n, np.nan)
        unusable = np.zeros(n, dtype=bool)
        for i, cell in enumerate(cells):
            if missing[i]:
                continue
            try:
                values[i] = float(cell)
            except ValueError:
                unusable[i] = True
    unusable |= ~missing & ~np.isfinite(values)
    return values, missing, unusable


def _bad_record(row: list[str], line: int, site: str, spec: Toa5Source, index: dict[str, int],
                offset: pd.Timedelta) -> tuple[dict[str, object], bool]:
    """Why one record (of the right length) cannot be stored → (quarantine row, its TIMESTAMP was unreadable)."""
    raw = ",".join(row)
    try:
        local = parse_timestamp(row[0].strip(), spec.timestamp_formats)
    except (ValueError, TypeError):
        return {"site": site, "line": line, "raw": raw,
                "reason": f"unparseable TIMESTAMP {row[0]!r} (expected {' or '.join(spec.timestamp_formats)})"}, True
    problem = "unreadable record"
    for col in spec.columns:
        cell = row[index[col]].strip()
        if cell in MISSING:
            continue
        try:
            value = float(cell)
        except ValueError:
            problem = f"non-numeric {col}={cell!r}"
            break
        if not math.isfinite(value):
            problem = f"non-finite {col}={cell!r}"
            break
    return {"site": site, "line": line, "raw": raw, "time": local - offset, "reason": problem}, False


def to_observations(file: Toa5File, site: str, spec: Toa5Source, where: str = "toa5",
                    refuse_unreadable_times: bool = True) -> Toa5Batch:
    """Map configured columns to canonical rows; broken records go to ``bad_rows`` with a reason.

    Non-finite values (INF, Infinity, 1e999) are broken records, not missing ones: a logger writes INF
    for an over-range reading, and that must be seen in quarantine rather than silently dropped.
    A file none of whose TIMESTAMPs matches the configured formats is rejected whole (``InputError``);
    a streamed file passes ``refuse_unreadable_times=False`` per chunk and judges the sum of ``bad_times``.
    Whole columns are converted at once; only suspect records are looked at one by one.
    """
    absent = [c for c in spec.columns if c not in file.fields]
    if absent:
        raise SourceError(f"{where}: mapped column(s) {', '.join(absent)} not in the file header")
    index = {name: i for i, name in enumerate(file.fields)}
    offset = pd.Timedelta(hours=spec.utc_offset_hours)
    rows, width = file.records, len(file.fields)
    whole = np.fromiter((len(r) == width for r in rows), dtype=bool, count=len(rows))
    good = np.flatnonzero(whole)
    times, timed = _parse_times([rows[i][0].strip() for i in good], spec.timestamp_formats)
    suspect = ~timed
    columns: dict[str, np.ndarray] = {}
    for col in spec.columns:
        j = index[col]
        values, _, unusable = _floats([rows[i][j].strip() for i in good])
        columns[col] = values
        suspect |= unusable
    bad: list[tuple[int, dict[str, object]]] = []
    for i in np.flatnonzero(~whole):
        row = rows[i]
        bad.append((int(i), {"site": site, "line": file.line_numbers[i], "raw": ",".join(row),
                             "reason": f"record has {len(row)} fields, header has {width}"}))
    bad_times = 0
    for k in np.flatnonzero(suspect):
        i = int(good[k])
        entry, unreadable_time = _bad_record(rows[i], file.line_numbers[i], site, spec, index, offset)
        bad.append((i, entry))
        bad_times += unreadable_time
    if refuse_unreadable_times and file.records and bad_times == len(file.records):
        raise unreadable_times_error(file.records[0][0], file.line_numbers, spec, where)
    keep_rows = ~suspect
    utc = (pd.DatetimeIndex(times[keep_rows]) - offset).tz_localize("UTC")
    parts, missing = [], 0
    for col, mapping in spec.columns.items():
        vals = columns[col][keep_rows]
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
    bad_frame = pd.DataFrame([entry for _, entry in sorted(bad, key=lambda b: b[0])],
                             columns=["site", "line", "raw", "time", "reason"])
    if not bad_frame.empty:
        bad_frame["time"] = pd.to_datetime(bad_frame["time"]).dt.tz_localize("UTC") if bad_frame[
            "time"].notna().any() else bad_frame["time"]
    return Toa5Batch(site, obs, bad_frame, missing, bad_times=bad_times)


def unreadable_times_error(first: str, lines: list[int], spec: Toa5Source, where: str) -> InputError:
    """The error for a file none of whose TIMESTAMPs matches the configured formats."""
    return InputError(
        f"no TIMESTAMP matches the expected format (first: {first!r})", where=where,
        column="TIMESTAMP", rows=lines[:10],
        fix=f"write times as {spec.timestamp_formats[0]} at the logger, or set sources.toa5.timestamp_formats "
            "for this station in the registry")


def open_logger_file(path: Path, registry: Registry) -> tuple[Toa5Reader, Site, Toa5Source]:
    """Open a landing file for streaming: its header read and mapped to a registry site (``SourceError``
    rejects the whole file). The caller closes it (``reader.close()``)."""
    handle = path.open("rb")
    try:
        reader = Toa5Reader(handle, where=str(path))
        site, spec = find_site(reader.header(), registry, str(path))
    except BaseException:
        handle.close()
        raise
    return reader, site, spec


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
