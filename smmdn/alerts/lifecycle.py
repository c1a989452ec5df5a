"""Alert lifecycle: open → (acked) → resolved, one active alert per (series, kind), and every transition that
someone must hear about queued in the outbox *in the same transaction* as the transition itself.

Transitions:
- ``opened``: a key's condition held long enough (``smmdn.anomalies``); ``reopened``: it came back within
  the cooldown after a resolution (same alert, no new id: one story per episode).
- ``resolved``: the condition cleared for ``SMMDN_ALERT_CLEAR_STEPS`` days (``auto``), an operator
  resolved it, or its sensor was replaced.
- ``escalated``: open and unacknowledged for ``SMMDN_ALERT_ESCALATE_AFTER_HOURS`` → the teams'
  ``escalate_to``; ``reminder``: still open and unacknowledged, at most once per cooldown.
- ``acked`` (operator, by name): no more reminders or escalation; the resolution is still announced.
- silences and maintenance windows: deliveries are suppressed (``smmdn.notify``) and reminders not
  queued while they last; maintenance also takes the site's days out of detection.

Idempotency: every event bumps the alert's ``revision``; its outbox rows are keyed
``alert:<id>:r<revision>:<event>:<target>``. A rerun that finds the state already advanced plans no
event; a run that failed half-way rolled back completely and replans the same keys.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from smmdn.alerts import message
from smmdn.alerts.routing import Routes
from smmdn.errors import InputError, SmmdnError
from smmdn.store import alerts as db
from smmdn.store import tables as T

log = logging.getLogger(__name__)

DAY = pd.Timedelta(days=1)
KEY = ("site", "depth_cm", "sensor", "kind")
SENSOR_KINDS = ("sensor_fault", "deviation", "flatline", "missing")
PLOTTED = ("opened", "reopened", "reminder", "escalated", "resolved")
DRIFT_KEY = ("*", 0.0, "*", "calibration_drift")


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
def site_watermarks(store: Any) -> dict[str, pd.Timestamp]:
    """Last local day evaluated per site (watermarks ``alerts / detected_through:<site>``)."""
    w = T.watermarks
    with store._begin() as conn:
        rows = conn.execute(sa.select(w.c.key, w.c.value).where(
            w.c.source == "alerts", w.c.key.like("detected_through:%"))).all()
    return {key.split(":", 1)[1]: db.aware(value) for key, value in rows}


def _set_watermarks(store: Any, marks: dict[str, pd.Timestamp], now: pd.Timestamp) -> None:
    current = site_watermarks(store)
    advanced = {f"detected_through:{site}": day for site, day in marks.items()
                if site not in current or day > current[site]}
    if advanced:
        db.set_watermarks(store, "alerts", advanced, now)


def drop_maintenance(store: Any, days: pd.DataFrame, offsets: dict[str, float]) -> pd.DataFrame:
    """Daily rows whose local day overlaps a maintenance window of their site are not evaluated."""
    if days.empty:
        return days
    offset = pd.to_timedelta(days["site"].map(offsets).fillna(0.0).to_numpy(), unit="h")
    start = days["time"] - offset
    windows = db.read_silences(store, kind="maintenance", overlapping=(start.min(), (start + DAY).max()))
    if windows.empty:
        return days
    hit = np.zeros(len(days), dtype=bool)
    for w in windows.itertuples():
        hit |= ((days["site"] == w.site) | (w.site == "*")).to_numpy() & (start < w.ends_at).to_numpy() & (
            (start + DAY) > w.starts_at).to_numpy()
    return days.loc[~hit]


def last_readings(store: Any, since: pd.Timestamp, periods: pd.DataFrame, now: pd.Timestamp) -> pd.DataFrame:
    """Series expected to report now, with their last reading since ``since`` (NaT: none in that window).

    Expected: series seen since ``since`` plus registry sensors active now, minus sensors whose active
    period (or recorded replacement) has ended.
    """
    o = T.observations
    with store._begin() as conn:
        seen = pd.DataFrame(conn.execute(
            sa.select(o.c.site, o.c.depth_cm, o.c.sensor, sa.func.max(o.c.time).label("last_reading"))
            .where(o.c.time >= db._ts(since), o.c.time <= db._ts(now))
            .group_by(o.c.site, o.c.depth_cm, o.c.sensor)).all(),
            columns=["site", "depth_cm", "sensor", "last_reading"])
    seen["last_reading"] = pd.to_datetime(seen["last_reading"], utc=True)
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


def matching_silence(alert: dict[str, Any], silences: pd.DataFrame) -> dict[str, Any] | None:
    """The first silence or maintenance window (active at the time ``silences`` was read) covering ``alert``."""
    if silences is None or silences.empty:
        return None
    for s in silences.to_dict("records"):
        if s["site"] not in (alert["site"], "*"):
            continue
        if s["kind"] == "silence":
            if s.get("depth_cm") is not None and not pd.isna(s["depth_cm"]) and float(s["depth_cm"]) != float(
                    alert["depth_cm"]):
                continue
            if s.get("sensor") and s["sensor"] != alert["sensor"]:
                continue
            if s.get("alert_kind") and s["alert_kind"] != alert["kind"]:
                continue
        return s
    return None


# ---------------------------------------------------------------------------------------------------
# planning (no writes)
# ---------------------------------------------------------------------------------------------------
def retired(periods: pd.DataFrame | None, now: pd.Timestamp) -> set[tuple[str, float, str]]:
    """Sensors whose active period has ended by ``now`` (replaced or removed): they open no new alerts."""
    if periods is None or periods.empty:
        return set()
    ended = periods.loc[periods["active_to"].notna() & (periods["active_to"] <= now)]
    return {(str(r.site), float(r.depth_cm), str(r.sensor)) for r in ended.itertuples()}


def plan(store: Any, conditions: pd.DataFrame, scored: pd.DataFrame, last: pd.DataFrame, now: pd.Timestamp,
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
                                          note=f"back inside the predicted range for {int(r.clear_run)} day(s)",
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


def _plan_missing(actions: list[Action], handles: dict[tuple, Handle], store: Any, last: pd.DataFrame,
                  now: pd.Timestamp, rules: Any) -> None:
    if last is None or last.empty:
        return
    under = db.read_silences(store, kind="maintenance", active_at=now)
    maintained = set(under["site"]) if not under.empty else set()
    for r in last.itertuples(index=False):
        if r.site in maintained or "*" in maintained:
            continue
        key = (str(r.site), float(r.depth_cm), str(r.sensor), "missing")
        handle = handles.get(key)
        seen = r.last_reading if not pd.isna(r.last_reading) else None
        age = now - (seen if seen is not None else r.since)
        if age > rules.missing_after and handle is None:
            values = {"kind": "missing", "site": key[0], "depth_cm": key[1], "sensor": key[2],
                      "window_start": seen if seen is not None else r.since, "window_end": now, "status": "open",
                      "created_at": now, "details": {
                          "last_reading": seen.isoformat() if seen is not None else None,
                          "missing_after_h": rules.missing_after / pd.Timedelta(hours=1), "basis": "clock"}}
            handle = Handle(None, dict(values))
            actions.append(Action("open", handle, values, "opened", now, plot_day=now.floor("D")))
            handles[key] = handle
        elif age <= rules.missing_after and handle is not None:
            values = {"status": "resolved", "resolved_at": now, "resolved_by": "auto", "window_end": seen}
            actions.append(Action("resolve", handle, values, "resolved", now, note="readings arrive again",
                                  plot_day=now.floor("D")))
            handle.row.update(values)
            handles.pop(key)


def _plan_clock(actions: list[Action], handles: dict[tuple, Handle], store: Any, now: pd.Timestamp,
                rules: Any) -> None:
    """Escalation and reminders for alerts still open (not acknowledged, not silenced) after the day rules."""
    touched = {id(a.handle) for a in actions if a.event}
    silences = db.read_silences(store, active_at=now)
    for handle in handles.values():
        row = handle.row
        if row.get("status") != "open" or id(handle) in touched or matching_silence(row, silences):
            continue
        created = db.aware(row.get("created_at")) or now
        last_event = db.aware(row.get("last_event_at")) or created
        if db.aware(row.get("escalated_at")) is None and now - created >= rules.escalate_after:
            actions.append(Action("escalate", handle, {"escalated_at": now}, "escalated", now, plot_day=now.floor("D")))
        elif rules.cooldown > pd.Timedelta(0) and now - last_event >= rules.cooldown:
            actions.append(Action("remind", handle, {}, "reminder", now, plot_day=now.floor("D")))


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
        from smmdn.anomalies import flags_of

        details: dict[str, Any] = {"basis": r.basis, "days_outside": int(r.out_run), "severe": bool(r.severe),
                                   "level_pct": round(100 * (1 - self.rules.alpha), 1), "flags": flags_of(r)}
        return {"window_end": r.time, "observed": _float(r.observed), "pit": _float(r.pit), "details": details}

    def fill(self, actions: list[Action]) -> None:
        """Add the predicted HDR, forecast and sibling values to the actions that will be written (one batch)."""
        from smmdn.anomalies import mixture_arrays
        from smmdn.model.mixture import hdr_intervals

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
def apply(store: Any, actions: list[Action], now: pd.Timestamp, settings: Any, rules: Any, routes: Routes,
          marks: dict[str, pd.Timestamp] | None = None, attachments: dict[int, bytes] | None = None) -> dict[str, Any]:
    """Write every action and its outbox rows in one transaction (all or nothing); returns counts."""
    sites = site_info(store)
    pngs = dict(attachments or {})
    pngs.update(_render_plots(store, [a for a in actions if a.event in PLOTTED and id(a) not in pngs], rules, now))
    counts = {"opened": 0, "reopened": 0, "resolved": 0, "escalated": 0, "reminders": 0, "messages_queued": 0,
              "events": []}
    names = {"opened": "opened", "reopened": "reopened", "resolved": "resolved", "escalated": "escalated",
             "reminder": "reminders"}
    with store.transaction() as tx:
        for action in actions:
            row = _write(tx, action, now)
            if action.event is None:
                continue
            queued = enqueue_event(tx, row, action.event, routes, sites.get(row["site"]), now,
                                   attachment=pngs.get(id(action)), note=action.note)
            counts[names[action.event]] += 1
            counts["messages_queued"] += queued
            counts["events"].append({"event": action.event, "alert": row["id"], "kind": row["kind"],
                                     "site": row["site"], "depth_cm": row["depth_cm"], "sensor": row["sensor"]})
        if marks:
            _set_watermarks(tx, marks, now)
    return counts


def _write(tx: Any, action: Action, now: pd.Timestamp) -> dict[str, Any]:
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
    row = db.get_alert(tx, handle.id)
    handle.row = dict(row)
    return handle.row


def enqueue_event(tx: Any, alert: dict[str, Any], event: str, routes: Routes, site: dict[str, Any] | None,
                  now: pd.Timestamp, *, attachment: bytes | None = None, note: str | None = None) -> int:
    """Queue one message per target of the teams that should hear about ``event`` of ``alert``."""
    if alert["kind"] == "calibration_drift":
        teams = routes.operator_teams()
    else:
        teams = routes.teams_for(alert["site"], (site or {}).get("tags") or [], alert["kind"])
    if event == "escalated":
        teams = routes.escalation_teams(teams)
    title, body = message.render(alert, event, site, teams, note)
    db.update_alert(tx, int(alert["id"]), {"message": body})  # the latest words, for `smmdn alerts show`
    rows = []
    for team in teams:
        for target in routes.targets(team):
            rows.append({
                "idempotency_key": f"alert:{alert['id']}:r{alert['revision']}:{event}:{target}",
                "alert_id": int(alert["id"]), "event": event, "team": team, "target": target, "title": title,
                "body": body, "attachment": attachment,
                "attachment_name": f"alert-{alert['id']}-{event}.png" if attachment else None,
                "status": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now,
            })
    return db.enqueue(tx, rows)


def site_info(store: Any) -> dict[str, dict[str, Any]]:
    sites = store.read_sites()
    return {str(r["site"]): r for r in sites.to_dict("records")} if not sites.empty else {}


def _render_plots(store: Any, actions: list[Action], rules: Any, now: pd.Timestamp) -> dict[int, bytes]:
    """One PNG per plotted event: recent daily observations at the alert's site and depth over the fan."""
    from smmdn.alerts import plots
    from smmdn.anomalies import daily_readings, latest_before
    from smmdn.cycle import site_offsets

    wanted = [a for a in actions if a.handle.row.get("site") not in (None, "*") and a.plot_day is not None]
    if not wanted:
        return {}
    sites = sorted({str(a.handle.row["site"]) for a in wanted})
    end = max(a.plot_day for a in wanted) + DAY
    start = min(a.plot_day for a in wanted) - rules.plot_days * DAY
    try:
        raw = store.read_observations(sites=sites, start=start - DAY, end=end + DAY)
        days = daily_readings(raw, site_offsets(store))
        forecasts = store.read_forecasts(sites=sites, start=start, end=end + 16 * DAY)
    except Exception as exc:  # a plot is a courtesy: never lose the alert for it
        log.warning("alert plots skipped: %s", exc)
        return {}
    past = latest_before(forecasts)
    out: dict[int, bytes] = {}
    for a in wanted:
        row = a.handle.row
        site, depth = str(row["site"]), float(row["depth_cm"])
        lo, hi = a.plot_day - rules.plot_days * DAY, a.plot_day + DAY
        obs = days.loc[(days["site"] == site) & (days["depth_cm"] == depth) & (days["time"] >= lo)
                       & (days["time"] < hi)]
        fan = past.loc[(past["site"] == site) & (past["depth_cm"] == depth) & (past["valid_time"] >= lo)
                       & (past["valid_time"] < hi)] if not past.empty else past
        future = None
        if not forecasts.empty:
            mine = forecasts.loc[(forecasts["site"].astype(str) == site) & (forecasts["depth_cm"] == depth)
                                 & (forecasts["issue_time"] <= a.plot_day)]
            if not mine.empty:
                latest = mine.loc[mine["issue_time"] == mine["issue_time"].max()]
                future = latest.loc[latest["valid_time"] >= a.plot_day].rename(columns={"valid_time": "time"})
        title = message.subject(row, a.event or "opened").removeprefix("[smmdn] ")
        try:
            out[id(a)] = plots.alert_png(
                obs[["time", "sensor", "vwc"]].dropna(), fan.rename(columns={"valid_time": "time"}) if len(fan) else
                fan, title, highlight=None if row["sensor"] == "*" else str(row["sensor"]), future=future,
                since=pd.Timestamp(row["window_start"]) if row.get("window_start") is not None else None)
        except Exception as exc:
            log.warning("alert plot failed for %s: %s", title, exc)
    return out


