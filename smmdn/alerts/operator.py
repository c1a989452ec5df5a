"""What operators do to alerts: acknowledge, resolve, silence, plan maintenance, replace a sensor.

Each action records who did it (``--by``); a resolution or a replacement is announced through the outbox in
the same transaction as the change, like every lifecycle transition (``smmdn.alerts.lifecycle``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from smmdn.alerts.lifecycle import Action, Handle, enqueue_event, site_info, write_action
from smmdn.alerts.routing import Routes
from smmdn.errors import InputError
from smmdn.store import alerts as db

if TYPE_CHECKING:
    from smmdn.store import Store


def _require_name(by: str | None, what: str) -> str:
    if not by or not by.strip():
        raise InputError(f"{what} needs the name of the person doing it", where="--by",
                         fix="pass --by <your name> (it is recorded with the alert)")
    return by.strip()


def _active(store: Store, alert_id: int) -> dict[str, Any]:
    row = db.get_alert(store, alert_id)
    if row is None:
        raise InputError(f"no alert {alert_id}", where="alerts", column="id", fix="list alerts: smmdn alerts list")
    if row["status"] == "resolved":
        raise InputError(f"alert {alert_id} is already resolved", where="alerts", column="status",
                         fix="a new anomaly opens a new alert; nothing to do")
    return row


def ack(store: Store, alert_id: int, by: str, now: pd.Timestamp, note: str | None = None) -> dict[str, Any]:
    """Someone is on it: no more reminders or escalation for this alert (its resolution is still sent)."""
    by = _require_name(by, "acknowledging")
    row = _active(store, alert_id)
    db.update_alert(store, alert_id, {"status": "acked", "acked_by": by, "acked_at": now, "ack_note": note,
                                      "updated_at": now, "revision": int(row["revision"]) + 1},
                    expect_revision=int(row["revision"]))
    return db.get_alert(store, alert_id) or {}


def resolve(store: Store, alert_id: int, by: str, now: pd.Timestamp, routes: Routes,
            note: str | None = None) -> dict[str, Any]:
    """Resolved by an operator: the resolution message goes out; a new anomaly later opens a new alert."""
    by = _require_name(by, "resolving")
    with store.transaction() as tx:
        row = _active(tx, alert_id)
        action = Action("resolve", Handle(alert_id, row), {"status": "resolved", "resolved_at": now,
                                                           "resolved_by": by, "details": {"resolved_note": note}},
                        "resolved", now, note=note)
        written = write_action(tx, action, now)
        enqueue_event(tx, written, "resolved", routes, site_info(tx).get(written["site"]), now, note=note)
    return written


def _site_known(store: Store, site: str) -> None:
    if site == "*":
        return
    if site not in site_info(store):
        raise InputError(f"unknown site {site!r}", where="alerts", column="site",
                         fix="use a site id from the registry (smmdn sites list)")


def silence(store: Store, site: str, *, by: str, now: pd.Timestamp, until: pd.Timestamp, depth_cm: float | None = None,
            sensor: str | None = None, kind: str | None = None, reason: str | None = None) -> int:
    """Suppress deliveries for matching alerts until ``until`` (alerts are still opened and listed)."""
    by = _require_name(by, "silencing")
    _site_known(store, site)
    if until <= now:
        raise InputError(f"silence ends {until.isoformat()}, not after now", where="--for/--until",
                         fix="give a positive duration (--for 7d) or a future end time")
    return db.add_silence(store, kind="silence", site=site, starts_at=now, ends_at=until, created_by=by,
                          created_at=now, depth_cm=depth_cm, sensor=sensor, alert_kind=kind, reason=reason)


def maintenance(store: Store, site: str, *, by: str, start: pd.Timestamp, end: pd.Timestamp, now: pd.Timestamp,
                reason: str | None = None) -> int:
    """Planned field work: the site's days in [start, end) raise no alerts and nothing is delivered meanwhile."""
    by = _require_name(by, "planning maintenance")
    _site_known(store, site)
    if end <= start:
        raise InputError("maintenance window ends before it starts", where="--start/--end", fix="give start < end")
    return db.add_silence(store, kind="maintenance", site=site, starts_at=start, ends_at=end, created_by=by,
                          created_at=now, reason=reason)


