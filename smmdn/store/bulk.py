"""Idempotent bulk upserts: one code path per backend, both "stage, then merge".

PostgreSQL: psycopg binary ``COPY`` into a temporary table, then one ``INSERT … ON CONFLICT DO UPDATE``
that only touches rows whose values changed, counting inserts and updates with ``xmax = 0``.
SQLite: executemany into a temporary table, counts by join, then the same ``INSERT … ON CONFLICT``.
Everything runs on the caller's connection, so a failure rolls the whole batch back.

``upsert_frame`` is the fast lane for big frames on PostgreSQL: the COPY payload is built by numpy
(``pgcopy``), and when the caller's probe proves that no key of the batch can exist yet (a new forecast
issue), the rows are copied straight into the table: the merge would only have re-checked every key
to insert them all. A concurrent writer that got there first makes that COPY fail on the unique key;
its savepoint is rolled back and the batch goes through the merge, so the result is the same.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from smmdn.store import pgcopy
from smmdn.store.frames import rows_of, to_python

_tmp_counter = itertools.count()


@dataclass(frozen=True)
class WriteResult:
    """Rows new to the table, rows whose values changed, rows identical to what was stored."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0

    @property
    def written(self) -> int:
        return self.inserted + self.updated

    def __add__(self, other: WriteResult) -> WriteResult:
        return WriteResult(
            self.inserted + other.inserted, self.updated + other.updated, self.unchanged + other.unchanged
        )


_PG_COPY_TYPES = {
    "float": "float8",
    "double precision": "float8",
    "real": "float4",
    "real[]": "float4[]",
    "integer": "int4",
    "bigint": "int8",
    "boolean": "bool",
    "text": "text",
    "jsonb": "jsonb",
    "timestamp with time zone": "timestamptz",
}


def _pg_type(column: sa.Column) -> str:
    """The type name psycopg's binary COPY needs for ``column``."""
    compiled = column.type.compile(dialect=postgresql.dialect()).lower()
    return _PG_COPY_TYPES.get(compiled, compiled)


