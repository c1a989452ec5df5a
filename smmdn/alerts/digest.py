"""The daily digest (``digest:`` in the routes file; the default for field teams, ``smmdn.alerts.routing``):
one message a day listing the team's open incidents, what changed since the last digest, what is
acknowledged or silenced, with one plot panel per incident. A team on the digest gets no per-incident
reminders: the digest is the reminder.

Keyed ``digest:<team>:<UTC day>:<target>``: one per team and day, however often the cycle runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from smmdn.alerts import message
from smmdn.alerts.incidents import Incident, plot_spec, teams_of
from smmdn.alerts.routing import Routes
from smmdn.alerts.silences import matching_silence
from smmdn.store import alerts as adb
from smmdn.store import incidents as idb

if TYPE_CHECKING:
    from smmdn.store import Store

MAX_PANELS = 6


def queue_digests(tx: Store, incidents: list[Incident], routes: Routes, sites: dict[str, dict[str, Any]],
                  silences: pd.DataFrame, now: pd.Timestamp, plot_days: int) -> int:
    """Queue today's digest for every team that takes one and has something to list; returns rows queued."""
    queued = 0
    day = now.strftime("%Y-%m-%d")
    for team in sorted({*routes.timings, "default"}):
        if not routes.timing(team).digest:
            continue
        mine = [i for i in incidents if team in teams_of(i, routes, sites) or team in routes.escalation_teams(
            teams_of(i, routes, sites))]
        if not mine:
            continue
        since = idb.last_digest_at(tx, team)
        changed = idb.messages_since(tx, team, since, [i.id for i in mine])
        entries = []
        for inc in mine:
            events = list(changed.loc[changed["incident_id"] == inc.id, "event"]) if len(changed) else []
            silenced = bool(inc.speaking()) and all(matching_silence(m, silences) for m in inc.speaking())
            entries.append({"incident": inc, "events": events, "silenced": silenced})
        title, body = message.render_digest(team, entries, sites, routes.vwc_resolution, now)
        panels = [p for p in (plot_spec(e["incident"], "reminder", plot_days, now, message.incident_subject(
            e["incident"], "reminder")) for e in entries if e["incident"].row["status"] != "resolved") if p]
        spec = {"panels": panels[:MAX_PANELS], "title": title.removeprefix("[smmdn] ")} if panels else None
        rows = [{"idempotency_key": f"digest:{team}:{day}:{target}", "alert_id": None, "incident_id": None,
                 "event": "digest", "team": team, "target": target, "title": title, "body": body,
                 "attachment_spec": spec, "attachment_name": f"digest-{team}-{day}.png" if spec else None,
                 "status": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now}
                for target in routes.targets(team)]
        queued += adb.enqueue(tx, rows)
    return queued
