"""PostgreSQL binary COPY payloads built with numpy, a block of rows at a time.

psycopg's ``Copy.write_row`` converts one Python value at a time (~50k forecast rows/s here); this
encoder lays rows out as rows of numpy byte matrices instead, many times faster, one block at a time
while the stream is written (``Payload``). Text makes records
variable in length, so rows are grouped by the byte lengths of their text values: inside a group
every record has the same layout. Row order inside a COPY carries no meaning, so grouping is free.

Only what the bulk writers need is supported: float8/float4/int4/int8/bool/text/timestamptz scalars
and fixed-length 1-D ``float4[]`` arrays assembled from K float columns. ``encode`` returns ``None``
for anything else (a NULL, an unknown type) and the caller falls back to ``write_row``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER = struct.pack(">h", -1)
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z in µs since the Unix epoch
_FLOAT4_OID = 700
_FIXED = {"float8": ">f8", "float4": ">f4", "int4": ">i4", "int8": ">i8", "bool": "u1", "timestamptz": ">i8"}


@dataclass(frozen=True)
class Field:
    """One COPY column: its PostgreSQL type and the frame column(s) it is built from.

    ``float4[]`` takes K source columns (a fixed-length array per row); every other type takes one.
    """

    name: str
    pg_type: str
    sources: tuple[str, ...]


def _scalar(frame: pd.DataFrame, field: Field) -> np.ndarray | None:
    series = frame[field.sources[0]]
    if series.isna().any():
        return None
    if field.pg_type == "timestamptz":
        if not isinstance(series.dtype, pd.DatetimeTZDtype):
            return None
        micros = series.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[us]").astype(np.int64)
        return micros - _PG_EPOCH_US
    if field.pg_type == "bool":
        return series.to_numpy(dtype=bool).astype(np.uint8)
    if field.pg_type in ("int4", "int8"):
        if not pd.api.types.is_integer_dtype(series.dtype):
            return None
        return series.to_numpy(dtype=np.int64)
    if not pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
        return None
    return series.to_numpy(dtype=np.float64)


def _text(frame: pd.DataFrame, field: Field) -> tuple[np.ndarray, list[bytes]] | None:
    """Factorised text: per-row codes and the UTF-8 bytes of each distinct value (None on a missing value:
    ``factorize`` codes it -1, so no separate ``isna`` pass is needed)."""
    codes, uniques = pd.factorize(frame[field.sources[0]], sort=False)
    if len(codes) and codes.min() < 0:
        return None
    return codes, [str(u).encode("utf-8") for u in uniques]


def _be_bytes(values: np.ndarray, be: str) -> np.ndarray:
    """(m,) values -> (m, itemsize) bytes in network order."""
    out = np.ascontiguousarray(values, dtype=np.dtype(be))
    return out.view(np.uint8).reshape(len(out), -1)


BLOCK_ROWS = 8192  # records per buffer: a few MB, cache-sized, and the server ingests one while the next is built


class Payload:
    """A binary COPY stream, built block by block while it is iterated (iterate it again to resend it).

    Why lazily: written to ``COPY`` as it is produced, the client encodes block i + 1 while the server
    parses block i, so encoding costs almost nothing next to the server's own work; only the values were
    checked up front (``encode`` returns ``None`` before anything is sent when one cannot be encoded).
    """

    def __init__(self, n: int, fields: Sequence[Field], scalars: dict[str, np.ndarray],
                 texts: dict[str, tuple[np.ndarray, list[bytes]]], arrays: dict[str, np.ndarray]) -> None:
        self.n, self.fields, self.scalars, self.texts, self.arrays = n, list(fields), scalars, texts, arrays

    def __iter__(self) -> Iterator[bytes | memoryview]:
        yield SIGNATURE
        if self.n:
            yield from self._records()
        yield TRAILER

    def _groups(self) -> tuple[list[np.ndarray | slice], dict[str, np.ndarray]]:
        """Rows grouped by the tuple of their text lengths (one fixed record layout per group), and each
        row's length per text field."""
        lengths = {t: np.array([len(b) for b in u], dtype=np.int64)[codes] for t, (codes, u) in self.texts.items()}
        combined = np.zeros(self.n, dtype=np.int64)
        for per_row in lengths.values():  # one integer per length tuple (a mixed-radix number)
            combined = combined * (int(per_row.max()) + 1) + per_row
        if (combined == combined[0]).all():
            return [slice(0, self.n)], lengths
        order = np.argsort(combined, kind="stable")
        return list(np.split(order, np.flatnonzero(np.diff(combined[order])) + 1)), lengths

    def _layout(self, text_len: dict[str, int]) -> tuple[np.ndarray, list[tuple[int, Field, int]]]:
        """A group's template record (everything but the values) and where each value goes."""
        template = bytearray(struct.pack(">h", len(self.fields)))
        places: list[tuple[int, Field, int]] = []  # (byte offset, field, size or array element index)
        for field in self.fields:
            if field.pg_type == "float4[]":
                k = len(field.sources)
                template += struct.pack(">i5i", 20 + 8 * k, 1, 0, _FLOAT4_OID, k, 1)
                for j in range(k):
                    template += struct.pack(">i", 4)
                    places.append((len(template), field, j))
                    template += bytes(4)
                continue
            size = text_len[field.name] if field.pg_type == "text" else np.dtype(_FIXED[field.pg_type]).itemsize
            template += struct.pack(">i", size)
            places.append((len(template), field, size))
            template += bytes(size)
        return np.frombuffer(bytes(template), np.uint8), places

    def _records(self) -> Iterator[memoryview]:
        groups, lengths = self._groups()
        tables = {}  # per text field: its distinct values as a NUL-padded byte table
        for name, (_, uniques) in self.texts.items():
            width = max(max(len(u) for u in uniques), 1)
            tables[name] = np.frombuffer(b"".join(u.ljust(width, b"\0") for u in uniques), np.uint8).reshape(-1, width)
        for group in groups:
            first = group.start if isinstance(group, slice) else int(group[0])
            template, places = self._layout({t: int(per_row[first]) for t, per_row in lengths.items()})
            size = (group.stop - group.start) if isinstance(group, slice) else len(group)
            for a in range(0, size, BLOCK_ROWS):
                b = min(a + BLOCK_ROWS, size)
                rows = slice(group.start + a, group.start + b) if isinstance(group, slice) else group[a:b]
                records = np.empty((b - a, len(template)), dtype=np.uint8)
                records[:] = template
                for offset, field, extra in places:
                    if field.pg_type == "text":
                        if extra:
                            records[:, offset : offset + extra] = tables[field.name][self.texts[field.name][0][rows],
                                                                                     :extra]
                    elif field.pg_type == "float4[]":
                        records[:, offset : offset + 4] = _be_bytes(self.arrays[field.name][rows, extra], ">f4")
                    else:
                        records[:, offset : offset + extra] = _be_bytes(self.scalars[field.name][rows],
                                                                        _FIXED[field.pg_type])
                yield memoryview(records).cast("B")