def _clean(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def upsert_rows(
    conn: sa.Connection,
    table: sa.Table,
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
    key: Sequence[str],
    compare: Sequence[str],
    touch: Sequence[str] = (),
    arrays: dict[str, Sequence[str]] | None = None,
) -> WriteResult:
    """Insert new keys, update rows whose ``compare`` columns differ (and then also ``touch``).

    ``rows`` are tuples in ``columns`` order with Python values (UTC-aware datetimes, lists, dicts).
    ``arrays`` (PostgreSQL only) maps an array column of ``table`` to scalar ``real`` staging columns
    named in ``columns``: COPY of scalars is several times cheaper than of Python lists, and the array
    is assembled by the server during the merge.
    """
    rows = list(rows)
    if not rows:
        return WriteResult()
    tmp = f"tmp_{table.name}_{next(_tmp_counter)}"
    if conn.dialect.name == "postgresql":
        return _upsert_postgres(conn, table, tmp, columns, rows, key, compare, touch, arrays or {})
    if arrays:
        raise ValueError("scalar-to-array staging is PostgreSQL only: pass list values on SQLite")
    return _upsert_sqlite(conn, table, tmp, columns, rows, key, compare, touch)


def upsert_frame(
    conn: sa.Connection,
    table: sa.Table,
    frame: pd.DataFrame,
    columns: Sequence[str],
    key: Sequence[str],
    compare: Sequence[str],
    arrays: dict[str, Sequence[str]] | None = None,
    fresh_probe: sa.Select | None = None,
) -> WriteResult:
    """``upsert_rows`` for a checked frame whose ``columns`` are table columns; ``arrays`` maps an array
    column to the K frame columns that make it.

    ``fresh_probe`` is a query that returns true when some row of the table *may* share a key with
    the batch; when it returns false the batch is copied straight in (see the module docstring).
    """
    arrays = dict(arrays or {})
    if frame.empty:
        return WriteResult()
    scalars = [c for c in columns if c not in arrays]
    if conn.dialect.name != "postgresql":
        listed = frame.assign(
            **{name: frame[list(parts)].to_numpy(np.float32).tolist() for name, parts in arrays.items()}
        )
        return upsert_rows(conn, table, columns, rows_of(listed, columns), key, compare)
    fields = [pgcopy.Field(c, _pg_type(table.c[c]), (c,)) for c in scalars]
    fields += [pgcopy.Field(name, "float4[]", tuple(parts)) for name, parts in arrays.items()]
    payload = pgcopy.encode(frame, fields)
    names = [f.name for f in fields]
    if payload is None:  # NULLs or unusual types: psycopg converts row by row
        staged = scalars + [c for parts in arrays.values() for c in parts]
        return upsert_rows(conn, table, staged, rows_of(frame, staged), key, compare, arrays=arrays)
    raw = conn.connection.driver_connection
    if fresh_probe is not None and not conn.execute(fresh_probe).scalar():
        try:
            with conn.begin_nested():
                _copy(raw, table.name, names, payload)
            return WriteResult(inserted=len(frame))
        except psycopg.errors.UniqueViolation:
            pass  # a concurrent writer inserted some of these keys meanwhile: merge instead
    tmp = f"tmp_{table.name}_{next(_tmp_counter)}"
    conn.execute(sa.text(f"CREATE TEMP TABLE {tmp} (LIKE {table.name} INCLUDING DEFAULTS) ON COMMIT DROP"))
    _copy(raw, tmp, names, payload)
    inserted, updated = conn.execute(sa.text(_counted(_merge_sql(table, tmp, names, key, compare, (), "pg")))).one()
    conn.execute(sa.text(f"DROP TABLE {tmp}"))
    return WriteResult(inserted, updated, len(frame) - inserted - updated)


def _copy(raw: psycopg.Connection, target: str, names: Sequence[str], payload: Iterable[bytes | memoryview]) -> None:
    with raw.cursor() as cur, cur.copy(f"COPY {target} ({', '.join(names)}) FROM STDIN (FORMAT BINARY)") as copy:
        for chunk in payload:
            copy.write(chunk)


def _counted(merge: str) -> str:
    """The merge wrapped to return (inserted, updated): a new row's ``xmax`` is 0."""
    return (
        f"WITH merged AS ({merge} RETURNING (xmax = 0) AS is_new) "
        "SELECT count(*) FILTER (WHERE is_new), count(*) FILTER (WHERE NOT is_new) FROM merged"
    )


def _merge_sql(table: sa.Table, tmp: str, columns, key, compare, touch, distinct_op: str, arrays=None) -> str:
    arrays = arrays or {}
    staged = {c for parts in arrays.values() for c in parts}
    targets = [c for c in columns if c not in staged] + list(arrays)
    select = ", ".join(
        [c for c in columns if c not in staged] + [f"ARRAY[{', '.join(parts)}]::real[]" for parts in arrays.values()]
    )
    cols = ", ".join(targets)
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in (*compare, *touch))
    if distinct_op == "pg":
        changed = (
            f"({', '.join(f'{table.name}.{c}' for c in compare)}) IS DISTINCT FROM "
            f"({', '.join(f'EXCLUDED.{c}' for c in compare)})"
        )
        if len(compare) == 1:
            changed = f"{table.name}.{compare[0]} IS DISTINCT FROM EXCLUDED.{compare[0]}"
    else:
        changed = " OR ".join(f"{table.name}.{c} IS NOT EXCLUDED.{c}" for c in compare)
    return (
        f"INSERT INTO {table.name} ({cols}) SELECT {select} FROM {tmp} WHERE true "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets} WHERE {changed}"
    )


