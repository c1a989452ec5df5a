"""Alert lifecycle: open → (acked) → resolved, one active alert per (series, kind), and every transition that
someone must hear about queued in the outbox *in the same transaction* as the transition itself.

Transitions:
- ``opened``: a key's condition held long enough (``smmdn.alerts.detect``); ``reopened``: it came back within
  the cooldown after a resolution (same alert, no new id: one story per episode).
- ``resolved``: the condition cleared for ``SMMDN_ALERT_CLEAR_STEPS`` days (``auto``), an operator
  resolved it, or its sensor was replaced.
- ``escalated``: open and unacknowledged for ``SMMDN_ALERT_ESCALATE_AFTER_HOURS`` → the teams'
  ``escalate_to`` (reminders are the incident's: ``smmdn.alerts.notify``).
- ``site_silent``: every expected sensor of a site (its logger) is missing; one alert for the site
  (depth 0, sensor ``*``), resolved when any reading arrives. Its inhibition rule mutes the sensors' alerts.
- ``acked`` (operator, by name, ``smmdn.alerts.operator``): no more reminders or escalation; the resolution
  is still announced.
- silences and maintenance windows (``smmdn.alerts.silences``): deliveries are suppressed
  (``smmdn.alerts.deliver``) and reminders not queued while they last; maintenance also takes the site's
  days out of detection.

Plots travel as a spec in the outbox row (``plot_spec``); the deliverer draws them for messages it sends.

Messages: no longer per alert. Alerts are grouped into incidents and notified at the end of the cycle
(``smmdn.alerts.incidents`` / ``notify``); ``enqueue_event`` only records an alert's latest words. Every
event still bumps the alert's ``revision``; a rerun that finds the state already advanced plans no event.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from smmdn.alerts import message
from smmdn.alerts.detect import flags_of
from smmdn.alerts.routing import Routes
from smmdn.alerts.silences import matching_silence
from smmdn.errors import SmmdnError
from smmdn.model.mixture import hdr_intervals, mixture_arrays
from smmdn.store import alerts as db
from smmdn.timeutil import DAY

if TYPE_CHECKING:
    from smmdn.store import Store

log = logging.getLogger(__name__)

KEY = ("site", "depth_cm", "sensor", "kind")
SENSOR_KINDS = ("sensor_fault", "deviation", "flatline", "missing")
PLOTTED = ("opened", "reopened", "reminder", "escalated", "resolved")
DRIFT_KEY = ("*", 0.0, "*", "calibration_drift")
DEFAULT_PLOT_DAYS = 21


class ConcurrentChange(SmmdnError):
    """Another process changed an alert while this run planned it (the run rolls back; rerun it)."""


@dataclass
class Handle:
    """An alert as this run sees it (``id`` is None until an ``open`` inserts it)."""

    id: int | None
    row: dict[str, Any]


@dataclass
class Action:
    op: str  # open | update | reopen | resolve | escalate | remind
    handle: Handle
    values: dict[str, Any] = field(default_factory=dict)
    event: str | None = None
    at: pd.Timestamp | None = None
    note: str | None = None
    plot_day: pd.Timestamp | None = None
    source: Any = None  # the condition row whose day values (HDR, siblings) are filled in at apply time


def key_of(row: dict[str, Any]) -> tuple:
    return (str(row["site"]), float(row["depth_cm"]), str(row["sensor"]), str(row["kind"]))


# ---------------------------------------------------------------------------------------------------
# inputs of planning
# ---------------------------------------------------------------------------------------------------
def site_watermarks(store: Store) -> dict[str, pd.Timestamp]:
    """Last local day evaluated per site (watermarks ``alerts / detected_through:<site>``)."""
    return db.detected_through(store)


def _set_watermarks(store: Store, marks: dict[str, pd.Timestamp], now: pd.Timestamp) -> None:
    current = site_watermarks(store)
    advanced = {f"detected_through:{site}": day for site, day in marks.items()
                if site not in current or day > current[site]}
    if advanced:
        db.set_watermarks(store, "alerts", advanced, now)


def last_readings(store: Store, since: pd.Timestamp, periods: pd.DataFrame, now: pd.Timestamp) -> pd.DataFrame:
    """Series expected to report now, with their last reading since ``since`` (NaT: none in that window).

    Expected: series seen since ``since`` plus registry sensors active now, minus sensors whose active
    period (or recorded replacement) has ended.
    """
    seen = db.last_reading_per_series(store, since, now)
    cols = ["site", "depth_cm", "sensor"]
    if periods is not None and not periods.empty:
        p = periods.copy()
        p["site"], p["sensor"] = p["site"].astype(str), p["sensor"].astype(str)
        p["depth_cm"] = p["depth_cm"].astype(float)
        active = p.loc[(p["active_from"] <= now) & (p["active_to"].isna() | (p["active_to"] > now))]
        ended = p.loc[p["active_to"].notna() & (p["active_to"] <= now), cols]
        seen = seen.merge(active[[*cols, "active_from"]], on=cols, how="outer")
        if not ended.empty:
            gone = seen.merge(ended.assign(_gone=True), on=cols, how="left")["_gone"].eq(True).to_numpy()
            seen = seen.loc[~gone]
    else:
        seen["active_from"] = pd.NaT
    seen["since"] = seen["active_from"].where(seen["active_from"] > since, since) if "active_from" in seen else since
    return seen.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------------
# planning (no writes)
# ---------------------------------------------------------------------------------------------------
def retired(periods: pd.DataFrame | None, now: pd.Timestamp) -> set[tuple[str, float, str]]:
    """Sensors whose active period has ended by ``now`` (replaced or removed): they open no new alerts."""
    if periods is None or periods.empty:
        return set()
    ended = periods.loc[periods["active_to"].notna() & (periods["active_to"] <= now)]
    return {(str(r.site), float(r.depth_cm), str(r.sensor)) for r in ended.itertuples()}


def plan(store: Store, conditions: pd.DataFrame, scored: pd.DataFrame, last: pd.DataFrame, now: pd.Timestamp,
         rules: Any, periods: pd.DataFrame | None = None) -> list[Action]:
    """Turn fresh daily conditions, the last readings and the clock into lifecycle actions."""
    actions: list[Action] = []
    gone = retired(periods, now)
    handles = {key_of(r): Handle(int(r["id"]), r) for r in db.read_alerts(store, status=db.ACTIVE).to_dict("records")}
    fresh = conditions.loc[conditions["_fresh"]] if "_fresh" in conditions and not conditions.empty else conditions
    out_keys = set(map(tuple, fresh.loc[fresh["state"] == "out", list(KEY)].itertuples(index=False))) if len(
        fresh) else set()
    keys = out_keys | {k for k in handles if k[3] in ("sensor_fault", "cluster", "deviation", "flatline")}
    previous = db.last_resolved(store, keys)
    context = _DayContext(scored, rules)
    if len(fresh):
        wanted = [(str(a), float(b), str(c), str(d)) in keys for a, b, c, d in
                  zip(fresh["site"], fresh["depth_cm"], fresh["sensor"], fresh["kind"], strict=True)]
        fresh = fresh.loc[wanted]
    if len(fresh):
        for key, grp in fresh.groupby(list(KEY), sort=True):
            key = (str(key[0]), float(key[1]), str(key[2]), str(key[3]))
            if key[:3] in gone and key not in handles:
                continue
            for r in grp.sort_values("time").itertuples(index=False):
                at = min(r.time + DAY, now)
                handle = handles.get(key)
                if r.state == "out":
                    values = context.basic(r)
                    if handle is not None:
                        _coalesce(actions, Action("update", handle, values, source=r))
                        handle.row.update(values)
                        continue
                    if not (r.out_run >= rules.persistence or r.severe or key[3] == "flatline"):
                        continue
                    prev = previous.get(key)
                    if prev is not None and prev.get("resolved_at") is not None and at - prev["resolved_at"] <= (
                            rules.cooldown):
                        handle = prev.get("_handle") or Handle(int(prev["id"]), dict(prev))
                        values |= {"status": "open", "resolved_at": None, "resolved_by": None, "acked_by": None,
                                   "acked_at": None, "ack_note": None}
                        actions.append(Action("reopen", handle, values, "reopened", at, plot_day=r.time, source=r))
                        previous.pop(key)
                    else:
                        values |= {"kind": key[3], "site": key[0], "depth_cm": key[1], "sensor": key[2],
                                   "window_start": r.run_start, "status": "open", "created_at": at}
                        handle = Handle(None, {})
                        actions.append(Action("open", handle, values, "opened", at, plot_day=r.time, source=r))
                    handle.row.update(values)
                    handles[key] = handle
                elif r.state == "clear" and handle is not None and r.clear_run >= rules.clear_steps:
                    values = {"status": "resolved", "resolved_at": at, "resolved_by": "auto"}
                    actions.append(Action("resolve", handle, values, "resolved", at,
                                          note=(f"agrees with its siblings again for {int(r.clear_run)} day(s)"
                                                if isinstance(getattr(r, "fault", None), str) or (
                                                    key[3] == "sensor_fault" and pd.notna(getattr(r, "residual", None)))
                                                else f"back inside the predicted range for {int(r.clear_run)} day(s)"),
                                          plot_day=r.time))
                    handle.row.update(values)
                    previous[key] = handle.row | {"id": handle.id, "_handle": handle}
                    handles.pop(key)
    _plan_missing(actions, handles, store, last, now, rules)
    _plan_clock(actions, handles, store, now, rules)
    context.fill([a for a in actions if a.source is not None])
    return actions


def _coalesce(actions: list[Action], action: Action) -> None:
    """Consecutive updates of one alert collapse into the last (only its values are written)."""
    for i in range(len(actions) - 1, -1, -1):
        if actions[i].handle is action.handle:
            if actions[i].op == "update":
                actions[i] = action
                return
            break
    actions.append(action)


def _plan_missing(actions: list[Action], handles: dict[tuple, Handle], store: Store, last: pd.DataFrame,
                  now: pd.Timestamp, rules: Any) -> None:
    if last is None or last.empty:
        return
    under = db.read_silences(store, kind="maintenance", active_at=now)
    maintained = set(under["site"]) if not under.empty else set()
    late = _late(last, now, rules.missing_after)  # one vectorised clock; rows visited only where a change is due
    sites, depths, sensors = last["site"].astype(str).tolist(), last["depth_cm"].astype(float).tolist(), \
        last["sensor"].astype(str).tolist()
    for i, (site, depth, sensor) in enumerate(zip(sites, depths, sensors, strict=True)):
        key = (site, depth, sensor, "missing")
        handle = handles.get(key)
        if bool(late[i]) == (handle is not None) or site in maintained or "*" in maintained:
            continue  # late and already alerted, or on time and not alerted: nothing to do
        r = last.iloc[i]
        seen = r["last_reading"] if not pd.isna(r["last_reading"]) else None
        if handle is None:
            values = {"kind": "missing", "site": site, "depth_cm": depth, "sensor": sensor,
                      "window_start": seen if seen is not None else r["since"], "window_end": now, "status": "open",
                      "created_at": now, "details": {
                          "last_reading": seen.isoformat() if seen is not None else None,
                          "missing_after_h": rules.missing_after / pd.Timedelta(hours=1), "basis": "clock"}}
            handle = Handle(None, dict(values))
            actions.append(Action("open", handle, values, "opened", now, plot_day=now.floor("D")))
            handles[key] = handle
        else:
            values = {"status": "resolved", "resolved_at": now, "resolved_by": "auto", "window_end": seen}
            actions.append(Action("resolve", handle, values, "resolved", now, note="readings arrive again",
                                  plot_day=now.floor("D")))
            handle.row.update(values)
            handles.pop(key)
    _plan_silent(actions, handles, last, late, maintained, now, rules)


def _late(last: pd.DataFrame, now: pd.Timestamp, missing_after: pd.Timedelta) -> np.ndarray:
    """Per series: no reading for longer than ``missing_after`` (since its last reading, or since it was
    expected when it has none in the window)."""
    ref = last["last_reading"].where(last["last_reading"].notna(), last["since"])
    return ((now - ref) > missing_after).to_numpy(dtype=bool)


SILENT_SENSOR = "*"


def _plan_silent(actions: list[Action], handles: dict[tuple, Handle], last: pd.DataFrame, late: np.ndarray,
                 maintained: set[str], now: pd.Timestamp, rules: Any) -> None:
    """``site_silent``: every expected sensor of a site missing (the logger, not the probes) — opened with the
    sensors' missing alerts, resolved as soon as any sensor reports again."""
    per_site = last.assign(site=last["site"].astype(str), _late=late).groupby("site").agg(
        sensors=("_late", "size"), all_late=("_late", "all"), newest=("last_reading", "max"), first=("since", "min"))
    for site, sensors, all_late, newest, first in zip(per_site.index, per_site["sensors"], per_site["all_late"],
                                                     per_site["newest"], per_site["first"], strict=True):
        if site in maintained or "*" in maintained:
            continue
        newest = None if pd.isna(newest) else newest
        silent = int(sensors) > 1 and bool(all_late)
        key = (site, 0.0, SILENT_SENSOR, "site_silent")
        handle = handles.get(key)
        if silent and handle is None:
            since = newest if newest is not None else first
            values = {"kind": "site_silent", "site": site, "depth_cm": 0.0, "sensor": SILENT_SENSOR,
                      "window_start": since, "window_end": now, "status": "open", "created_at": now, "details": {
                          "last_reading": newest.isoformat() if newest is not None else None,
                          "sensors": int(sensors), "missing_after_h": rules.missing_after / pd.Timedelta(hours=1),
                          "basis": f"all {int(sensors)} sensors of the site missing"}}
            handle = Handle(None, dict(values))
            actions.append(Action("open", handle, values, "opened", now))
            handles[key] = handle
        elif not silent and handle is not None:
            values = {"status": "resolved", "resolved_at": now, "resolved_by": "auto", "window_end": newest}
            actions.append(Action("resolve", handle, values, "resolved", now, note="the logger reports again"))
            handle.row.update(values)
            handles.pop(key)