# ---------------------------------------------------------------------------------------------------
# operator actions
# ---------------------------------------------------------------------------------------------------
def _require_name(by: str | None, what: str) -> str:
    if not by or not by.strip():
        raise InputError(f"{what} needs the name of the person doing it", where="--by",
                         fix="pass --by <your name> (it is recorded with the alert)")
    return by.strip()


def _active(store: Any, alert_id: int) -> dict[str, Any]:
    row = db.get_alert(store, alert_id)
    if row is None:
        raise InputError(f"no alert {alert_id}", where="alerts", column="id", fix="list alerts: smmdn alerts list")
    if row["status"] == "resolved":
        raise InputError(f"alert {alert_id} is already resolved", where="alerts", column="status",
                         fix="a new anomaly opens a new alert; nothing to do")
    return row


def ack(store: Any, alert_id: int, by: str, now: pd.Timestamp, note: str | None = None) -> dict[str, Any]:
    """Someone is on it: no more reminders or escalation for this alert (its resolution is still sent)."""
    by = _require_name(by, "acknowledging")
    row = _active(store, alert_id)
    db.update_alert(store, alert_id, {"status": "acked", "acked_by": by, "acked_at": now, "ack_note": note,
                                      "updated_at": now, "revision": int(row["revision"]) + 1},
                    expect_revision=int(row["revision"]))
    return db.get_alert(store, alert_id) or {}


