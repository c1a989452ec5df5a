"""What every part of the store shares: time coercion, JSON columns, the site check, window filters.

Kept apart from ``store.py`` so the per-table-group parts import it without importing the facade.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Protocol

import pandas as pd
import sqlalchemy as sa

from smmdn.errors import InputError
from smmdn.store import tables as T

Timeish = datetime | pd.Timestamp | str | None


class StoreHandle(Protocol):
    """What a part needs of the ``Store`` facade: its engine and its transaction scope. Typed here, not
    imported from ``store.py``, because the facade imports the parts (no cycle, not even for type checks)."""

    engine: sa.Engine

    @property
    def is_postgres(self) -> bool: ...

    def _begin(self) -> AbstractContextManager[sa.Connection]: ...


def _ts(value: Timeish) -> datetime | None:
    """A UTC-aware datetime (naive input is read as UTC)."""
    if value is None:
        return None
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def _utc_column(series: pd.Series) -> pd.Series:
    """UTC-aware nanosecond timestamps. A column that already holds datetimes is converted in place: going
    through ``to_datetime`` makes pandas iterate it as Timestamp objects (seconds per cycle at 1,000 series)."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        converted = series.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(series.dtype):
        converted = series.dt.tz_localize("UTC")
    else:
        converted = pd.to_datetime(series, utc=True, cache=False)
    return converted.dt.as_unit("ns") if hasattr(converted.dt, "as_unit") else converted


def _now() -> datetime:
    return datetime.now(UTC)


def json_columns(frame: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """Decode JSON text columns in place (SQLite returns text where PostgreSQL returns objects)."""
    for column in columns:
        frame[column] = [json.loads(v) if isinstance(v, str) else v for v in frame[column]]
    return frame


def require_sites(conn: sa.Connection, sites: pd.Series, table: str) -> None:
    """Refuse rows for sites the registry does not know, naming them and the rows (a clear error, not a
    foreign-key violation half-way through a write)."""
    wanted = set(map(str, pd.unique(sites)))
    if not wanted:
        return
    known = {r[0] for r in conn.execute(sa.select(T.sites.c.site).where(T.sites.c.site.in_(wanted)))}
    unknown = sorted(wanted - known)
    if unknown:
        rows = list(sites.index[sites.astype(str).isin(unknown)][:20])
        raise InputError(
            f"unknown site(s) {', '.join(unknown[:10])}",
            where=table,
            column="site",
            rows=rows,
            fix="register the sites first (smmdn sites load REGISTRY.yaml, or Store.upsert_sites)",
        )


def time_filters(query: Any, column: Any, start: Timeish, end: Timeish) -> Any:
    """``start <= column < end``, each bound optional."""
    if start is not None:
        query = query.where(column >= _ts(start))
    if end is not None:
        query = query.where(column < _ts(end))
    return query


def aware(value: Any) -> pd.Timestamp | None:
    """A UTC ``Timestamp`` from what either backend returns (SQLite gives naive UTC datetimes)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def read_frame(store: StoreHandle, query: sa.Select, times: Iterable[str], json: Iterable[str] = ()) -> pd.DataFrame:
    """Run a select in the store's transaction scope; times to UTC, JSON text decoded."""
    with store._begin() as conn:
        frame = pd.read_sql(query, conn)
    for column in times:
        if column in frame:
            frame[column] = _utc_column(frame[column])
    return json_columns(frame, [c for c in json if c in frame])
