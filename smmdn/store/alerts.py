"""Store helpers for alerts, the delivery outbox, silences and sensor replacements.

Kept out of ``store.py`` (one job per module). Every function takes a ``Store`` (or one bound to a
transaction by ``Store.transaction()``) and works the same on PostgreSQL and SQLite.

The outbox's state machine lives here because its safety is in the SQL: a row is *claimed* by one
conditional ``UPDATE … WHERE status = 'pending'`` (or a ``sending`` row whose lease ran out), so two
deliverers never both send it; see ``smmdn.alerts.deliver`` for the delivery semantics built on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from smmdn.store import tables as T
from smmdn.store.bulk import upsert_rows
from smmdn.store.common import Timeish, _ts, aware
from smmdn.store.common import read_frame as _frame

if TYPE_CHECKING:
    from smmdn.store.store import Store

ACTIVE = ("open", "acked")
ALERT_TIMES = ("window_start", "window_end", "created_at", "notified_at", "updated_at", "last_event_at",
               "acked_at", "resolved_at", "escalated_at")
OUTBOX_TIMES = ("next_attempt_at", "claimed_at", "created_at", "sent_at")


def _insert(conn: sa.Connection, table: sa.Table) -> Any:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


# --- alerts -------------------------------------------------------------------------------------------
def read_alerts(store: Store, *, status: Sequence[str] | None = None, site: str | None = None,
                ids: Sequence[int] | None = None, kinds: Sequence[str] | None = None) -> pd.DataFrame:
    a = T.alerts
    query = sa.select(a).order_by(a.c.id)
    if status:
        query = query.where(a.c.status.in_(list(status)))
    if site:
        query = query.where(a.c.site == site)
    if ids:
        query = query.where(a.c.id.in_([int(i) for i in ids]))
    if kinds:
        query = query.where(a.c.kind.in_(list(kinds)))
    return _frame(store, query, ALERT_TIMES, ("details",))


def get_alert(store: Store, alert_id: int) -> dict[str, Any] | None:
    frame = read_alerts(store, ids=[alert_id])
    return None if frame.empty else frame.iloc[0].to_dict()


def last_resolved(store: Store, keys: Iterable[tuple[str, float, str, str]]) -> dict[tuple, dict[str, Any]]:
    """The most recently resolved alert per (site, depth_cm, sensor, kind) among ``keys`` (for cooldowns)."""
    wanted = set(keys)
    if not wanted:
        return {}
    a = T.alerts
    sites = sorted({k[0] for k in wanted})
    query = sa.select(a).where(a.c.status == "resolved", a.c.site.in_(sites)).order_by(a.c.resolved_at)
    frame = _frame(store, query, ALERT_TIMES, ("details",))
    out: dict[tuple, dict[str, Any]] = {}
    for row in frame.to_dict("records"):
        key = (row["site"], float(row["depth_cm"]), row["sensor"], row["kind"])
        if key in wanted:
            out[key] = row  # ordered by resolved_at: the last one wins
    return out


def insert_alert(store: Store, values: dict[str, Any]) -> int:
    with store._begin() as conn:
        result = conn.execute(T.alerts.insert().values(**_alert_values(values)))
        return int(result.inserted_primary_key[0])


def update_alert(store: Store, alert_id: int, values: dict[str, Any], *, expect_revision: int | None = None) -> bool:
    """Update one alert; with ``expect_revision`` only if nobody changed it meanwhile (returns False then)."""
    a = T.alerts
    query = a.update().where(a.c.id == int(alert_id))
    if expect_revision is not None:
        query = query.where(a.c.revision == int(expect_revision))
    with store._begin() as conn:
        return conn.execute(query.values(**_alert_values(values))).rowcount == 1


def _alert_values(values: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        out[key] = _ts(value) if key in ALERT_TIMES and value is not None else value
    return out


# --- outbox -------------------------------------------------------------------------------------------
def enqueue(store: Store, rows: Sequence[dict[str, Any]]) -> int:
    """Insert outbox rows; a row whose ``idempotency_key`` exists already is skipped. Returns rows added."""
    if not rows:
        return 0
    added = 0
    with store._begin() as conn:
        for row in rows:
            values = {k: (_ts(v) if k in OUTBOX_TIMES and v is not None else v) for k, v in row.items()}
            stmt = _insert(conn, T.alert_outbox).values(**values).on_conflict_do_nothing(
                index_elements=["idempotency_key"]).returning(T.alert_outbox.c.id)
            added += len(conn.execute(stmt).all())  # rowcount is -1 for this statement on psycopg
    return added


def due_ids(store: Store, now: Timeish, lease: timedelta, limit: int | None = None) -> list[int]:
    """Outbox rows ready for a delivery attempt: pending and due, or stuck in ``sending`` past the lease."""
    o = T.alert_outbox
    at = _ts(now)
    query = sa.select(o.c.id).where(sa.or_(
        sa.and_(o.c.status == "pending", o.c.next_attempt_at <= at),
        sa.and_(o.c.status == "sending", o.c.claimed_at <= at - lease),
    )).order_by(o.c.next_attempt_at, o.c.id)
    if limit:
        query = query.limit(limit)
    with store._begin() as conn:
        return [int(r[0]) for r in conn.execute(query)]


def claim(store: Store, outbox_id: int, now: Timeish, lease: timedelta) -> dict[str, Any] | None:
    """Mark one row ``sending`` (attempts + 1) if it is still claimable; committed before any send.

    Returns the claimed row, or None when another deliverer got there first.
    """
    o = T.alert_outbox
    at = _ts(now)
    with store._begin() as conn:
        claimed = conn.execute(
            o.update()
            .where(o.c.id == int(outbox_id), sa.or_(
                sa.and_(o.c.status == "pending", o.c.next_attempt_at <= at),
                sa.and_(o.c.status == "sending", o.c.claimed_at <= at - lease),
            ))
            .values(status="sending", claimed_at=at, attempts=o.c.attempts + 1)
        ).rowcount
        if claimed != 1:
            return None
        row = conn.execute(sa.select(o).where(o.c.id == int(outbox_id))).mappings().one()
    return dict(row)


def finish(store: Store, outbox_id: int, status: str, now: Timeish, *, error: str | None = None,
           note: str | None = None, retry_at: Timeish = None) -> None:
    """Record the outcome of an attempt (sent / suppressed / failed, or back to pending for a retry)."""
    o = T.alert_outbox
    values: dict[str, Any] = {"status": status, "claimed_at": None}
    if status == "sent":
        values["sent_at"] = _ts(now)
        values["last_error"] = None
    if error is not None:
        values["last_error"] = error[:2000]
    if note is not None:
        values["note"] = note
    if retry_at is not None:
        values["next_attempt_at"] = _ts(retry_at)
    with store._begin() as conn:
        conn.execute(o.update().where(o.c.id == int(outbox_id)).values(**values))
        if status == "sent":
            alert_id, incident_id = conn.execute(sa.select(o.c.alert_id, o.c.incident_id).where(
                o.c.id == int(outbox_id))).one()
            ids = [alert_id] if alert_id is not None else []
            if incident_id is not None:  # an incident's message tells about every member
                m = T.alert_incident_members
                ids += [r[0] for r in conn.execute(sa.select(m.c.alert_id).where(m.c.incident_id == incident_id))]
            if ids:
                conn.execute(T.alerts.update().where(T.alerts.c.id.in_(ids)).values(notified_at=_ts(now)))


def requeue(store: Store, ids: Sequence[int], now: Timeish) -> int:
    """Failed (or suppressed) rows back to pending, due now (``smmdn alerts retry``)."""
    o = T.alert_outbox
    with store._begin() as conn:
        return conn.execute(
            o.update().where(o.c.id.in_([int(i) for i in ids]), o.c.status.in_(["failed", "suppressed"]))
            .values(status="pending", next_attempt_at=_ts(now), note=None)
        ).rowcount


def read_outbox(store: Store, *, status: Sequence[str] | None = None, alert_id: int | None = None,
                with_attachment: bool = False) -> pd.DataFrame:
    o = T.alert_outbox
    columns = [c for c in o.c if with_attachment or c.name != "attachment"]
    query = sa.select(*columns).order_by(o.c.id)
    if status:
        query = query.where(o.c.status.in_(list(status)))
    if alert_id is not None:
        query = query.where(o.c.alert_id == int(alert_id))
    return _frame(store, query, OUTBOX_TIMES)


def outbox_counts(store: Store) -> dict[str, int]:
    o = T.alert_outbox
    with store._begin() as conn:
        rows = conn.execute(sa.select(o.c.status, sa.func.count()).group_by(o.c.status)).all()
    return {str(s): int(n) for s, n in rows}


# --- silences and maintenance windows -------------------------------------------------------------------
def add_silence(store: Store, *, kind: str, site: str, starts_at: Timeish, ends_at: Timeish, created_by: str,
                created_at: Timeish, depth_cm: float | None = None, sensor: str | None = None,
                alert_kind: str | None = None, reason: str | None = None) -> int:
    with store._begin() as conn:
        result = conn.execute(T.alert_silences.insert().values(
            kind=kind, site=site, depth_cm=None if depth_cm is None else float(depth_cm), sensor=sensor,
            alert_kind=alert_kind, starts_at=_ts(starts_at), ends_at=_ts(ends_at), reason=reason,
            created_by=created_by, created_at=_ts(created_at)))
        return int(result.inserted_primary_key[0])


def cancel_silence(store: Store, silence_id: int, at: Timeish) -> bool:
    s = T.alert_silences
    with store._begin() as conn:
        return conn.execute(s.update().where(s.c.id == int(silence_id), s.c.cancelled_at.is_(None))
                            .values(cancelled_at=_ts(at))).rowcount == 1


def read_silences(store: Store, *, active_at: Timeish = None, overlapping: tuple[Timeish, Timeish] | None = None,
                  kind: str | None = None, include_cancelled: bool = False,
                  ending_after: Timeish = None) -> pd.DataFrame:
    """Silences/maintenance windows: active at an instant, overlapping a span, not yet ended, or all."""
    s = T.alert_silences
    query = sa.select(s).order_by(s.c.id)
    if not include_cancelled:
        query = query.where(s.c.cancelled_at.is_(None))
    if kind:
        query = query.where(s.c.kind == kind)
    if active_at is not None:
        at = _ts(active_at)
        query = query.where(s.c.starts_at <= at, s.c.ends_at > at)
    if overlapping is not None:
        lo, hi = (_ts(x) for x in overlapping)
        query = query.where(s.c.starts_at < hi, s.c.ends_at > lo)
    if ending_after is not None:
        query = query.where(s.c.ends_at > _ts(ending_after))
    return _frame(store, query, ("starts_at", "ends_at", "created_at", "cancelled_at"))


# --- watermarks ---------------------------------------------------------------------------------------
def set_watermarks(store: Store, source: str, values: dict[str, Timeish], now: Timeish) -> None:
    """Many watermarks of one source in one upsert (detection keeps one per site)."""
    rows = [(source, key, _ts(value), _ts(now)) for key, value in values.items()]
    with store._begin() as conn:
        upsert_rows(conn, T.watermarks, ["source", "key", "value", "updated_at"], rows, ["source", "key"], ["value"],
                    ["updated_at"])


def detected_through(store: Store) -> dict[str, pd.Timestamp]:
    """Last local day detection evaluated, per site (watermarks ``alerts / detected_through:<site>``)."""
    w = T.watermarks
    with store._begin() as conn:
        rows = conn.execute(sa.select(w.c.key, w.c.value).where(
            w.c.source == "alerts", w.c.key.like("detected_through:%"))).all()
    return {key.split(":", 1)[1]: aware(value) for key, value in rows}


# --- sensors --------------------------------------------------------------------------------------------
def record_replacement(store: Store, site: str, depth_cm: float, sensor: str, at: Timeish, *, new_sensor: str | None,
                       by: str, note: str | None = None) -> None:
    rows = [(site, float(depth_cm), sensor, _ts(at), new_sensor, by, note)]
    columns = ["site", "depth_cm", "sensor", "replaced_at", "new_sensor", "replaced_by", "note"]
    with store._begin() as conn:
        upsert_rows(conn, T.sensor_replacements, columns, rows, columns[:3], columns[3:])


def sensor_periods(store: Store) -> pd.DataFrame:
    """Per known sensor: ``active_from`` and the effective ``active_to`` (registry end or recorded replacement,
    whichever is earlier), so a registry reload cannot revive a replaced sensor."""
    sensors = store.read_sensors()[["site", "depth_cm", "sensor", "active_from", "active_to"]]
    repl = _frame(store, sa.select(T.sensor_replacements), ("replaced_at",))
    if repl.empty:
        return sensors
    merged = sensors.merge(repl[["site", "depth_cm", "sensor", "replaced_at"]], on=["site", "depth_cm", "sensor"],
                           how="outer")
    merged["active_from"] = merged["active_from"].fillna(pd.Timestamp(T.NO_ISSUE_TIME))
    ends = merged[["active_to", "replaced_at"]]
    merged["active_to"] = ends.min(axis=1, skipna=True)
    return merged.drop(columns=["replaced_at"])


def last_reading_per_series(store: Store, since: Timeish, now: Timeish) -> pd.DataFrame:
    """Per series seen in [since, now]: its last reading time (``site, depth_cm, sensor, last_reading``)."""
    o = T.observations
    with store._begin() as conn:
        seen = pd.DataFrame(conn.execute(
            sa.select(o.c.site, o.c.depth_cm, o.c.sensor, sa.func.max(o.c.time).label("last_reading"))
            .where(o.c.time >= _ts(since), o.c.time <= _ts(now))
            .group_by(o.c.site, o.c.depth_cm, o.c.sensor)).all(),
            columns=["site", "depth_cm", "sensor", "last_reading"])
    seen["last_reading"] = pd.to_datetime(seen["last_reading"], utc=True)
    return seen


def has_observations(store: Store, site: str, depth_cm: float, sensor: str) -> bool:
    """Whether the series ever reported (a sensor unknown to the registry may still have data)."""
    o = T.observations
    with store._begin() as conn:
        return conn.execute(sa.select(o.c.time).where(o.c.site == site, o.c.depth_cm == float(depth_cm),
                                                      o.c.sensor == sensor).limit(1)).first() is not None


def utcnow() -> datetime:
    from datetime import UTC

    return datetime.now(UTC)
