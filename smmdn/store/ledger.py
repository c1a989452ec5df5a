"""Ingest bookkeeping: watermarks, processed files, validation runs and the quarantine (rejected rows kept
exactly as received, nothing dropped).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa

from smmdn.errors import InputError
from smmdn.store import tables as T
from smmdn.store.bulk import upsert_rows
from smmdn.store.common import StoreHandle, Timeish, _now, _ts, json_columns


def get_watermark(store: StoreHandle, source: str, key: str) -> pd.Timestamp | None:
    w = T.watermarks
    with store._begin() as conn:
        value = conn.execute(sa.select(w.c.value).where(w.c.source == source, w.c.key == key)).scalar()
    return None if value is None else pd.Timestamp(_ts(value))


def set_watermark(store: StoreHandle, source: str, key: str, value: Timeish) -> None:
    rows = [(source, key, _ts(value), _now())]
    with store._begin() as conn:
        upsert_rows(
            conn,
            T.watermarks,
            ["source", "key", "value", "updated_at"],
            rows,
            ["source", "key"],
            ["value"],
            ["updated_at"],
        )


def file_seen(store: StoreHandle, sha256: str) -> bool:
    """True when these bytes were processed successfully (a rejection does not count: retry works)."""
    pf = T.processed_files
    with store._begin() as conn:
        return conn.execute(sa.select(pf.c.sha256).where(pf.c.sha256 == sha256,
                                                         pf.c.status == "processed")).first() is not None


def record_file(store: StoreHandle, source: str, path: str, sha256: str, status: str,
                reason: str | None = None) -> None:
    """Record a file's outcome; ``reason`` (the last rejection's) is kept when none is given."""
    rows = [(sha256, source, str(path), status, reason, _now())]
    columns = ["sha256", "source", "path", "status", "reason", "processed_at"]
    compare = ["source", "path", "status", "reason"]
    if reason is None:
        rows = [r[:4] + r[5:] for r in rows]
        columns.remove("reason")
        compare.remove("reason")
    with store._begin() as conn:
        upsert_rows(conn, T.processed_files, columns, rows, ["sha256"], compare, ["processed_at"])


def file_record(store: StoreHandle, sha256: str) -> dict[str, Any] | None:
    """A file's ``processed_files`` row (status, path, last rejection reason), or None."""
    pf = T.processed_files
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(pf).where(pf.c.sha256 == sha256)).mappings().first()
    return dict(row) if row else None


def write_validation_run(store: StoreHandle, source: str, success: bool, summary: dict,
                         data_docs: str | None = None) -> int:
    with store._begin() as conn:
        result = conn.execute(
            T.validation_runs.insert().values(
                source=source,
                success=bool(success),
                summary=summary,
                data_docs=data_docs,
                created_at=_now(),
            )
        )
        return int(result.inserted_primary_key[0])


def validation_runs(store: StoreHandle, source: str | None = None) -> pd.DataFrame:
    query = sa.select(T.validation_runs).order_by(T.validation_runs.c.id)
    if source:
        query = query.where(T.validation_runs.c.source == source)
    with store.engine.connect() as conn:
        frame = pd.read_sql(query, conn)
    return json_columns(frame, ("summary",))


def write_quarantine(store: StoreHandle, frame: pd.DataFrame, table: str, source: str) -> int:
    """Keep rejected rows exactly as received, with their ``reason`` (nothing is dropped)."""
    if frame.empty:
        return 0
    if "reason" not in frame.columns:
        raise InputError(
            "quarantined rows need a reason",
            where="quarantine",
            column="reason",
            fix="add a reason per row",
        )
    records = []
    now = _now()
    for _, row in frame.iterrows():
        payload = {
            k: (
                None
                if pd.isna(v)
                else (v.isoformat() if isinstance(v, pd.Timestamp) else (v.item() if hasattr(v, "item") else v))
            )
            for k, v in row.items()
            if k != "reason" and not isinstance(v, list | dict)
        }
        site = row.get("site")
        time = row.get("time")
        try:
            time = _ts(time) if time is not None and not pd.isna(time) else None
        except (ValueError, TypeError):
            time = None
        records.append(
            dict(
                table_name=table,
                source=source,
                site=None if pd.isna(site) else str(site),
                time=time,
                reason=str(row["reason"]),
                row=payload,
                quarantined_at=now,
            )
        )
    with store._begin() as conn:
        conn.execute(T.quarantine.insert(), records)
    return len(records)


def list_quarantine(store: StoreHandle, table: str | None = None, released: bool = False) -> pd.DataFrame:
    q = T.quarantine
    query = sa.select(q).order_by(q.c.id)
    if table:
        query = query.where(q.c.table_name == table)
    query = query.where(q.c.released_at.is_not(None) if released else q.c.released_at.is_(None))
    with store.engine.connect() as conn:
        frame = pd.read_sql(query, conn)
    return json_columns(frame, ("row",))


def release_quarantine(store: StoreHandle, ids: Sequence[int], released_by: str = "operator") -> pd.DataFrame:
    """Mark rows released and return them (the caller re-validates and writes them)."""
    q = T.quarantine
    with store._begin() as conn:
        frame = pd.read_sql(sa.select(q).where(q.c.id.in_(list(ids)), q.c.released_at.is_(None)), conn)
        conn.execute(q.update().where(q.c.id.in_(list(ids))).values(released_at=_now(), released_by=released_by))
    return json_columns(frame, ("row",))
