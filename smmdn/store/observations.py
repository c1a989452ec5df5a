"""Observations: idempotent upserts of canonical readings, and the fast reads the cycle and detection need
(raw rows streamed with COPY on PostgreSQL, daily means and time buckets aggregated in the database).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa

from smmdn.store import tables as T
from smmdn.store.bulk import WriteResult, upsert_rows
from smmdn.store.common import StoreHandle, Timeish, _now, _ts, _utc_column, require_sites, time_filters
from smmdn.store.frames import observations_for_write, rows_of


def write_observations(store: StoreHandle, frame: pd.DataFrame, source: str) -> WriteResult:
    """Upsert canonical observations (+ optional ``quality_flag``) from ``source``."""
    out = observations_for_write(frame)
    now = _now()
    out["source"] = source
    out["ingested_at"] = now
    out["updated_at"] = now
    flags = [c for c in T.OBSERVATION_FLAG_COLUMNS if c in out.columns]  # ISMN's and the provider's
    columns = [
        "time",
        "site",
        "depth_cm",
        "sensor",
        "vwc",
        "quality_flag",
        *flags,
        "source",
        "ingested_at",
        "updated_at",
    ]
    with store._begin() as conn:
        require_sites(conn, out["site"], "observations")
        return upsert_rows(
            conn,
            T.observations,
            columns,
            rows_of(out, columns),
            ["site", "depth_cm", "sensor", "time"],
            ["vwc", "quality_flag", *flags, "source"],
            ["updated_at"],
        )


def read_observations(
    store: StoreHandle,
    sites: Sequence[str] | None = None,
    start: Timeish = None,
    end: Timeish = None,
    as_of: Timeish = None,
    source_flags: bool = False,
) -> pd.DataFrame:
    """Observations in [start, end), optionally only those known at ``as_of`` (first ingest).

    ``source_flags`` adds the source's own flags (``ismn_flag``, ``provider_flag``; empty text where the
    source gave none); off by default so every existing reader sees the columns it always saw.
    """
    t = T.observations
    query = sa.select(
        t.c.time,
        t.c.site,
        t.c.depth_cm,
        t.c.sensor,
        t.c.vwc,
        t.c.quality_flag,
        *((t.c[c] for c in T.OBSERVATION_FLAG_COLUMNS) if source_flags else ()),
        t.c.source,
        t.c.ingested_at,
    )
    query = time_filters(query, t.c.time, start, end)
    if sites:
        query = query.where(t.c.site.in_(list(sites)))
    if as_of is not None:
        query = query.where(t.c.ingested_at <= _ts(as_of))
    query = query.order_by(t.c.site, t.c.depth_cm, t.c.sensor, t.c.time)
    return read_observation_rows(store, query)


def read_observation_rows(store: StoreHandle, query: sa.Select) -> pd.DataFrame:
    """Run an observations select fast: rows are many (a day of hourly readings per series).

    Why not ``pd.read_sql``: it builds a Python datetime per value and then infers the column type,
    seconds per million rows. PostgreSQL streams the rows with ``COPY … TO STDOUT`` as CSV with times
    in epoch microseconds (pandas' C reader, no Python objects); SQLite hands over ISO strings that
    pandas parses in one vectorised call.
    """
    names = [c.name for c in query.selected_columns]
    times = [n for n in names if n in ("time", "ingested_at")]
    text = {n: str for n in ("site", "sensor", "quality_flag", "source", *T.OBSERVATION_FLAG_COLUMNS)
            if n in names}
    if store.is_postgres:
        cols = [
            sa.cast(sa.extract("epoch", c) * 1_000_000, sa.BigInteger).label(c.name) if c.name in times else c
            for c in query.selected_columns
        ]
        compiled = query.with_only_columns(*cols, maintain_column_froms=True).compile(
            dialect=store.engine.dialect, compile_kwargs={"render_postcompile": True}
        )
        buffer = io.BytesIO()
        with store.engine.connect() as conn:
            raw = conn.connection.driver_connection
            with (
                raw.cursor() as cur,
                cur.copy(f"COPY ({compiled}) TO STDOUT (FORMAT csv)", compiled.params) as copy,
            ):
                for block in copy:
                    buffer.write(block)
        buffer.seek(0)
        frame = (
            pd.read_csv(
                buffer, names=names, header=None, na_filter=False, dtype={**text, **{n: "int64" for n in times}}
            )
            if buffer.getbuffer().nbytes
            else pd.DataFrame({n: pd.Series(dtype="int64" if n in times else object) for n in names})
        )
        for n in times:
            frame[n] = pd.to_datetime(frame[n], unit="us", utc=True).dt.as_unit("ns")
    else:
        cols = [
            sa.type_coerce(c, sa.String).label(c.name) if c.name in times else c for c in query.selected_columns
        ]
        with store.engine.connect() as conn:
            rows = conn.execute(query.with_only_columns(*cols, maintain_column_froms=True)).all()
        frame = pd.DataFrame(rows, columns=names)
        for n in times:
            frame[n] = pd.to_datetime(frame[n], utc=True, format="ISO8601").dt.as_unit("ns")
    for n in text:
        frame[n] = frame[n].astype(object)
    for n in T.OBSERVATION_FLAG_COLUMNS:
        if n in frame:  # NULL reads as "" from COPY and as None from SQLite: one spelling
            frame[n] = frame[n].fillna("").astype(object)
    for n in ("depth_cm", "vwc"):
        if n in frame:
            frame[n] = frame[n].astype("float64")
    return frame


def read_daily_observations(
    store: StoreHandle,
    offsets: Mapping[str, float],
    sites: Sequence[str] | None = None,
    start: Timeish = None,
    end: Timeish = None,
    as_of: Timeish = None,
    exclude_flags: Sequence[str] = (),
) -> pd.DataFrame:
    """Daily mean vwc per series for readings in [start, end), aggregated in the database.

    A day is the site's local standard date: UTC + ``offsets[site]`` hours (0 when absent), labelled
    by its midnight as a UTC timestamp. Readings whose quality flag contains any of
    ``exclude_flags`` are left out. Columns: time, site, depth_cm, sensor, vwc, n (readings),
    first_ingested (earliest ``ingested_at`` among them).

    Why in SQL: the daily model needs one value per series and day; moving a year of hourly rows
    into pandas only to average them costs 24 times the rows, seconds per thousand series.
    """
    t = T.observations
    if store.is_postgres:
        epoch = sa.func.floor(sa.extract("epoch", t.c.time))  # whole seconds: 23:59:59.7 stays in its day
    else:
        epoch = sa.cast(sa.func.strftime("%s", t.c.time), sa.Integer)
    shifts = {str(site): round(h * 3600) for site, h in offsets.items() if h}
    shift = sa.case(shifts, value=t.c.site, else_=0) if shifts else sa.literal(0)
    local = sa.cast(epoch, sa.BigInteger) + shift
    day = local // 86400  # integer division on both backends (SQLAlchemy 2's "/" is true division)
    query = sa.select(
        day.label("day"),
        t.c.site,
        t.c.depth_cm,
        t.c.sensor,
        sa.func.avg(t.c.vwc).label("vwc"),
        sa.func.count().label("n"),
        sa.func.min(t.c.ingested_at).label("first_ingested"),
    )
    query = time_filters(query, t.c.time, start, end)
    if sites:
        query = query.where(t.c.site.in_(list(sites)))
    if as_of is not None:
        query = query.where(t.c.ingested_at <= _ts(as_of))
    for word in exclude_flags:
        query = query.where(sa.not_(t.c.quality_flag.contains(word, autoescape=True)))
    query = query.group_by(day, t.c.site, t.c.depth_cm, t.c.sensor).order_by(
        t.c.site, t.c.depth_cm, t.c.sensor, day
    )
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    frame = pd.DataFrame(rows, columns=["day", "site", "depth_cm", "sensor", "vwc", "n", "first_ingested"])
    days = pd.to_numeric(frame["day"]).astype("int64") * 86400
    frame.insert(0, "time", pd.to_datetime(days, unit="s", utc=True).dt.as_unit("ns"))
    frame["site"] = frame["site"].astype("string")
    frame["sensor"] = frame["sensor"].astype("string")
    frame["depth_cm"] = frame["depth_cm"].astype("float64")
    frame["vwc"] = frame["vwc"].astype("float64")
    frame["n"] = frame["n"].astype("int64")
    frame["first_ingested"] = _utc_column(frame["first_ingested"])
    return frame.drop(columns=["day"])


def aggregate_observations(
    store: StoreHandle,
    bucket: timedelta,
    sites: Sequence[str] | None = None,
    start: Timeish = None,
    end: Timeish = None,
) -> pd.DataFrame:
    """Mean/min/max/count of vwc per series and time bucket (``time_bucket`` on TimescaleDB)."""
    seconds = int(bucket.total_seconds())
    params: dict[str, Any] = {}
    where = ["1=1"]
    if sites:
        where.append("site IN ({})".format(", ".join(f":s{i}" for i in range(len(sites)))))
        params.update({f"s{i}": s for i, s in enumerate(sites)})
    if start is not None:
        where.append("time >= :start")
        params["start"] = _ts(start)
    if end is not None:
        where.append("time < :end")
        params["end"] = _ts(end)
    with store.engine.connect() as conn:
        from smmdn.store import timescale

        if store.is_postgres and timescale.extension_version(conn):
            bucket_sql = f"time_bucket(INTERVAL '{seconds} seconds', time)"
        elif store.is_postgres:
            bucket_sql = f"to_timestamp(floor(extract(epoch FROM time) / {seconds}) * {seconds})"
        else:
            if start is not None:
                params["start"] = params["start"].replace(tzinfo=None)
            if end is not None:
                params["end"] = params["end"].replace(tzinfo=None)
            bucket_sql = f"datetime((CAST(strftime('%s', time) AS INTEGER) / {seconds}) * {seconds}, 'unixepoch')"
        sql = (
            f"SELECT {bucket_sql} AS bucket, site, depth_cm, sensor, avg(vwc) AS vwc_mean, "
            "min(vwc) AS vwc_min, max(vwc) AS vwc_max, count(*) AS n "
            f"FROM observations WHERE {' AND '.join(where)} "
            "GROUP BY 1, site, depth_cm, sensor ORDER BY site, depth_cm, sensor, 1"
        )
        frame = pd.read_sql(sa.text(sql), conn, params=params)
    frame["bucket"] = _utc_column(frame["bucket"])
    return frame
