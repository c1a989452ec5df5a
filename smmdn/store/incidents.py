"""Store helpers for incidents: alerts grouped by cause, their members (and why one is inhibited), and the
per-team notification state that bounds what is sent (``smmdn.alerts.incidents``).

Kept apart from ``store.alerts`` (one job per module); like it, every function takes a ``Store`` (or one
bound to a transaction) and works the same on PostgreSQL and SQLite.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd
import sqlalchemy as sa

from smmdn.store import tables as T
from smmdn.store.alerts import _insert
from smmdn.store.common import _ts, aware
from smmdn.store.common import read_frame as _frame

if TYPE_CHECKING:
    from smmdn.store.store import Store

INCIDENT_TIMES = ("opened_at", "resolved_at", "acked_at", "updated_at")
NOTICE_TIMES = ("first_sent_at", "last_sent_at", "next_reminder_at")


def fingerprint(members: Iterable[tuple[int, str, bool]]) -> str:
    """What a message about an incident says, reduced to what must trigger an update when it changes:
    the un-inhibited members (id and kind) and whether any of them is escalated."""
    items = sorted(members)
    escalated = any(e for _, _, e in items)
    return ",".join(f"{i}:{k}" for i, k, _ in items) + f";esc={int(escalated)}"


# --- incidents ------------------------------------------------------------------------------------------
def read_incidents(store: Store, *, status: Sequence[str] | None = None, ids: Sequence[int] | None = None,
                   site: str | None = None, resolved_since: Any = None) -> pd.DataFrame:
    """Incidents by status, id or site; ``resolved_since``: only those resolved at or after it (the ones
    whose resolution may still be held back, ``smmdn.alerts.notify``)."""
    i = T.alert_incidents
    query = sa.select(i).order_by(i.c.id)
    if status:
        query = query.where(i.c.status.in_(list(status)))
    if resolved_since is not None:
        query = query.where(i.c.resolved_at >= _ts(resolved_since))
    if ids:
        query = query.where(i.c.id.in_([int(x) for x in ids]))
    if site:
        query = query.where(i.c.site == site)
    return _frame(store, query, INCIDENT_TIMES)


def get_incident(store: Store, incident_id: int) -> dict[str, Any] | None:
    frame = read_incidents(store, ids=[incident_id])
    return None if frame.empty else frame.iloc[0].to_dict()


def insert_incident(store: Store, values: dict[str, Any]) -> int:
    with store._begin() as conn:
        result = conn.execute(T.alert_incidents.insert().values(**_times(values, INCIDENT_TIMES)))
        return int(result.inserted_primary_key[0])


def update_incident(store: Store, incident_id: int, values: dict[str, Any]) -> None:
    i = T.alert_incidents
    with store._begin() as conn:
        conn.execute(i.update().where(i.c.id == int(incident_id)).values(**_times(values, INCIDENT_TIMES)))


# --- members --------------------------------------------------------------------------------------------
def read_members(store: Store, *, incident_ids: Sequence[int] | None = None,
                 alert_ids: Sequence[int] | None = None) -> pd.DataFrame:
    m = T.alert_incident_members
    query = sa.select(m).order_by(m.c.incident_id, m.c.alert_id)
    if incident_ids is not None:
        query = query.where(m.c.incident_id.in_([int(x) for x in incident_ids]))
    if alert_ids is not None:
        query = query.where(m.c.alert_id.in_([int(x) for x in alert_ids]))
    return _frame(store, query, ("joined_at",))


def add_member(store: Store, incident_id: int, alert_id: int, at: Any) -> bool:
    """Add an alert to an incident; False when it already belongs to one (another run grouped it first)."""
    with store._begin() as conn:
        stmt = _insert(conn, T.alert_incident_members).values(
            incident_id=int(incident_id), alert_id=int(alert_id), joined_at=_ts(at)).on_conflict_do_nothing(
            index_elements=["alert_id"]).returning(T.alert_incident_members.c.alert_id)
        return bool(conn.execute(stmt).all())


def move_member(store: Store, alert_id: int, incident_id: int) -> None:
    """Move an alert to another incident (its cause was found there: ``smmdn.alerts.incidents``)."""
    m = T.alert_incident_members
    with store._begin() as conn:
        conn.execute(m.update().where(m.c.alert_id == int(alert_id)).values(incident_id=int(incident_id)))


def set_inhibition(store: Store, alert_id: int, by: int | None, rule: str | None, reason: str | None) -> None:
    m = T.alert_incident_members
    with store._begin() as conn:
        conn.execute(m.update().where(m.c.alert_id == int(alert_id)).values(
            inhibited_by=None if by is None else int(by), inhibit_rule=rule, inhibit_reason=reason))


# --- notices (what each team was told) -----------------------------------------------------------------
def read_notices(store: Store, incident_ids: Sequence[int] | None = None) -> dict[tuple[int, str], dict[str, Any]]:
    n = T.alert_incident_notices
    query = sa.select(n)
    if incident_ids is not None:
        query = query.where(n.c.incident_id.in_([int(x) for x in incident_ids]))
    frame = _frame(store, query, NOTICE_TIMES)
    return {(int(r["incident_id"]), str(r["team"])): r for r in frame.to_dict("records")}


def save_notice(store: Store, values: dict[str, Any]) -> None:
    """Insert or update one (incident, team) notice."""
    n = T.alert_incident_notices
    row = _times(values, NOTICE_TIMES)
    with store._begin() as conn:
        done = conn.execute(n.update().where(n.c.incident_id == int(values["incident_id"]),
                                             n.c.team == str(values["team"])).values(**row)).rowcount
        if not done:
            conn.execute(n.insert().values(**row))


def _times(values: dict[str, Any], times: Sequence[str]) -> dict[str, Any]:
    return {k: (_ts(v) if k in times and v is not None and not pd.isna(v) else (None if k in times else v))
            for k, v in values.items()}


def latest(value: Any) -> pd.Timestamp | None:
    """A UTC timestamp or None (re-exported for the alert layer, which reads no SQL types itself)."""
    return aware(value)


def last_digest_at(store: Store, team: str) -> pd.Timestamp | None:
    """When the team's last digest was queued (what changed since is what the next one lists)."""
    o = T.alert_outbox
    with store._begin() as conn:
        value = conn.execute(sa.select(sa.func.max(o.c.created_at)).where(o.c.event == "digest",
                                                                          o.c.team == team)).scalar()
    return aware(value)


def messages_since(store: Store, team: str, since: Any, incident_ids: Sequence[int]) -> pd.DataFrame:
    """Incident messages queued for ``team`` since ``since`` (``incident_id, event, created_at``)."""
    o = T.alert_outbox
    query = sa.select(o.c.incident_id, o.c.event, o.c.created_at).where(
        o.c.team == team, o.c.incident_id.in_([int(i) for i in incident_ids]))
    if since is not None:
        query = query.where(o.c.created_at > _ts(since))
    return _frame(store, query.order_by(o.c.id), ("created_at",))