def resolve(store: Any, alert_id: int, by: str, now: pd.Timestamp, routes: Routes,
            note: str | None = None) -> dict[str, Any]:
    """Resolved by an operator: the resolution message goes out; a new anomaly later opens a new alert."""
    by = _require_name(by, "resolving")
    with store.transaction() as tx:
        row = _active(tx, alert_id)
        action = Action("resolve", Handle(alert_id, row), {"status": "resolved", "resolved_at": now,
                                                           "resolved_by": by}, "resolved", now, note=note)
        written = _write(tx, action, now)
        enqueue_event(tx, written, "resolved", routes, site_info(tx).get(written["site"]), now, note=note)
    return written


def _site_known(store: Any, site: str) -> None:
    if site == "*":
        return
    if site not in site_info(store):
        raise InputError(f"unknown site {site!r}", where="alerts", column="site",
                         fix="use a site id from the registry (smmdn sites list)")


def silence(store: Any, site: str, *, by: str, now: pd.Timestamp, until: pd.Timestamp, depth_cm: float | None = None,
            sensor: str | None = None, kind: str | None = None, reason: str | None = None) -> int:
    """Suppress deliveries for matching alerts until ``until`` (alerts are still opened and listed)."""
    by = _require_name(by, "silencing")
    _site_known(store, site)
    if until <= now:
        raise InputError(f"silence ends {until.isoformat()}, not after now", where="--for/--until",
                         fix="give a positive duration (--for 7d) or a future end time")
    return db.add_silence(store, kind="silence", site=site, starts_at=now, ends_at=until, created_by=by,
                          created_at=now, depth_cm=depth_cm, sensor=sensor, alert_kind=kind, reason=reason)