def _upsert_postgres(conn, table, tmp, columns, rows, key, compare, touch, arrays) -> WriteResult:
    staged = [c for parts in arrays.values() for c in parts]
    conn.execute(sa.text(f"CREATE TEMP TABLE {tmp} (LIKE {table.name} INCLUDING DEFAULTS) ON COMMIT DROP"))
    if staged:
        changes = [f"DROP COLUMN {name}" for name in arrays] + [f"ADD COLUMN {c} real" for c in staged]
        conn.execute(sa.text(f"ALTER TABLE {tmp} " + ", ".join(changes)))
    raw = conn.connection.driver_connection
    types = ["float4" if c in staged else _pg_type(table.c[c]) for c in columns]
    with (
        raw.cursor() as cur,
        cur.copy(f"COPY {tmp} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)
    merged = _merge_sql(table, tmp, columns, key, compare, touch, "pg", arrays)
    inserted, updated = conn.execute(sa.text(_counted(merged))).one()
    conn.execute(sa.text(f"DROP TABLE {tmp}"))
    return WriteResult(inserted, updated, len(rows) - inserted - updated)


def _upsert_sqlite(conn, table, tmp, columns, rows, key, compare, touch) -> WriteResult:
    staging = sa.Table(tmp, sa.MetaData(), *(sa.Column(c, table.c[c].type) for c in columns), prefixes=["TEMPORARY"])
    staging.create(conn)
    conn.execute(staging.insert(), [dict(zip(columns, map(_clean, row), strict=True)) for row in rows])
    join = " AND ".join(f"t.{k} = s.{k}" for k in key)
    inserted = conn.execute(
        sa.text(f"SELECT count(*) FROM {tmp} s LEFT JOIN {table.name} t ON {join} WHERE t.{key[0]} IS NULL")
    ).scalar_one()
    differs = " OR ".join(f"t.{c} IS NOT s.{c}" for c in compare)
    updated = conn.execute(
        sa.text(f"SELECT count(*) FROM {tmp} s JOIN {table.name} t ON {join} WHERE {differs}")
    ).scalar_one()
    conn.execute(sa.text(_merge_sql(table, tmp, columns, key, compare, touch, "sqlite")))
    staging.drop(conn)
    return WriteResult(inserted, updated, len(rows) - inserted - updated)


def copy_frame(conn: sa.Connection, target: sa.Table, frame: pd.DataFrame, columns: Sequence[str],
               types_from: sa.Table) -> None:
    """Append ``frame[columns]`` to ``target`` (a staging table) on the caller's connection.

    PostgreSQL: binary COPY, the payload built by numpy when it can be (``pgcopy``), else row by row;
    SQLite: one executemany. ``types_from`` names the table whose column types the COPY uses.
    """
    if frame.empty:
        return
    if conn.dialect.name != "postgresql":
        values = [_sqlite_values(frame[c]) for c in columns]
        marks = ", ".join("?" for _ in columns)
        conn.exec_driver_sql(f"INSERT INTO {target.name} ({', '.join(columns)}) VALUES ({marks})",
                             list(zip(*values, strict=True)))
        return
    types = [_pg_type(types_from.c[c]) if c in types_from.c else _pg_type(target.c[c]) for c in columns]
    payload = pgcopy.encode(frame, [pgcopy.Field(c, t, (c,)) for c, t in zip(columns, types, strict=True)])
    raw = conn.connection.driver_connection
    if payload is not None:
        _copy(raw, target.name, columns, payload)
        return
    with raw.cursor() as cur, cur.copy(f"COPY {target.name} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        for row in rows_of(frame, columns):
            copy.write_row(row)


def _sqlite_values(series: pd.Series) -> list[object]:
    """A column as SQLite stores it through SQLAlchemy (UTC times as 'YYYY-MM-DD HH:MM:SS.ffffff'), NULL for
    missing values; whole columns at once, for the staging path's plain executemany."""
    if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(series.dtype):
        utc = pd.to_datetime(series, utc=True)
        naive = utc.dt.tz_localize(None).to_numpy("datetime64[us]")
        text = np.char.replace(np.datetime_as_string(naive, unit="us"), "T", " ", count=1)
        return [None if gone else t for t, gone in zip(text.tolist(), utc.isna().to_numpy(), strict=True)]
    return to_python(series)


def merge_staged(conn: sa.Connection, table: sa.Table, staged: str, columns: Sequence[str], key: Sequence[str],
                 compare: Sequence[str], touch: Sequence[str] = ()) -> WriteResult:
    """Merge every row of the staging table ``staged`` into ``table`` with one statement (upsert counts).

    The staging table must hold each key once (``staging`` moves cross-chunk duplicates to quarantine).
    """
    total = conn.execute(sa.text(f"SELECT count(*) FROM {staged}")).scalar_one()
    if not total:
        return WriteResult()
    if conn.dialect.name == "postgresql":
        merged = _merge_sql(table, staged, columns, key, compare, touch, "pg")
        inserted, updated = conn.execute(sa.text(_counted(merged))).one()
        return WriteResult(inserted, updated, total - inserted - updated)
    join = " AND ".join(f"t.{k} = s.{k}" for k in key)
    inserted = conn.execute(
        sa.text(f"SELECT count(*) FROM {staged} s LEFT JOIN {table.name} t ON {join} WHERE t.{key[0]} IS NULL")
    ).scalar_one()
    differs = " OR ".join(f"t.{c} IS NOT s.{c}" for c in compare)
    updated = conn.execute(
        sa.text(f"SELECT count(*) FROM {staged} s JOIN {table.name} t ON {join} WHERE {differs}")
    ).scalar_one()
    conn.execute(sa.text(_merge_sql(table, staged, columns, key, compare, touch, "sqlite")))
    return WriteResult(inserted, updated, total - inserted - updated)
