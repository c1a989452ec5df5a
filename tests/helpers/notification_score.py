"""Notification figures of issue 17, from what the local receiver got and the incidents a run kept.

Counting rule: a *message* is one line of ``received.jsonl`` (what the receiver on 127.0.0.1 got), per route
(its path); digests (key ``digest:…``) are counted apart and excluded from the message figures. A message's
incident is read from its idempotency key ``incident:<id>:<team>:n<seq>:<event>:<target>``.

Figures: messages per notified incident (mean, max, and how many exceed opened + one escalation + resolved
+ the reminders the backoff allows for their life), the reminders' share, messages about incidents whose
every member was inhibited, per planted fault the incidents that notified (exactly one wanted), incidents
spanning two faults, and — because a team on the digest gets no reminders — the reminders the backoff would
have sent the same incidents without a digest (computed from their open spans, not received; said so).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

DAY = pd.Timedelta(days=1)
BACKOFF_DAYS = (1, 2, 4, 7)  # repeat_interval 24 h doubling up to 7 days (the product defaults)


def messages(lines: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per received message: route, kind (incident / digest / alert / other), incident, event, key."""
    rows = []
    for line in lines:
        key = str(line.get("key") or "")
        parts = key.split(":")
        kind = parts[0] if parts and parts[0] in ("incident", "digest", "alert") else "other"
        incident = int(parts[1]) if kind == "incident" and len(parts) > 1 and parts[1].isdigit() else None
        event = parts[4] if kind == "incident" and len(parts) > 4 else (
            "digest" if kind == "digest" else parts[3] if kind == "alert" and len(parts) > 3 else "other")
        rows.append({"route": str(line.get("path", "")).strip("/"), "kind": kind, "incident": incident,
                     "event": event, "key": key})
    return pd.DataFrame(rows, columns=["route", "kind", "incident", "event", "key"])


def allowed_reminders(open_days: float) -> int:
    """Reminders the default backoff allows while an incident is open ``open_days`` (1, 3, 7, 14, 21, … days)."""
    n, t, step = 0, 0.0, 0
    while True:
        t += BACKOFF_DAYS[min(step, len(BACKOFF_DAYS) - 1)]
        if t > open_days + 1e-9:
            return n
        n, step = n + 1, step + 1


def score(msgs: pd.DataFrame, incidents: pd.DataFrame, members: pd.DataFrame, end: pd.Timestamp,
          fault_of_alert: dict[int, int] | None = None,
          sent_at: dict[str, pd.Timestamp] | None = None) -> dict[str, Any]:
    """The figures for one run (or several concatenated with distinct incident ids).

    An incident folded into another (``group_key`` ``merged:<id>``: its members moved to the incident where
    their cause was found) has no members left; its messages count as messages for inhibited alerts only
    when sent after the fold (its ``resolved_at``), which needs ``sent_at`` (message key → when it was
    queued; without it every message of a folded incident counts)."""
    m = msgs.loc[msgs["kind"] != "digest"]
    per = m.loc[m["incident"].notna()].groupby("incident").size()
    spans = {}
    for r in incidents.itertuples():
        opened = pd.Timestamp(r.opened_at)
        closed = pd.Timestamp(r.resolved_at) if pd.notna(r.resolved_at) else end
        spans[int(r.id)] = max((closed - opened) / DAY, 0.0)
    loud = members.loc[members["inhibited_by"].isna()].groupby("incident_id").size() if len(members) else pd.Series()
    reminders = m.loc[m["event"] == "reminder"].groupby("incident").size()
    over = 0
    for inc, n in per.items():
        limit = 3 + allowed_reminders(spans.get(int(inc), 0.0))
        over += int(n > limit)
    # a team on the digest gets no reminders: what the backoff would have sent instead (never less than sent)
    would_remind = sum(max(allowed_reminders(spans.get(int(i), 0.0)), int(reminders.get(i, 0))) for i in per.index)
    folded = {int(r.id): pd.Timestamp(r.resolved_at) for r in incidents.itertuples()
              if str(getattr(r, "group_key", "")).startswith("merged:")}
    muted_msgs = 0
    for inc, n in per.items():
        if int(inc) in folded:
            keys = m.loc[m["incident"] == inc, "key"]
            muted_msgs += int(sum(1 for k in keys if sent_at is None or k not in sent_at
                                  or pd.Timestamp(sent_at[k]) > folded[int(inc)]))
        elif int(loud.get(int(inc), 0)) == 0:
            muted_msgs += int(n)
    out: dict[str, Any] = {
        "messages": len(m), "digests": int((msgs["kind"] == "digest").sum()),
        "messages_per_route": {k: int(v) for k, v in m["route"].value_counts().sort_index().items()},
        "digests_per_route": {k: int(v) for k, v in msgs.loc[msgs["kind"] == "digest", "route"].value_counts()
                              .sort_index().items()},
        "by_event": {k: int(v) for k, v in m["event"].value_counts().sort_index().items()},
        "incidents": len(incidents), "incidents_notified": len(per), "incidents_folded": len(folded),
        "messages_per_incident": float(per.mean()) if len(per) else np.nan,
        "messages_per_incident_max": int(per.max()) if len(per) else 0,
        "non_reminders_per_incident_max": int((per - reminders.reindex(per.index).fillna(0)).max()) if len(per) else 0,
        "non_reminders_per_incident_and_route_max": int(
            m.loc[m["incident"].notna() & (m["event"] != "reminder")].groupby(["incident", "route"]).size().max())
        if len(per) else 0,
        "incidents_over_bound": over,
        "reminders_share": float((m["event"] == "reminder").mean()) if len(m) else np.nan,
        "reminders_share_without_digest": (float(would_remind / (len(m) - reminders.sum() + would_remind))
                                           if len(m) else np.nan),
        "messages_for_inhibited_alerts": muted_msgs,
    }
    if fault_of_alert is not None:
        inc_of = dict(zip(members["alert_id"].astype(int), members["incident_id"].astype(int), strict=True)) if len(
            members) else {}
        notified = set(int(i) for i in per.index)
        per_fault: dict[int, set[int]] = {}
        faults_of_inc: dict[int, set[int]] = {}
        for alert, fault in fault_of_alert.items():
            inc = inc_of.get(int(alert))
            if inc is None:
                continue
            faults_of_inc.setdefault(inc, set()).add(fault)
            if inc in notified:
                per_fault.setdefault(fault, set()).add(inc)
        out["faults_detected"] = len({f for f in fault_of_alert.values()})
        out["faults_one_notifying_incident"] = sum(1 for s in per_fault.values() if len(s) == 1)
        out["faults_several_notifying_incidents"] = sum(1 for s in per_fault.values() if len(s) > 1)
        out["incidents_spanning_faults"] = sum(1 for s in faults_of_inc.values() if len(s) > 1)
    return out