def encode(frame: pd.DataFrame, fields: Sequence[Field]) -> Payload | None:
    """The binary COPY stream for ``frame`` (signature, records, trailer; see ``Payload``), or ``None`` when
    some value cannot be encoded here.

    Why a byte matrix: a block's records are the rows of one ``(m, record_bytes)`` uint8 array; what is the
    same in every record (field count, lengths, array headers) is laid down by one broadcast of a template
    record, then each value column is written as its big-endian bytes into its byte columns: several times
    faster than assigning the fields of a packed big-endian structured dtype.
    """
    scalars: dict[str, np.ndarray] = {}
    texts: dict[str, tuple[np.ndarray, list[bytes]]] = {}
    arrays: dict[str, np.ndarray] = {}
    for field in fields:
        if field.pg_type == "text":
            encoded = _text(frame, field)
            if encoded is None:
                return None
            texts[field.name] = encoded
        elif field.pg_type == "float4[]":
            block = frame[list(field.sources)].to_numpy(dtype=np.float64)
            if np.isnan(block).any():
                return None
            arrays[field.name] = block
        elif field.pg_type in _FIXED and len(field.sources) == 1:
            values = _scalar(frame, field)
            if values is None:
                return None
            scalars[field.name] = values
        else:
            return None
    return Payload(len(frame), fields, scalars, texts, arrays)
