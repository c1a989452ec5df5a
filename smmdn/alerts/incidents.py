"""Incidents: alerts that share a cause, grouped (Alertmanager's dispatcher, with the cause as group_by).

Why: a fault on one probe also moves its siblings' reference and its cluster's mean, a silent logger
makes every sensor missing; one message per alert told a team the same story many times. Grouping:

- a ``site_silent`` alert (every sensor of a logger missing) takes every other alert at its site;
- a sensor fault (``sensor_fault``, ``flatline``) takes the deviations and the cluster alert at its depth,
  and the earlier alerts of the same sensor;
- a ``cluster`` alert takes the cluster alerts at the site's other depths and their sensor deviations;
- ``missing`` alerts of one site share an incident, with the cluster alerts raised at a missing sensor's depth
  while it is missing (``sensor-missing`` mutes them); anything else starts its own.

- a sensor fault also takes the incident of a fault at its depth found by an earlier run (a healthy sibling
  blamed because the faulty probe bends its reference is the same story; ``sensor-fault-first`` mutes it);
  faults found by the same run are independent findings and stay apart.

An incident is open while any member is active, acknowledged when an operator acknowledged it (or every
un-inhibited member), resolved when every member is; a member that comes back reopens it. A resolution is
*held* for ``resolve_hold`` (routes file, ``notify:``): an alert that belongs to the incident and is raised
within the hold after its resolution joins it again (a flapping condition is one story, not RESOLVED/BACK
pairs); after the hold the incident stays resolved and a recurrence starts a new one.

Which members are inhibited, and by what, is decided here too (``smmdn.alerts.inhibit``), and kept with the
member. A member muted by an alert of *another* incident moves to that incident (its cause was found
there: a cluster alert explained by a sensor fault found later joins the fault's incident); an incident
left without an active member that way is closed as merged (``group_key`` ``merged:<id>``, status
``resolved``), and nothing more is sent about it. A deviation or cluster alert muted by its incident's cause
stays muted when the cause clears first (it is the same story clearing a little later; no update). What is
*sent* about incidents is ``smmdn.alerts.notify``'s job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from smmdn.alerts.inhibit import Rule, inhibitions
from smmdn.alerts.lifecycle import ConcurrentChange
from smmdn.alerts.routing import OPERATOR_KINDS, Routes
from smmdn.store import alerts as adb
from smmdn.store import incidents as idb

if TYPE_CHECKING:
    from smmdn.store import Store

MERGED = "merged:"
ROOT_ORDER = {"site_silent": 0, "sensor_fault": 1, "flatline": 1, "cluster": 2, "missing": 3, "deviation": 4}
FAULTS = ("sensor_fault", "flatline")


@dataclass
class Incident:
    """An incident with its member alerts as this run sees them."""

    row: dict[str, Any]
    members: list[dict[str, Any]] = field(default_factory=list)  # alert rows + inhibited_by / inhibit_rule
    stored: dict[str, Any] = field(default_factory=dict)  # the row as the database has it (what to update)

    def __post_init__(self) -> None:
        if not self.stored:
            self.stored = dict(self.row)

    @property
    def id(self) -> int:
        return int(self.row["id"])

    @property
    def root(self) -> dict[str, Any]:
        rid = self.row.get("root_alert_id")
        return next((m for m in self.members if m["id"] == rid), self.members[0] if self.members else {})

    def active(self) -> list[dict[str, Any]]:
        return [m for m in self.members if m["status"] in adb.ACTIVE]

    def loud(self) -> list[dict[str, Any]]:
        """Members the messages are about: not inhibited (resolved ones included: a member that cleared
        does not change the story; a new one does)."""
        return [m for m in self.members if m.get("inhibited_by") is None]

    def speaking(self) -> list[dict[str, Any]]:
        """Loud members still active."""
        return [m for m in self.loud() if m["status"] in adb.ACTIVE]

    @property
    def merged_into(self) -> int | None:
        """The incident this one was folded into (its members' cause was found there), or None."""
        key = str(self.row.get("group_key") or "")
        return int(key.removeprefix(MERGED)) if key.startswith(MERGED) else None

    def held(self, at: pd.Timestamp | None, hold: pd.Timedelta) -> bool:
        """Resolved, but less than ``hold`` before ``at``: an alert of its cause raised at ``at`` rejoins it."""
        if self.row.get("status") != "resolved" or self.merged_into is not None or at is None:
            return False
        ended = adb.aware(self.row.get("resolved_at"))
        return ended is not None and at - ended <= hold


def _same_site(alert: dict[str, Any], inc: Incident) -> bool:
    return str(inc.row["site"]) == str(alert["site"])


def _same_depth(alert: dict[str, Any], inc: Incident) -> bool:
    return _same_site(alert, inc) and inc.row.get("depth_cm") is not None and float(inc.row["depth_cm"]) == float(
        alert["depth_cm"])


def _same_sensor(alert: dict[str, Any], inc: Incident) -> bool:
    return _same_depth(alert, inc) and str(inc.row.get("sensor")) == str(alert["sensor"])


def _earlier(inc: Incident, alert: dict[str, Any]) -> bool:
    """The incident was opened by an earlier run than the one that raised ``alert``."""
    opened, raised = adb.aware(inc.row.get("opened_at")), adb.aware(alert.get("created_at"))
    return opened is None or raised is None or opened < raised


def home_of(alert: dict[str, Any], open_incidents: list[Incident]) -> Incident | None:
    """The open incident a new alert belongs to (None: it starts its own)."""
    kind = alert["kind"]
    if kind in OPERATOR_KINDS:
        return None
    candidates = [i for i in open_incidents if _same_site(alert, i)]

    def first(test: Any) -> Incident | None:
        return next((i for i in candidates if test(i)), None)

    if kind == "site_silent":
        return first(lambda i: i.row["kind"] == "missing")
    found = first(lambda i: i.row["kind"] == "site_silent")
    if found:
        return found
    if kind in FAULTS:  # a sibling's fault found by a later run than this depth's fault: the same story
        return (first(lambda i: _same_sensor(alert, i))
                or first(lambda i: i.row["kind"] in FAULTS and _same_depth(alert, i) and _earlier(i, alert)))
    if kind in ("deviation", "cluster"):
        return (first(lambda i: i.row["kind"] in FAULTS and _same_depth(alert, i))
                or (first(lambda i: _missing_at_depth(alert, i)) if kind == "cluster" else None)
                or first(lambda i: i.row["kind"] == "cluster")
                or (first(lambda i: _same_sensor(alert, i)) if kind == "deviation" else None))
    if kind == "missing":
        return first(lambda i: i.row["kind"] == "missing")
    return None


def _missing_at_depth(alert: dict[str, Any], inc: Incident) -> bool:
    """The incident holds a missing sensor at the alert's depth that is active or whose incident is held
    (a disconnected replicate leaves the consensus at its depth to the others: their cluster call is that
    sensor's story, ``sensor-missing``)."""
    held = not inc.active()
    return _same_site(alert, inc) and any(
        m["kind"] == "missing" and float(m["depth_cm"]) == float(alert["depth_cm"])
        and (held or m["status"] in adb.ACTIVE) for m in inc.members)


def _group_key(alert: dict[str, Any]) -> str:
    kind, site = alert["kind"], alert["site"]
    if kind in OPERATOR_KINDS:
        return f"network|{kind}"
    if kind in ("site_silent", "missing", "cluster"):
        return f"{'silent' if kind != 'cluster' else 'cluster'}|{site}"
    return f"sensor|{site}|{float(alert['depth_cm']):g}|{alert['sensor']}"


def _upgrade_root(inc: Incident, alert: dict[str, Any]) -> None:
    """A stronger explanation joined (a fault after its deviation, a silent logger after its missing
    sensors): it becomes the root the messages speak of."""
    if inc.row["kind"] == "missing" and alert["kind"] in CONSEQUENCES:
        return  # a missing sensor's consequence (sensor-missing) does not speak for the incident
    if ROOT_ORDER.get(alert["kind"], 9) < ROOT_ORDER.get(inc.row["kind"], 9):
        inc.row.update(kind=alert["kind"], root_alert_id=int(alert["id"]), group_key=_group_key(alert),
                       depth_cm=alert["depth_cm"] if alert["kind"] != "site_silent" else None,
                       sensor=alert["sensor"] if alert["kind"] in FAULTS or alert["kind"] == "deviation" else None)


HELD_LOOKBACK = pd.Timedelta(days=7)  # resolutions still to announce after a hold: read back this far


def group(tx: Store, now: pd.Timestamp, rules: tuple[Rule, ...],
          hold: pd.Timedelta = pd.Timedelta(0)) -> list[Incident]:
    """Bring incidents up to date with the alerts (membership, inhibition, status); returns every incident
    that is not resolved, changed in this run (resolved now included) or resolved within ``hold`` plus
    ``HELD_LOOKBACK`` (its resolution may still be due), members attached."""
    active = adb.read_alerts(tx, status=adb.ACTIVE).to_dict("records")
    current = idb.read_incidents(tx, status=["open", "acked"])
    recent = idb.read_incidents(tx, status=["resolved"], resolved_since=now - hold - HELD_LOOKBACK)
    current = recent if current.empty else pd.concat([current, recent], ignore_index=True) if len(recent) else current
    mine = idb.read_members(tx, alert_ids=[a["id"] for a in active]) if active else pd.DataFrame()
    reopened = sorted(set(mine["incident_id"]) - set(current["id"])) if len(mine) else []
    rows = current.to_dict("records") + (idb.read_incidents(tx, ids=reopened).to_dict("records") if reopened else [])
    incidents = {int(r["id"]): Incident(dict(r)) for r in rows}
    members = idb.read_members(tx, incident_ids=list(incidents)) if incidents else pd.DataFrame()
    alerts = {int(a["id"]): a for a in active}
    missing_ids = [int(i) for i in members["alert_id"] if int(i) not in alerts] if len(members) else []
    if missing_ids:
        alerts |= {int(a["id"]): a for a in adb.read_alerts(tx, ids=missing_ids).to_dict("records")}
    member_of: dict[int, int] = {}
    for m in members.to_dict("records") if len(members) else []:
        a = dict(alerts[int(m["alert_id"])])
        a.update(inhibited_by=_int(m.get("inhibited_by")), inhibit_rule=m.get("inhibit_rule"),
                 inhibit_reason=m.get("inhibit_reason"), joined_at=m.get("joined_at"))
        incidents[int(m["incident_id"])].members.append(a)
        member_of[int(a["id"])] = int(m["incident_id"])
    fresh = sorted((a for a in active if int(a["id"]) not in member_of),
                   key=lambda a: (ROOT_ORDER.get(a["kind"], 9), a["id"]))
    for alert in fresh:
        at = adb.aware(alert.get("created_at")) or now
        # a cleared episode is not joined, except within the hold of its resolution
        open_now = [i for i in incidents.values() if i.merged_into is None and (i.active() or i.held(at, hold))]
        inc = home_of(alert, open_now)
        if inc is None:
            values = {"group_key": _group_key(alert), "kind": alert["kind"], "root_alert_id": int(alert["id"]),
                      "site": alert["site"], "depth_cm": None if alert["kind"] in ("site_silent", "missing", "cluster")
                      else float(alert["depth_cm"]),
                      "sensor": None if alert["kind"] in ("site_silent", "missing", "cluster") else alert["sensor"],
                      "status": "open", "opened_at": now, "updated_at": now}
            if alert["kind"] in OPERATOR_KINDS or alert["kind"] == "cluster":
                values["depth_cm"] = float(alert["depth_cm"]) if alert["kind"] == "cluster" else None
            inc = Incident({**values, "id": idb.insert_incident(tx, values)})
            incidents[inc.id] = inc
        else:
            _upgrade_root(inc, alert)
        if not idb.add_member(tx, inc.id, int(alert["id"]), now):
            raise ConcurrentChange(f"alert {alert['id']} was grouped by another run meanwhile; plan again")
        quiet = _after_its_cause(alert, inc, rules)
        inc.members.append({**alert, "inhibited_by": quiet[0] if quiet else None,
                            "inhibit_rule": quiet[1] if quiet else None, "inhibit_reason": quiet[2] if quiet else None,
                            "joined_at": now, "_new": True})
        if quiet:
            idb.set_inhibition(tx, int(alert["id"]), *quiet)
        member_of[int(alert["id"])] = inc.id
    _inhibit(tx, incidents, active, rules)
    _follow_causes(tx, incidents, now)
    for inc in incidents.values():
        _settle(tx, inc, now)
    return list(incidents.values())


def _follow_causes(tx: Store, incidents: dict[int, Incident], now: pd.Timestamp) -> None:
    """Move every active member muted by an alert of another incident into that incident; an incident
    left without an active member is closed as merged into it (nothing more is said about it)."""
    where = {int(m["id"]): inc for inc in incidents.values() for m in inc.members}
    for inc in list(incidents.values()):
        for m in list(inc.members):
            src = m.get("inhibited_by")
            target = where.get(int(src)) if m["status"] in adb.ACTIVE and src is not None else None
            if target is None or target is inc:
                continue
            idb.move_member(tx, int(m["id"]), target.id)
            inc.members.remove(m)
            target.members.append({**m, "_moved_from": inc.id})
            where[int(m["id"])] = target
            if not inc.active() and inc.merged_into is None:
                inc.row.update(group_key=f"{MERGED}{target.id}", _merged_now=True)
            elif inc.row.get("root_alert_id") == m["id"]:
                best = min(inc.active(), key=lambda a: (ROOT_ORDER.get(a["kind"], 9), a["id"]))
                inc.row.update(root_alert_id=int(best["id"]), kind=best["kind"])


def _inhibit(tx: Store, incidents: dict[int, Incident], active: list[dict[str, Any]], rules: tuple[Rule, ...]) -> None:
    """Record, per active member, which alert and rule mute it now (cleared when nothing does)."""
    muted = inhibitions(active, rules)
    by_id = {int(a["id"]): a for a in active}
    for inc in incidents.values():
        for m in inc.members:
            if m["status"] not in adb.ACTIVE:
                continue  # a resolved member keeps what muted it last: its story is told
            hit = muted.get(int(m["id"]))
            want = (hit[0], hit[1].name) if hit else (None, None)
            if hit is None and _outlives_its_cause(m, inc):
                continue  # a consequence outliving its cause in the same incident stays quiet
            if (m.get("inhibited_by"), m.get("inhibit_rule")) != want:
                reason = None
                if hit:
                    src = by_id[hit[0]]
                    reason = (f"{hit[1].name}: alert #{src['id']} ({src['kind']} at {src['site']} "
                              f"{float(src['depth_cm']):g} cm {src['sensor']}) is active"
                              + (f" — {hit[1].description}" if hit[1].description else ""))
                idb.set_inhibition(tx, int(m["id"]), want[0], want[1], reason)
                m.update(inhibited_by=want[0], inhibit_rule=want[1], inhibit_reason=reason)


def _outlives_its_cause(m: dict[str, Any], inc: Incident) -> bool:
    """A deviation or cluster alert muted by another member of its incident (its cause) that has cleared:
    it keeps its inhibition — a consequence that clears a little later than its cause is the same story,
    not news (a fault call on a sibling, by contrast, speaks once the first fault clears)."""
    src = m.get("inhibited_by")
    if src is None or m["kind"] not in CONSEQUENCES:
        return False
    cause = next((x for x in inc.members if int(x["id"]) == int(src)), None)
    return cause is not None and cause["status"] not in adb.ACTIVE


CONSEQUENCES = ("deviation", "cluster")


def _after_its_cause(alert: dict[str, Any], inc: Incident, rules: tuple[Rule, ...]) -> tuple[int, str, str] | None:
    """A deviation or cluster alert joining an incident whose member that explains it (by a rule) has already
    cleared — the incident held after its fault cleared, or kept open by a quiet consequence: (that member's
    id, the rule, why). It stays quiet like a consequence that outlives its cause: the same story clearing a
    little later, not news (before, it spoke: an UPDATED, the incident's fourth message)."""
    if alert["kind"] not in CONSEQUENCES:
        return None
    for m in inc.members:
        if m["status"] in adb.ACTIVE:
            continue
        rule = next((r for r in rules if r.mutes(m, alert)), None)
        if rule is not None:
            return (int(m["id"]), rule.name, f"{rule.name}: alert #{m['id']} ({m['kind']} at {m['site']} "
                    f"{float(m['depth_cm']):g} cm {m['sensor']}) cleared just before; the same story")
    return None


def _settle(tx: Store, inc: Incident, now: pd.Timestamp) -> None:
    """Status from the members (resolved when none is active; reopened when one is again)."""
    before = inc.stored
    if inc.row.pop("_merged_now", False):
        inc.row.update(status="resolved", resolved_at=now)
    elif not inc.active():
        if before["status"] == "resolved":
            return  # already resolved (held or announced): nothing changed
        ends = [adb.aware(m.get("resolved_at")) for m in inc.members]
        inc.row.update(status="resolved", resolved_at=max([e for e in ends if e is not None], default=now),
                       _resolved_now=True)
    else:
        acked = inc.row.get("acked_by") or (inc.speaking() and all(m["status"] == "acked" for m in inc.speaking()))
        inc.row.update(status="acked" if acked else "open", resolved_at=None)
        if before["status"] == "resolved":
            inc.row["_reopened"] = True
            inc.row.update(acked_by=None, acked_at=None, ack_note=None, status="open")
    keys = ("status", "resolved_at", "kind", "root_alert_id", "group_key", "depth_cm", "sensor", "acked_by",
            "acked_at", "ack_note")
    changed = {k: inc.row.get(k) for k in keys if _differs(inc.row.get(k), before.get(k))}
    if changed:
        idb.update_incident(tx, inc.id, {**changed, "updated_at": now})
        inc.stored = {**inc.stored, **changed}


def _differs(a: Any, b: Any) -> bool:
    missing = [x is None or (not isinstance(x, str | dict | list) and bool(pd.isna(x))) for x in (a, b)]
    return missing[0] != missing[1] if any(missing) else bool(a != b)


def _int(value: Any) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def incident_of(store: Store, alert_id: int) -> int | None:
    """The incident an alert belongs to (None: not grouped yet; the next notification run groups it)."""
    m = idb.read_members(store, alert_ids=[alert_id])
    return None if m.empty else int(m.iloc[0]["incident_id"])


def load(store: Store, incident_id: int) -> Incident | None:
    """One incident with its members (for the CLI and the messages)."""
    row = idb.get_incident(store, incident_id)
    if row is None:
        return None
    inc = Incident(row)
    members = idb.read_members(store, incident_ids=[incident_id])
    if len(members):
        alerts = {int(a["id"]): a for a in adb.read_alerts(store, ids=list(members["alert_id"])).to_dict("records")}
        for m in members.to_dict("records"):
            inc.members.append({**alerts[int(m["alert_id"])], "inhibited_by": _int(m.get("inhibited_by")),
                                "inhibit_rule": m.get("inhibit_rule"), "inhibit_reason": m.get("inhibit_reason"),
                                "joined_at": m.get("joined_at")})
    return inc


def teams_of(inc: Incident, routes: Routes, sites: dict[str, dict[str, Any]]) -> list[str]:
    """The teams the incident's speaking members route to (the operators for the system's own kinds)."""
    out: list[str] = []
    for m in inc.loud():
        tags = (sites.get(m["site"]) or {}).get("tags") or []
        out.extend(t for t in routes.teams_for_alert(m["kind"], m["site"], tags) if t not in out)
    return out


def plot_spec(inc: Incident, event: str, plot_days: int, now: pd.Timestamp, title: str) -> dict[str, Any] | None:
    """The evidence plot of the root alert (replicates vs the mixture band, residual vs siblings)."""
    root = inc.root
    if not root or str(root.get("site")) == "*" or root.get("kind") in ("missing", "site_silent"):
        return None
    since = root.get("window_start")
    day = root.get("window_end") if event == "resolved" else now
    return {"site": str(root["site"]), "depth_cm": float(root["depth_cm"]), "sensor": str(root["sensor"]),
            "day": pd.Timestamp(day if day is not None and not pd.isna(day) else now).floor("D").isoformat(),
            "days": int(plot_days),
            "since": None if since is None or pd.isna(since) else pd.Timestamp(since).isoformat(),
            "title": title.removeprefix("[smmdn] "), "residual": str(root["sensor"]) != "*"}