def table(figures: dict[str, Any]) -> str:
    """The targets table (markdown) of one set of figures: figure | target | measured | met (computed here from
    the same figures, in the same run; "—" where the issue sets no target)."""
    share, without = figures["reminders_share"], figures["reminders_share_without_digest"]
    rows = [
        ("messages received (digests apart)", "—", figures["messages"], None),
        ("digests received", "—", figures["digests"], None),
        ("messages per notified incident (mean / max)", "≤ 3 + reminders",
         f"{figures['messages_per_incident']:.2f} / {figures['messages_per_incident_max']}", None),
        ("non-reminder messages per incident, all routes (max)", "≤ 3", figures["non_reminders_per_incident_max"],
         figures["non_reminders_per_incident_max"] <= 3),
        ("non-reminder messages per incident and route (max)", "≤ 3",
         figures["non_reminders_per_incident_and_route_max"], figures["non_reminders_per_incident_and_route_max"] <= 3),
        ("incidents over their bound (3 + backoff reminders)", "0", figures["incidents_over_bound"],
         figures["incidents_over_bound"] == 0),
        ("reminders share (digests excluded)", "≤ 20 %", f"{100 * share:.0f} %", bool(share <= 0.2) if share == share
         else None),
        ("reminders share if no team took the digest (computed, not received)", "(none)", f"{100 * without:.0f} %",
         None),
        ("messages for inhibited alerts", "0", figures["messages_for_inhibited_alerts"],
         figures["messages_for_inhibited_alerts"] == 0),
        ("incidents folded into the incident of their cause (merged:<id>)", "—", figures.get("incidents_folded", 0),
         None),
    ]
    if "faults_one_notifying_incident" in figures:
        rows += [("planted faults (with any alert) that have exactly one notifying incident", "all",
                  f"{figures['faults_one_notifying_incident']} of {figures['faults_detected']}",
                  figures["faults_one_notifying_incident"] == figures["faults_detected"]),
                 ("incidents spanning two faults", "0", figures["incidents_spanning_faults"],
                  figures["incidents_spanning_faults"] == 0)]
    lines = ["| figure | target | measured | met |", "|---|---|---|---|"]
    lines += [f"| {a} | {t} | {b} | {'—' if ok is None else 'yes' if ok else '**no**'} |" for a, t, b, ok in rows]
    return "\n".join(lines)