def replace_sensor(store: Store, site: str, depth_cm: float, old: str, new: str | None, *, at: pd.Timestamp, by: str,
                   now: pd.Timestamp, routes: Routes, note: str | None = None) -> list[int]:
    """End ``old``'s active period at ``at``, start ``new`` there, close the old sensor's alerts (announced).

    Recorded in ``sensor_replacements`` too, so a registry reload that still lists the old sensor without
    an end date does not bring it (or its alerts) back. Returns the ids of the alerts closed.
    """
    by = _require_name(by, "replacing a sensor")
    _site_known(store, site)
    depth_cm = float(depth_cm)
    sensors = store.read_sensors()
    known = sensors.loc[(sensors["site"] == site) & (sensors["depth_cm"] == depth_cm) & (sensors["sensor"] == old)]
    has_data = db.has_observations(store, site, depth_cm, old)
    if known.empty and not has_data:
        raise InputError(f"no sensor {old!r} at {site} {depth_cm:g} cm", where="alerts replace-sensor",
                         column="sensor", fix="check the sensor label (smmdn alerts list shows it)")
    closed = []
    with store.transaction() as tx:
        if known.empty:
            tx.upsert_sensors(pd.DataFrame({"site": [site], "depth_cm": [depth_cm], "sensor": [old]}))
        tx.end_sensor(site, depth_cm, old, at)
        if new:
            tx.upsert_sensors(pd.DataFrame({"site": [site], "depth_cm": [depth_cm], "sensor": [new],
                                            "active_from": [at]}))
        db.record_replacement(tx, site, depth_cm, old, at, new_sensor=new, by=by, note=note)
        info = site_info(tx).get(site)
        for row in db.read_alerts(tx, status=db.ACTIVE, site=site).to_dict("records"):
            if float(row["depth_cm"]) != depth_cm or row["sensor"] != old:
                continue
            why = f"sensor {old} replaced" + (f" by {new}" if new else "") + f" at {at.isoformat()}"
            action = Action("resolve", Handle(int(row["id"]), row),
                            {"status": "resolved", "resolved_at": now, "resolved_by": f"{by} ({why})"}, "resolved", now)
            written = write_action(tx, action, now)
            enqueue_event(tx, written, "resolved", routes, info, now, note=why)
            closed.append(int(row["id"]))
    return closed


def _incident(store: Store, incident_id: int) -> Any:
    from smmdn.alerts.incidents import load

    inc = load(store, incident_id)
    if inc is None:
        raise InputError(f"no incident {incident_id}", where="alerts", column="incident",
                         fix="list incidents: smmdn alerts incidents")
    if inc.row["status"] == "resolved":
        raise InputError(f"incident {incident_id} is already resolved", where="alerts", column="status",
                         fix="a new anomaly opens a new incident; nothing to do")
    return inc


def ack_incident(store: Store, incident_id: int, by: str, now: pd.Timestamp, note: str | None = None) -> list[int]:
    """Someone is on the whole incident: every active member acknowledged, the incident marked; returns the
    alert ids acknowledged (no reminders or escalation; the resolution is still sent)."""
    from smmdn.store import incidents as idb

    by = _require_name(by, "acknowledging")
    with store.transaction() as tx:
        inc = _incident(tx, incident_id)
        done = []
        for m in inc.active():
            if m["status"] == "open":
                ack(tx, int(m["id"]), by, now, note=note)
                done.append(int(m["id"]))
        idb.update_incident(tx, incident_id, {"status": "acked", "acked_by": by, "acked_at": now, "ack_note": note,
                                              "updated_at": now})
    return done


def silence_incident(store: Store, incident_id: int, *, by: str, now: pd.Timestamp, until: pd.Timestamp,
                     reason: str | None = None) -> list[int]:
    """Silence what an incident is made of: one silence per active member (its site, depth, sensor and kind),
    so a new, different alert at the site still gets through. Returns the silence ids."""
    by = _require_name(by, "silencing")
    if until <= now:
        raise InputError(f"silence ends {until.isoformat()}, not after now", where="--for/--until",
                         fix="give a positive duration (--for 7d) or a future end time")
    why = f"incident #{incident_id}" + (f": {reason}" if reason else "")
    with store.transaction() as tx:
        inc = _incident(tx, incident_id)
        return [db.add_silence(tx, kind="silence", site=str(m["site"]), starts_at=now, ends_at=until, created_by=by,
                               created_at=now, depth_cm=float(m["depth_cm"]), sensor=str(m["sensor"]),
                               alert_kind=str(m["kind"]), reason=why) for m in inc.active()]
