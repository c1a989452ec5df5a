"""Sites and sensors (the registry's tables), and the site facts other roles read through the store:
local-standard-time offsets, and how fresh each site is.

Daily labels of observations and forcing use the site's local standard time (USCRN's convention), so
detection, verification and the cycle's inputs all need the same offsets.
"""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from smmdn.errors import InputError
from smmdn.store import tables as T
from smmdn.store.bulk import WriteResult, upsert_rows
from smmdn.store.common import StoreHandle, Timeish, _now, _ts, _utc_column, json_columns, require_sites
from smmdn.store.frames import rows_of


def upsert_sites(store: StoreHandle, frame: pd.DataFrame) -> WriteResult:
    if "site" not in frame.columns:
        raise InputError("missing column site", where="sites", column="site", fix="give a site id per row")
    out = frame.copy()
    out["site"] = out["site"].astype(str)
    for column, default in (("tags", list), ("attributes", dict)):
        if column not in out.columns:
            out[column] = [default() for _ in range(len(out))]
    for column in ("name", "latitude", "longitude", "elevation_m", "timezone", "source"):
        if column not in out.columns:
            out[column] = None
    from smmdn.store.frames import reject_duplicates, reject_null_keys

    reject_null_keys(out, ("site",), "sites")
    reject_duplicates(out, ("site",), "sites")
    out["updated_at"] = _now()
    columns = [
        "site",
        "name",
        "latitude",
        "longitude",
        "elevation_m",
        "timezone",
        "tags",
        "source",
        "attributes",
        "updated_at",
    ]
    compare = columns[1:-1]
    with store._begin() as conn:
        return upsert_rows(conn, T.sites, columns, rows_of(out, columns), ["site"], compare, ["updated_at"])


def upsert_sensors(store: StoreHandle, frame: pd.DataFrame) -> WriteResult:
    from smmdn.store.frames import reject_duplicates, reject_null_keys

    out = frame.copy()
    for column in ("site", "depth_cm", "sensor"):
        if column not in out.columns:
            raise InputError(
                f"missing column {column}",
                where="sensors",
                column=column,
                fix="give site, depth_cm and sensor",
            )
    out["site"] = out["site"].astype(str)
    out["sensor"] = out["sensor"].astype(str)
    out["depth_cm"] = pd.to_numeric(out["depth_cm"])
    reject_null_keys(out, ("site", "depth_cm", "sensor"), "sensors")
    reject_duplicates(out, ("site", "depth_cm", "sensor"), "sensors")
    out["active_from"] = _utc_column(out["active_from"]) if "active_from" in out else pd.Timestamp(T.NO_ISSUE_TIME)
    out["active_from"] = out["active_from"].fillna(pd.Timestamp(T.NO_ISSUE_TIME))
    out["active_to"] = _utc_column(out["active_to"]) if "active_to" in out else pd.NaT
    if "source" not in out:
        out["source"] = None
    if "attributes" not in out:
        out["attributes"] = [{} for _ in range(len(out))]
    columns = ["site", "depth_cm", "sensor", "active_from", "active_to", "source", "attributes"]
    with store._begin() as conn:
        require_sites(conn, out["site"], "sensors")
        return upsert_rows(
            conn, T.sensors, columns, rows_of(out, columns), ["site", "depth_cm", "sensor"], columns[3:]
        )


def end_sensor(store: StoreHandle, site: str, depth_cm: float, sensor: str, at: Timeish) -> None:
    """Close a sensor's active period (replacement or removal)."""
    with store._begin() as conn:
        conn.execute(
            T.sensors.update()
            .where(
                T.sensors.c.site == site,
                T.sensors.c.depth_cm == float(depth_cm),
                T.sensors.c.sensor == sensor,
            )
            .values(active_to=_ts(at))
        )


def read_sites(store: StoreHandle) -> pd.DataFrame:
    with store.engine.connect() as conn:
        frame = pd.read_sql(sa.select(T.sites).order_by(T.sites.c.site), conn)
    return json_columns(frame, ("tags", "attributes"))


def read_sensors(store: StoreHandle, active_at: Timeish = None) -> pd.DataFrame:
    query = sa.select(T.sensors).order_by(T.sensors.c.site, T.sensors.c.depth_cm, T.sensors.c.sensor)
    if active_at is not None:
        at = _ts(active_at)
        query = query.where(
            T.sensors.c.active_from <= at,
            sa.or_(T.sensors.c.active_to.is_(None), T.sensors.c.active_to > at),
        )
    with store.engine.connect() as conn:
        frame = pd.read_sql(query, conn)
    for column in ("active_from", "active_to"):
        frame[column] = _utc_column(frame[column])
    return json_columns(frame, ("attributes",))


def site_offsets(store: StoreHandle) -> dict[str, float]:
    """Local-standard-time offset in hours per site (0 where the registry gives none)."""
    sites = read_sites(store)
    out: dict[str, float] = {}
    for site, attrs in zip(sites["site"], sites["attributes"], strict=True):
        value = (attrs or {}).get("lst_utc_offset_hours")
        out[str(site)] = float(value) if value is not None else 0.0
    return out


def site_freshness(store: StoreHandle, since: Timeish, now: Timeish) -> pd.DataFrame:
    """Per site, from the database's aggregates (cheap at tens of thousands of series): series reporting and
    the last reading in [since, now], and the newest complete forecast issued for valid times after ``since``.

    Columns: site, series, last_reading, latest_issue (NaT where none).
    """
    o, f, r = T.observations, T.forecasts, T.forecast_runs
    with store._begin() as conn:
        seen = pd.DataFrame(conn.execute(
            sa.select(o.c.site, sa.func.count(sa.distinct(sa.cast(o.c.depth_cm, sa.Text) + "|" + o.c.sensor)),
                      sa.func.max(o.c.time))
            .where(o.c.time >= _ts(since), o.c.time <= _ts(now)).group_by(o.c.site)).all(),
            columns=["site", "series", "last_reading"])
        issued = pd.DataFrame(conn.execute(
            sa.select(f.c.site, sa.func.max(f.c.issue_time)).join(r, r.c.run_id == f.c.run_id)
            .where(r.c.status == "complete", f.c.valid_time >= _ts(since)).group_by(f.c.site)).all(),
            columns=["site", "latest_issue"])
    out = seen.merge(issued, on="site", how="outer")
    for column in ("last_reading", "latest_issue"):
        out[column] = pd.to_datetime(out[column], utc=True)
    out["series"] = out["series"].fillna(0).astype(int)
    return out.sort_values("site").reset_index(drop=True)
