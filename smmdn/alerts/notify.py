"""Notification planning per incident and team (Alertmanager's notification pipeline, run at the end of
every daily cycle): inhibit → silence → group → dedup, then the outbox.

Per (incident, team), with the team's ``Timing`` from the routes file:
- ``opened`` once the incident is ``group_wait`` old (default 0: the end of the cycle that found it);
- ``updated`` when what the message says changed — a new un-inhibited member, a stronger root cause —
  at most once per ``group_interval``; ``reopened`` when a resolved incident's member comes back;
- ``escalated`` once to the ``escalate_to`` team when a member escalated and nobody acknowledged; that team
  hears nothing else about the incident (no reminders, no resolution: the owning team is told; a lead who
  wants the outcome takes the digest, which lists it), so an incident nobody acts on costs at most three
  messages besides reminders — opened, escalated, resolved;
- ``reminder`` after ``repeat_interval`` unchanged and unacknowledged, doubling up to ``repeat_max``
  (none for a team that takes the daily digest instead, ``smmdn.alerts.digest``);
- ``resolved`` to every owning team that was told, once the incident stayed resolved for ``resolve_hold``
  (at once when a person resolved it: ``smmdn alerts resolve``, a sensor replacement; ``send_resolved``);
  a member back within the hold keeps the incident open and nobody hears of the gap; ``reopened`` only to
  a team that was told it resolved.
Inhibited members add nothing; an incident whose every active member is inhibited says nothing (no update,
no reminder); an incident folded into another (``merged:<id>``, its members' cause found there) says nothing
more at all; a muted incident (every speaking member silenced or under maintenance) sends nothing and its
reminder clock waits.

Idempotency: ``incident:<id>:<team>:n<seq>:<event>:<target>``; the notice (what the team was told) is
written in the same transaction as the rows, so a rerun plans nothing new and a failed run replans the
same keys.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from smmdn.alerts import message
from smmdn.alerts.incidents import Incident, group, plot_spec, teams_of
from smmdn.alerts.lifecycle import PLOT_KEY
from smmdn.alerts.routing import Routes, Timing
from smmdn.alerts.silences import matching_silence
from smmdn.store import alerts as adb
from smmdn.store import incidents as idb

if TYPE_CHECKING:
    from smmdn.store import Store

log = logging.getLogger(__name__)
PLOT_DAYS = 21


@dataclass
class NotifyOutcome:
    """What one notification run planned (messages per event; digests counted apart)."""

    incidents_open: int = 0
    queued: dict[str, int] = field(default_factory=dict)
    digests: int = 0
    muted: int = 0
    inhibited_alerts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _escalated(inc: Incident) -> bool:
    return inc.row["status"] == "open" and any(adb.aware(m.get("escalated_at")) is not None for m in inc.speaking())


def _closed_by_hand(inc: Incident) -> bool:
    """The last member to resolve was resolved by a person (``smmdn alerts resolve``, a sensor replacement):
    nothing to hold back — the hold is for conditions that cleared by themselves and may come back."""
    done = [m for m in inc.members if adb.aware(m.get("resolved_at")) is not None]
    if not done:
        return False
    last = max(done, key=lambda m: adb.aware(m.get("resolved_at")))
    return str(last.get("resolved_by") or "auto") != "auto"


def _fingerprint(inc: Incident) -> str:
    return idb.fingerprint([(int(m["id"]), str(m["kind"]), False) for m in inc.loud()])


def decide(inc: Incident, team: str, notice: dict[str, Any] | None, timing: Timing, now: pd.Timestamp, *,
           escalation_only: bool = False) -> str | None:
    """The event to send ``team`` about ``inc`` now, or None."""
    status = inc.row["status"]
    told = notice is not None and notice.get("last_event") is not None
    if inc.merged_into is not None:
        return None  # its members' cause was found in another incident: that one tells the story
    if escalation_only:  # told once; the owning team hears the rest (the budget: opened, escalated, resolved)
        return "escalated" if status != "resolved" and not told and _escalated(inc) else None
    if status == "resolved":
        ended = adb.aware(inc.row.get("resolved_at")) or now
        due = now - ended >= timing.resolve_hold or _closed_by_hand(inc)
        return "resolved" if told and notice["last_event"] != "resolved" and timing.send_resolved and due else None
    if not told:
        opened = adb.aware(inc.row.get("opened_at")) or now
        return "opened" if now - opened >= timing.group_wait and inc.speaking() else None
    if notice["last_event"] == "resolved":
        return "reopened"  # a member came back after the team was told it resolved
    if not inc.speaking():
        return None  # every active member is muted by another alert: nothing of its own to say
    last = adb.aware(notice.get("last_sent_at")) or now
    if message.loud_keys(inc) != message.told_keys(inc, notice.get("fingerprint")) and (
            now - last >= timing.group_interval):
        return "updated"
    if status == "acked" or timing.digest:
        return None
    due = adb.aware(notice.get("next_reminder_at"))
    return "reminder" if due is not None and now >= due else None


def notify(store: Store, now: pd.Timestamp, routes: Routes, *, plot_days: int = PLOT_DAYS) -> NotifyOutcome:
    """Group, inhibit and plan every incident message due now, in one transaction."""
    from smmdn.alerts.digest import queue_digests
    from smmdn.alerts.lifecycle import site_info

    outcome = NotifyOutcome()
    with store.transaction() as tx:
        incidents = group(tx, now, routes.inhibit, routes.resolve_hold())
        sites = site_info(tx)
        silences = adb.read_silences(tx, active_at=now)
        notices = idb.read_notices(tx, [i.id for i in incidents]) if incidents else {}
        for inc in incidents:
            outcome.inhibited_alerts += sum(1 for m in inc.active() if m.get("inhibited_by") is not None)
            if inc.row["status"] != "resolved":
                outcome.incidents_open += 1
            speaking = inc.speaking()
            if speaking and all(matching_silence(m, silences) for m in speaking):
                outcome.muted += 1
                continue
            teams = teams_of(inc, routes, sites)
            told = [t for (i, t) in notices if i == inc.id]
            escalation = [t for t in routes.escalation_teams(teams) if t not in teams]
            plan = [(t, False) for t in teams] + [(t, True) for t in escalation if t not in teams]
            plan += [(t, t in escalation) for t in told if t not in teams and t not in escalation]
            for team, esc_only in plan:
                notice = notices.get((inc.id, team))
                event = decide(inc, team, notice, routes.timing(team), now, escalation_only=esc_only)
                if event is None:
                    continue
                queued = enqueue(tx, inc, team, event, notice, routes, sites.get(str(inc.row["site"])), now,
                                 plot_days)
                outcome.queued[event] = outcome.queued.get(event, 0) + queued
        listed = [i for i in incidents if i.merged_into is None and (i.row["status"] != "resolved"
                                                                     or i.row.get("_resolved_now"))]
        outcome.digests = queue_digests(tx, listed, routes, sites, silences, now, plot_days)
    log.info("notifications: %d incident(s) open, queued %s, %d digest(s), %d muted, %d alert(s) inhibited",
             outcome.incidents_open, outcome.queued or "nothing", outcome.digests, outcome.muted,
             outcome.inhibited_alerts)
    return outcome


def enqueue(tx: Store, inc: Incident, team: str, event: str, notice: dict[str, Any] | None, routes: Routes,
            site: dict[str, Any] | None, now: pd.Timestamp, plot_days: int) -> int:
    """Queue one message per target of ``team`` and record what the team was told."""
    timing = routes.timing(team)
    before = (notice or {}).get("fingerprint")
    changes = message.changes(inc, before if event in ("updated", "reopened") else None) if event in (
        "updated", "reopened", "opened", "reminder") else []
    title, body = message.render_incident(inc, event, site, team, changes, routes.vwc_resolution, now)
    seq = int((notice or {}).get("seq") or 0) + 1
    png = (inc.root.get("details") or {}).get(PLOT_KEY)
    spec = None if png else plot_spec(inc, event, plot_days, now, title)
    rows = [{"idempotency_key": f"incident:{inc.id}:{team}:n{seq}:{event}:{target}", "alert_id": None,
             "incident_id": inc.id, "event": event, "team": team, "target": target, "title": title, "body": body,
             "attachment": base64.b64decode(png) if png else None, "attachment_spec": spec,
             "attachment_name": f"incident-{inc.id}-{event}.png" if spec or png else None,
             "status": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now}
            for target in routes.targets(team)]
    reminders = int((notice or {}).get("reminders") or 0) + (event == "reminder")
    if event in ("opened", "reopened", "escalated"):
        reminders = 0
    idb.save_notice(tx, {"incident_id": inc.id, "team": team, "seq": seq, "fingerprint": _fingerprint(inc),
                         "last_event": event, "first_sent_at": (notice or {}).get("first_sent_at") or now,
                         "last_sent_at": now, "reminders": reminders,
                         "next_reminder_at": now + timing.repeat_after(reminders)})
    return adb.enqueue(tx, rows)