def _plan_clock(actions: list[Action], handles: dict[tuple, Handle], store: Store, now: pd.Timestamp,
                rules: Any) -> None:
    """Escalation and reminders for alerts still open (not acknowledged, not silenced) after the day rules."""
    touched = {id(a.handle) for a in actions if a.event}
    silences = db.read_silences(store, active_at=now)
    for handle in handles.values():
        row = handle.row
        if row.get("status") != "open" or id(handle) in touched or matching_silence(row, silences):
            continue
        created = db.aware(row.get("created_at")) or now
        if db.aware(row.get("escalated_at")) is None and now - created >= rules.escalate_after:
            actions.append(Action("escalate", handle, {"escalated_at": now}, "escalated", now, plot_day=now.floor("D")))
        # reminders are the incident's (smmdn.alerts.notify: repeat_interval with backoff), not the alert's


class _DayContext:
    """Per-day values of an alert (observed, PIT, the predicted HDR, siblings) from the scored frame."""

    def __init__(self, scored: pd.DataFrame, rules: Any) -> None:
        self.rules = rules
        self.scored = scored.reset_index(drop=True) if scored is not None else pd.DataFrame()
        self.rows: dict[tuple, np.ndarray] = {}
        if not self.scored.empty:  # positions only: sub-frames are cut for the few rows that need them
            for key, pos in self.scored.groupby(["time", "site", "depth_cm"]).indices.items():
                self.rows[(key[0], str(key[1]), float(key[2]))] = pos

    def group(self, r: Any) -> pd.DataFrame | None:
        pos = self.rows.get((r.time, str(r.site), float(r.depth_cm)))
        return None if pos is None else self.scored.iloc[pos]

    def basic(self, r: Any) -> dict[str, Any]:
        """Values known from the condition row alone (cheap; planning runs on these)."""
        details: dict[str, Any] = {"basis": r.basis, "days_outside": int(r.out_run), "severe": bool(r.severe),
                                   "level_pct": round(100 * (1 - self.rules.alpha), 1), "flags": flags_of(r)}
        fault = getattr(r, "fault", None)
        if isinstance(fault, str):  # the replicate consensus named it: type and the residual vs siblings
            details |= {"fault": fault, "weak_attribution": bool(r.weak), "residual": _float(r.residual),
                        "reference": _float(r.reference), "recent_residuals": list(r.recent or [])}
        elif isinstance(getattr(r, "weak", None), bool | np.bool_) and r.weak:  # a lone sensor: weak evidence
            details |= {"weak_attribution": True, "evidence": "cross-depth and model"}
        return {"window_end": r.time, "observed": _float(r.observed), "pit": _float(r.pit), "details": details}

    def fill(self, actions: list[Action]) -> None:
        """Add the predicted HDR, forecast and sibling values to the actions that will be written (one batch)."""
        firsts, todo = [], []
        for action in actions:
            r = action.source
            grp = self.group(r)
            if grp is None or not grp["has_forecast"].any():
                continue
            firsts.append(grp.loc[grp["has_forecast"]].iloc[0])
            todo.append((action, grp))
        if not todo:
            return
        frame = pd.DataFrame(firsts)
        w, mu, sigma = mixture_arrays(frame)
        regions = hdr_intervals(w, mu, sigma, level=1 - self.rules.alpha)
        for (action, grp), first, hdr in zip(todo, frame.itertuples(), regions, strict=True):
            details = action.values.setdefault("details", {})
            details["hdr"] = [[round(a, 4), round(b, 4)] for a, b in hdr]
            details["issue_time"] = pd.Timestamp(first.issue_time).isoformat()
            details["lead"] = int(first.lead)
            details["model_version"] = str(first.model_version)
            details["siblings"] = {str(x.sensor): {"vwc": _float(x.vwc), "outside": bool(x.outside)}
                                   for x in grp.itertuples() if not pd.isna(x.vwc)}
            if hdr:
                action.values["predicted_low"], action.values["predicted_high"] = float(hdr[0][0]), float(hdr[-1][1])