def maintenance(store: Any, site: str, *, by: str, start: pd.Timestamp, end: pd.Timestamp, now: pd.Timestamp,
                reason: str | None = None) -> int:
    """Planned field work: the site's days in [start, end) raise no alerts and nothing is delivered meanwhile."""
    by = _require_name(by, "planning maintenance")
    _site_known(store, site)
    if end <= start:
        raise InputError("maintenance window ends before it starts", where="--start/--end", fix="give start < end")
    return db.add_silence(store, kind="maintenance", site=site, starts_at=start, ends_at=end, created_by=by,
                          created_at=now, reason=reason)


def replace_sensor(store: Any, site: str, depth_cm: float, old: str, new: str | None, *, at: pd.Timestamp, by: str,
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
    o = T.observations
    with store._begin() as conn:
        has_data = conn.execute(sa.select(o.c.time).where(o.c.site == site, o.c.depth_cm == depth_cm,
                                                          o.c.sensor == old).limit(1)).first() is not None
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
            written = _write(tx, action, now)
            enqueue_event(tx, written, "resolved", routes, info, now, note=why)
            closed.append(int(row["id"]))
    return closed


# ---------------------------------------------------------------------------------------------------
# calibration drift (from verification)
# ---------------------------------------------------------------------------------------------------
def drift_transition(store: Any, now: pd.Timestamp, drift: bool, details: dict[str, Any], routes: Routes,
                     attachment: bytes | None = None) -> str | None:
    """Open / update / resolve the network-wide calibration-drift alert; returns the event queued, if any."""
    active = db.read_alerts(store, status=db.ACTIVE, kinds=["calibration_drift"])
    handle = Handle(int(active.iloc[0]["id"]), active.iloc[0].to_dict()) if not active.empty else None
    if drift and handle is None:
        values = {"kind": "calibration_drift", "site": "*", "depth_cm": 0.0, "sensor": "*", "window_start": now,
                  "window_end": now, "status": "open", "created_at": now, "details": details,
                  "observed": details.get("coverage_90")}
        action = Action("open", Handle(None, {}), values, "opened", now)
    elif drift and handle is not None:
        action = Action("update", handle, {"window_end": now, "details": details,
                                           "observed": details.get("coverage_90")})
    elif not drift and handle is not None:
        action = Action("resolve", handle, {"status": "resolved", "resolved_at": now, "resolved_by": "auto",
                                            "details": details}, "resolved", now,
                        note="calibration back inside the limits (or too few scores since the last full retrain)")
    else:
        return None
    apply(store, [action], now, None, None, routes, attachments={id(action): attachment} if attachment else None)
    return action.event