def score_dirs(run_dirs: Iterable[Any]) -> dict[str, Any] | None:
    """The figures over finished benchmark runs (``alerts.csv``, ``incidents.csv``, ``incident_members.csv``,
    ``received.jsonl`` and the plan in ``spec.json``); None when no run kept incidents."""
    import json

    from tests.helpers import detection_score as S
    from tests.helpers.detection_truth import RunPlan

    msgs, incs, mems, faults = [], [], [], {}
    sent: dict[str, pd.Timestamp] = {}
    end = None
    for k, run_dir in enumerate(run_dirs):
        if not (run_dir / "incidents.csv").exists():
            continue
        plan = RunPlan.from_dict(json.loads((run_dir / "spec.json").read_text(encoding="utf-8"))["plan"])
        offset = (k + 1) * 1_000_000  # incident and alert ids are per run
        lines = [json.loads(x) for x in (run_dir / "received.jsonl").read_text(encoding="utf-8").splitlines()
                 if x.strip()] if (run_dir / "received.jsonl").exists() else []
        m = messages(lines)
        m["incident"] = [None if i is None or pd.isna(i) else int(i) + offset for i in m["incident"]]
        m["key"] = [offset_key(k, offset) for k in m["key"]]
        if (run_dir / "outbox.csv").exists():
            box = pd.read_csv(run_dir / "outbox.csv", usecols=["idempotency_key", "created_at"])
            sent |= {offset_key(k, offset): pd.Timestamp(t) for k, t in zip(box["idempotency_key"], box["created_at"],
                                                                             strict=True)}
        inc = pd.read_csv(run_dir / "incidents.csv", parse_dates=["opened_at", "resolved_at"])
        inc["id"] += offset
        mem = pd.read_csv(run_dir / "incident_members.csv")
        mem["incident_id"] += offset
        alerts = pd.read_csv(run_dir / "alerts.csv")
        roles = S.score_run(S.detections_from_alerts(alerts), plan).roles
        for r in roles.loc[roles["fault"] >= 0].itertuples():
            faults[int(r.id) + offset] = int(r.fault) + offset
        mem["alert_id"] += offset
        msgs.append(m)
        incs.append(inc)
        mems.append(mem)
        stop = pd.Timestamp(plan.end)
        end = stop if end is None else max(end, stop)
    if not incs:
        return None
    return score(pd.concat(msgs, ignore_index=True), pd.concat(incs, ignore_index=True),
                 pd.concat(mems, ignore_index=True), end, faults, sent_at=sent)


def offset_key(key: str, offset: int) -> str:
    """A message key with its incident id moved by ``offset`` (ids are per run; several runs are scored as one)."""
    parts = str(key).split(":")
    if parts[0] == "incident" and len(parts) > 1 and parts[1].isdigit():
        parts[1] = str(int(parts[1]) + offset)
    return ":".join(parts)


def score_demo(home: Any) -> dict[str, Any]:
    """The figures of a finished ``smmdn demo`` home, plus the incidents holding an alert of its drifting
    sensor (``summary.json`` ``failing``: at most one wanted)."""
    import json
    from pathlib import Path

    from smmdn.store import Store
    from smmdn.store import alerts as db
    from smmdn.store import incidents as idb

    home = Path(home)
    summary = json.loads((home / "summary.json").read_text(encoding="utf-8"))
    store = Store(summary["database"])
    lines = [json.loads(x) for x in Path(summary["alerts_file"]).read_text(encoding="utf-8").splitlines() if x.strip()]
    incidents, members = idb.read_incidents(store), idb.read_members(store)
    alerts = db.read_alerts(store)
    end = pd.Timestamp(summary["days"][-1]["issue"], tz="UTC") + DAY if summary.get("days") else pd.Timestamp.now("UTC")
    out = score(messages(lines), incidents, members, end)
    failing = _failing(store)
    if failing is not None and len(alerts):
        site, depth, sensor = failing
        mine = alerts.loc[(alerts["site"] == site) & (alerts["depth_cm"] == depth) & (alerts["sensor"] == sensor)]
        out["drifting_sensor"] = f"{site} {depth:g} cm {sensor}"
        out["drifting_sensor_incidents"] = int(members.loc[members["alert_id"].isin(mine["id"]), "incident_id"]
                                               .nunique()) if len(members) else 0
    store.dispose()
    return out


def _failing(store: Any) -> tuple[str, float, str] | None:
    """The demo's drifting sensor: its first site's shallowest depth, third sensor (``smmdn.demo.simulate``)."""
    from smmdn.demo.simulate import DEPTHS_CM, SENSORS

    sites = sorted(store.read_sites()["site"].astype(str)) if len(store.read_sites()) else []
    return (sites[0], float(DEPTHS_CM[0]), str(SENSORS[2])) if sites else None


if __name__ == "__main__":  # python -m tests.helpers.notification_score --demo var/demo  |  --runs DIR...
    import argparse
    import json
    from pathlib import Path

    parser = argparse.ArgumentParser(description="issue 17's notification figures")
    parser.add_argument("--demo", type=Path, help="a finished smmdn demo home")
    parser.add_argument("--runs", type=Path, nargs="*", default=[], help="finished bench_detection run folders")
    args = parser.parse_args()
    figures = score_demo(args.demo) if args.demo else score_dirs(args.runs)
    print(json.dumps(figures, indent=1, default=str))
    if figures:
        print(table(figures))