def _float(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


# ---------------------------------------------------------------------------------------------------
# applying (one transaction)
# ---------------------------------------------------------------------------------------------------
def apply(store: Store, actions: list[Action], now: pd.Timestamp, settings: Any, rules: Any, routes: Routes,
          marks: dict[str, pd.Timestamp] | None = None, attachments: dict[int, bytes] | None = None) -> dict[str, Any]:
    """Write every action and its outbox rows in one transaction (all or nothing); returns counts."""
    sites = site_info(store)
    pngs = dict(attachments or {})
    plot_days = rules.plot_days if rules is not None else DEFAULT_PLOT_DAYS
    counts = {"opened": 0, "reopened": 0, "resolved": 0, "escalated": 0, "messages_queued": 0,
              "events": []}
    names = {"opened": "opened", "reopened": "reopened", "resolved": "resolved", "escalated": "escalated"}
    with store.transaction() as tx:
        ids = sorted({int(a.handle.id) for a in actions if a.op != "open" and a.handle.id is not None})
        current = {int(r["id"]): r for r in db.read_alerts(tx, ids=ids).to_dict("records")} if ids else {}
        for action in actions:
            row = write_action(tx, action, now, current)
            if action.event is None:
                continue
            png = pngs.get(id(action))
            spec = plot_spec(row, action, plot_days) if png is None else None
            queued = enqueue_event(tx, row, action.event, routes, sites.get(row["site"]), now,
                                   attachment=png, plot=spec, note=action.note)
            counts[names[action.event]] += 1
            counts["messages_queued"] += queued
            counts["events"].append({"event": action.event, "alert": row["id"], "kind": row["kind"],
                                     "site": row["site"], "depth_cm": row["depth_cm"], "sensor": row["sensor"]})
        if marks:
            _set_watermarks(tx, marks, now)
    return counts


def write_action(tx: Store, action: Action, now: pd.Timestamp,
                 current_rows: dict[int, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write one action's alert row (insert or revision-checked update); returns the row as written.

    ``current_rows`` (alert id → row, read once for every action of a run, kept up to date here) spares two
    reads per update: an update without an event is taken as written (its values over the row it updated),
    rows behind an event are read back (their message is rendered from them)."""
    handle = action.handle
    values = dict(action.values)
    values["updated_at"] = now
    if action.op == "open":
        start = pd.Timestamp(values["window_start"])
        values.update(revision=1, last_event_at=action.at,
                      dedup_key=f"{values['kind']}|{values['site']}|{float(values['depth_cm']):g}|{values['sensor']}|"
                                f"{start.isoformat()}|{pd.Timestamp(action.at).isoformat()}")
        values.setdefault("details", {})
        values.setdefault("window_end", values["window_start"])
        handle.id = db.insert_alert(tx, values)
    else:
        current = (current_rows or {}).get(int(handle.id)) if handle.id is not None else None
        if current is None:
            current = db.get_alert(tx, handle.id)
        if current is None:
            raise ConcurrentChange(f"alert {handle.id} disappeared")
        if action.event:
            values["revision"] = int(current["revision"]) + 1
            if action.op in ("reopen", "escalate", "remind"):
                values["last_event_at"] = action.at
        if "details" in values:
            values["details"] = {**(current.get("details") or {}), **values["details"]}
        expected = int(handle.row.get("revision", current["revision"]))
        if not db.update_alert(tx, handle.id, values, expect_revision=expected):
            raise ConcurrentChange(f"alert {handle.id} changed while detection ran; rerun detection")
        if current_rows is not None and action.event is None:
            handle.row = current_rows[int(handle.id)] = {**current, **values}
            return handle.row
    row = db.get_alert(tx, handle.id)
    handle.row = dict(row)
    if current_rows is not None:
        current_rows[int(handle.id)] = handle.row
    return handle.row


def plot_spec(row: dict[str, Any], action: Action, plot_days: int) -> dict[str, Any] | None:
    """What the deliverer needs to draw this event's plot if its message goes out (None: no plot).

    Only the spec is queued: drawing is left to delivery, for messages that are actually sent, so the
    detection loop renders nothing (``smmdn.alerts.deliver``).
    """
    if action.event not in PLOTTED or action.plot_day is None or row.get("site") in (None, "*"):
        return None
    since = row.get("window_start")
    return {"site": str(row["site"]), "depth_cm": float(row["depth_cm"]), "sensor": str(row["sensor"]),
            "day": pd.Timestamp(action.plot_day).isoformat(), "days": int(plot_days),
            "since": None if since is None or pd.isna(since) else pd.Timestamp(since).isoformat(),
            "title": message.subject(row, action.event).removeprefix("[smmdn] ")}


def enqueue_event(tx: Store, alert: dict[str, Any], event: str, routes: Routes, site: dict[str, Any] | None,
                  now: pd.Timestamp, *, attachment: bytes | None = None, plot: dict[str, Any] | None = None,
                  note: str | None = None) -> int:
    """Record the latest words of ``alert`` for ``smmdn alerts show``; returns the messages queued (none).

    Messages are no longer sent per alert: the alert's incident is what teams hear about, planned at the
    end of the cycle by ``smmdn.alerts.notify`` (grouped, inhibited, bounded reminders). ``attachment`` and
    ``plot`` are accepted for the callers' sake; the incident message draws its own evidence plot, except a
    PNG its producer drew (``attachment``), kept with the alert for the incident's message.
    """
    teams = routes.teams_for_alert(alert["kind"], alert["site"], (site or {}).get("tags") or [])
    if event == "escalated":
        teams = routes.escalation_teams(teams)
    _, body = message.render(alert, event, site, teams, note, routes.vwc_resolution)
    values: dict[str, Any] = {"message": body}
    if attachment:  # a plot only its producer can draw (the reliability plot): the incident message carries it
        import base64

        values["details"] = {**(alert.get("details") or {}), PLOT_KEY: base64.b64encode(attachment).decode("ascii")}
    db.update_alert(tx, int(alert["id"]), values)
    return 0


PLOT_KEY = "plot_png_b64"


def site_info(store: Store) -> dict[str, dict[str, Any]]:
    """Registry facts per site (name, coordinates, tags) for messages and routing."""
    sites = store.read_sites()
    return {str(r["site"]): r for r in sites.to_dict("records")} if not sites.empty else {}


