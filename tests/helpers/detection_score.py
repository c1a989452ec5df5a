"""Scoring of the detection benchmark: every alert (or peer flag episode) against the planted truth.

Why one scorer for smmdn and the peers: the figures must be comparable, so both are reduced to the same
*detections* frame — one row per alert or flag episode:

``id``, ``site``, ``depth_cm``, ``sensor`` (``*`` for the whole cluster), ``kind``, ``raised`` (when it was
first raised: the alert's ``created_at``, or the end of a peer's first flagged day), ``resolved`` (NaT while
open) and ``group`` (the incident it belongs to; today every alert is its own).

Each detection gets one ``role``:
- ``culprit``: a fault kind on the faulty sensor, raised within the fault plus ``GRACE``;
- ``sibling``: a fault kind on a healthy sibling of a faulty sensor, in that window (blamed);
- ``fault_as_event``: a cluster kind at a faulty cluster, in that window (a fault read as an event);
- ``event``: a cluster kind at a site with a planted event, within the event window (right);
- ``event_as_fault``: a fault kind at that site, in that window (an event read as a fault);
- ``wetting`` (only when scored with the run's heavy-rain days, ``heavy_rain``): a cluster kind on a day of
  at least ``HEAVY_MM`` of real rain at its site or the day after, outside a planted event (right: real
  wetting; the pinned truth of issue 15 knows only planted events and scores these as false);
- ``clean``: anything on a control cluster (a false alert on a clean sensor);
- ``system``: network-wide kinds (``calibration_drift``), counted apart;
- ``other``: everything else (e.g. ``deviation``, or a fault cluster outside its window) — a false alert.

Days to detect counts daily cycles: 1 means the alert came from the cycle of the fault's first day
(``raised`` date − start date, both at day resolution; a cycle runs the morning after its day).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tests.helpers.detection_truth import DAY, GRACE, Fault, RunPlan

FAULT_KINDS = ("sensor_fault", "flatline", "missing", "flag")  # "flag": a peer's flag episode
EVENT_KINDS = ("cluster",)
SYSTEM_KINDS = ("calibration_drift",)
CLUSTER = "*"
MONTH_DAYS = 30.4375
TRUE_ROLES = ("culprit", "event", "wetting")
DETECTION_COLUMNS = ["id", "site", "depth_cm", "sensor", "kind", "raised", "resolved", "group"]


def detections_from_alerts(alerts: pd.DataFrame) -> pd.DataFrame:
    """smmdn's alerts table (``smmdn.store.alerts.read_alerts``) as detections."""
    if alerts.empty:
        return pd.DataFrame(columns=DETECTION_COLUMNS)
    out = pd.DataFrame({
        "id": alerts["id"].astype(int), "site": alerts["site"].astype(str),
        "depth_cm": alerts["depth_cm"].astype(float), "sensor": alerts["sensor"].astype(str),
        "kind": alerts["kind"].astype(str),
        "raised": pd.to_datetime(alerts["created_at"], utc=True),
        "resolved": pd.to_datetime(alerts["resolved_at"], utc=True) if "resolved_at" in alerts else pd.NaT,
    })
    out["group"] = alerts["incident"].to_numpy() if "incident" in alerts else out["id"]
    return out[DETECTION_COLUMNS]


def detections_from_flags(flags: pd.DataFrame, *, max_gap_days: int = 1, start_id: int = 1) -> pd.DataFrame:
    """A peer's flagged sensor-days (``time`` = day, ``site``, ``depth_cm``, ``sensor``) as episodes.

    Flagged days at most ``max_gap_days`` apart make one episode, raised at the end of its first day (when a
    causal run on that day's data could have told someone) and resolved at the end of its last day.
    """
    if flags.empty:
        return pd.DataFrame(columns=DETECTION_COLUMNS)
    f = flags[["time", "site", "depth_cm", "sensor"]].drop_duplicates().sort_values(["site", "depth_cm", "sensor",
                                                                                     "time"])
    f["depth_cm"] = f["depth_cm"].astype(float)
    gap = f.groupby(["site", "depth_cm", "sensor"])["time"].diff() > max_gap_days * DAY
    new = gap | f[["site", "depth_cm", "sensor"]].ne(f[["site", "depth_cm", "sensor"]].shift()).any(axis=1)
    f["episode"] = new.cumsum()
    ep = f.groupby("episode").agg(site=("site", "first"), depth_cm=("depth_cm", "first"),
                                  sensor=("sensor", "first"), first=("time", "min"), last=("time", "max"))
    out = pd.DataFrame({"id": np.arange(start_id, start_id + len(ep)), "site": ep["site"].to_numpy(),
                        "depth_cm": ep["depth_cm"].to_numpy(), "sensor": ep["sensor"].to_numpy(), "kind": "flag",
                        "raised": (ep["first"] + DAY).to_numpy(), "resolved": (ep["last"] + DAY).to_numpy()})
    out["group"] = out["id"]
    return out[DETECTION_COLUMNS]


def messages_from_receiver(lines: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Messages a local receiver got (``smmdn.demo.receiver`` lines): route (its path), alert or incident id
    and event, read from the idempotency key each message carries — ``incident:<id>:<team>:n<seq>:<event>:
    <target>`` (issue 17: messages are about incidents) or the older ``alert:<id>:r<revision>:<event>:<target>``;
    digests (``digest:…``) have neither id."""
    rows = []
    for line in lines:
        key = str(line.get("key") or "")
        parts = key.split(":")
        alert_id = int(parts[1]) if len(parts) >= 4 and parts[0] == "alert" and parts[1].isdigit() else None
        incident = int(parts[1]) if len(parts) >= 5 and parts[0] == "incident" and parts[1].isdigit() else None
        event = parts[3] if alert_id is not None else parts[4] if incident is not None else (parts[0] or "unknown")
        rows.append({"route": str(line.get("path", "")).strip("/"), "alert_id": alert_id, "incident": incident,
                     "event": event, "key": key})
    return pd.DataFrame(rows, columns=MESSAGE_COLUMNS)


MESSAGE_COLUMNS = ["route", "alert_id", "incident", "event", "key"]


def _mine(msgs: pd.DataFrame, mine: pd.DataFrame) -> pd.DataFrame:
    """The messages about these detections: by alert id, or by the incident (``group``) they belong to."""
    if not len(mine) or not len(msgs):
        return msgs.iloc[0:0]
    by_alert = msgs["alert_id"].isin(mine["id"])
    by_incident = msgs["incident"].isin(mine["group"]) if "incident" in msgs else False
    return msgs.loc[by_alert | by_incident]


# ---------------------------------------------------------------------------------------------------
# roles
# ---------------------------------------------------------------------------------------------------
def _window(f: Fault, run_end: pd.Timestamp) -> tuple[pd.Timestamp, pd.Timestamp]:
    assert f.start is not None
    return f.start, f.end(run_end) + GRACE


HEAVY_MM = 10.0  # mm: a heavy-precipitation day (ETCCDI's R10mm), fixed before any run was scored


def heavy_rain_days(weather: pd.DataFrame, heavy_mm: float = HEAVY_MM) -> set[tuple[str, pd.Timestamp]]:
    """(site, UTC day) of every day with at least ``heavy_mm`` of rain in a run's served weather (the
    simulator's own rain: real wetting the planted truth does not list)."""
    w = weather.assign(day=pd.to_datetime(weather["time"], utc=True).dt.floor("D"))
    rain = w.groupby(["site", "day"])["precipitation_sum"].sum()
    return {(str(s), pd.Timestamp(t)) for (s, t), mm in rain.items() if mm >= heavy_mm}


def _after_heavy_rain(site: str, raised: pd.Timestamp, wet: set[tuple[str, pd.Timestamp]]) -> bool:
    """A detection whose evaluated day (the day before ``raised``) is a heavy-rain day or the day after one."""
    day = (raised - DAY).floor("D")
    return (site, day) in wet or (site, day - DAY) in wet


def assign_roles(det: pd.DataFrame, plan: RunPlan,
                 heavy_rain: set[tuple[str, pd.Timestamp]] | None = None) -> pd.DataFrame:
    """Detections with ``role`` and ``fault`` (index into ``plan.faults``, -1 if none) / ``event`` columns.

    ``heavy_rain`` (``heavy_rain_days`` of the run's weather; None: the planted truth alone, as pinned by
    issue 15): a whole-cluster alert on a heavy-rain day or the day after, at a site without a planted event
    then, is the ``wetting`` it reports (a right answer), wherever it is — a control or a faulty cluster."""
    d = det.copy().reset_index(drop=True)
    d["role"], d["fault"], d["event"] = "other", -1, -1
    controls = {(s, float(x)) for s, x in plan.controls}
    for i, r in d.iterrows():
        kind, sensor, cluster = str(r["kind"]), str(r["sensor"]), (str(r["site"]), float(r["depth_cm"]))
        if kind in SYSTEM_KINDS or r["site"] == CLUSTER:
            d.at[i, "role"] = "system"
            continue
        raised = pd.Timestamp(r["raised"])
        planted = any(e.site == cluster[0] and e.start < raised < e.start + e.days * DAY for e in plan.events)
        if (heavy_rain and not planted and (kind in EVENT_KINDS or sensor == CLUSTER)
                and _after_heavy_rain(cluster[0], raised, heavy_rain)):
            d.at[i, "role"] = "wetting"
            continue
        for j, f in enumerate(plan.faults):
            lo, hi = _window(f, plan.end)
            if (f.site, float(f.depth_cm)) != cluster or not lo < raised < hi:  # raised on faulty data
                continue
            if kind in EVENT_KINDS or sensor == CLUSTER:
                role = "fault_as_event"
            elif kind in FAULT_KINDS:
                role = "culprit" if sensor == f.sensor else "sibling"
            else:
                role = "other"
            d.at[i, "role"], d.at[i, "fault"] = role, j
            break
        else:
            for j, e in enumerate(plan.events):
                if e.site != cluster[0] or not e.start < raised < e.start + e.days * DAY:
                    continue
                role = "event" if kind in EVENT_KINDS else ("event_as_fault" if kind in FAULT_KINDS else "other")
                d.at[i, "role"], d.at[i, "event"] = role, j
                break
            else:
                if cluster in controls:
                    d.at[i, "role"] = "clean"
    return d


# ---------------------------------------------------------------------------------------------------
# per fault, per event, per run
# ---------------------------------------------------------------------------------------------------
def fault_rows(roles: pd.DataFrame, plan: RunPlan, messages: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per planted fault: detected, days to detect, siblings blamed, closing, alerts and messages."""
    rows = []
    msgs = messages if messages is not None else pd.DataFrame(columns=MESSAGE_COLUMNS)
    for j, f in enumerate(plan.faults):
        mine = roles.loc[roles["fault"] == j]
        culprit = mine.loc[mine["role"] == "culprit"].sort_values("raised")
        assert f.start is not None
        first = culprit["raised"].iloc[0] if len(culprit) else pd.NaT
        days = (pd.Timestamp(first).normalize() - f.start.normalize()) / DAY if len(culprit) else np.nan
        end = f.end(plan.end)
        finite = f.days is not None and end < plan.end
        closed = np.nan
        close_days = np.nan
        if finite and len(culprit):
            res = pd.to_datetime(culprit["resolved"], utc=True)
            closed = float(bool(res.notna().all() and (res >= end).all()))
            if res.notna().all():
                close_days = float((res.max() - end) / DAY)
        m = _mine(msgs, mine)
        notified_groups = set(mine.loc[mine["id"].isin(m["alert_id"]), "group"]) | (
            set(mine["group"]) & set(m["incident"].dropna()) if "incident" in m else set())
        rows.append({
            "run": plan.name, "seed": plan.seed, "cell": f.cell, "kind": f.kind, "magnitude": f.magnitude,
            "every_h": f.every_h, "ends": f.days is not None, "site": f.site, "depth_cm": f.depth_cm,
            "sensor": f.sensor, "start": f.start, "days_to_end": (end - f.start) / DAY,
            "detected": bool(len(culprit)), "days_to_detect": days,
            "drift_at_detection": (f.magnitude or 0.0) * days if f.kind == "drift" and len(culprit) else np.nan,
            "siblings_blamed": int(mine.loc[mine["role"] == "sibling", "sensor"].nunique()),
            "as_event": int((mine["role"] == "fault_as_event").sum()), "closed_after_end": closed,
            "days_to_close": close_days, "alerts": len(mine), "incidents": mine["group"].nunique(),
            "incidents_notified": len(notified_groups), "messages": len(m),
            "reminders": int((m["event"] == "reminder").sum()),
        })
    return pd.DataFrame(rows)


def event_rows(roles: pd.DataFrame, plan: RunPlan, messages: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per planted event: seen as an event, misread as a fault, messages."""
    msgs = messages if messages is not None else pd.DataFrame(columns=MESSAGE_COLUMNS)
    rows = []
    for j, e in enumerate(plan.events):
        mine = roles.loc[roles["event"] == j]
        rows.append({"run": plan.name, "seed": plan.seed, "kind": e.kind, "in_forcing": e.in_forcing, "site": e.site,
                     "start": e.start, "as_event": int((mine["role"] == "event").sum()),
                     "as_fault": int((mine["role"] == "event_as_fault").sum()),
                     "messages": len(_mine(msgs, mine))})
    return pd.DataFrame(rows)


@dataclass
class RunScore:
    """Everything one run (one detector on one run plan) scored."""

    faults: pd.DataFrame
    events: pd.DataFrame
    roles: pd.DataFrame
    clean_sensor_days: float
    messages: pd.DataFrame


def clean_sensor_days(plan: RunPlan) -> float:
    """Sensor-days of the control clusters over the scored period."""
    days = (plan.end - plan.start) / DAY
    return float(sum(len(plan.sensors.get(c, [])) for c in plan.controls) * days)


def score_run(det: pd.DataFrame, plan: RunPlan, messages: pd.DataFrame | None = None,
              heavy_rain: set[tuple[str, pd.Timestamp]] | None = None) -> RunScore:
    """Score one run's detections (alerts raised before the scored period are left out); ``heavy_rain``: see
    ``assign_roles`` (None: the pinned truth)."""
    d = det.loc[pd.to_datetime(det["raised"], utc=True) >= plan.start] if len(det) else det
    roles = assign_roles(d, plan, heavy_rain)
    msgs = messages if messages is not None else pd.DataFrame(columns=MESSAGE_COLUMNS)
    return RunScore(fault_rows(roles, plan, msgs), event_rows(roles, plan, msgs), roles, clean_sensor_days(plan),
                    msgs)


def summary(scores: Sequence[RunScore]) -> dict[str, Any]:
    """Totals over runs: precision, false alerts per 100 clean sensor-months, event vs fault accuracy,
    messages (per route, reminders share) and the incident figures issue 17 targets."""
    roles = pd.concat([s.roles for s in scores], ignore_index=True) if scores else pd.DataFrame(columns=["role"])
    faults = pd.concat([s.faults for s in scores], ignore_index=True) if scores else pd.DataFrame()
    counted = roles.loc[roles["role"] != "system"]
    true = int(counted["role"].isin(TRUE_ROLES).sum())
    clean_days = sum(s.clean_sensor_days for s in scores)
    n_clean = int((roles["role"] == "clean").sum())
    classed = counted.loc[counted["role"].isin(["culprit", "sibling", "fault_as_event", "event", "event_as_fault",
                                                "wetting"])]
    right = int(classed["role"].isin(["culprit", "sibling", "event", "wetting"]).sum())
    msgs = pd.concat([s.messages for s in scores], ignore_index=True) if scores else pd.DataFrame()
    n_msgs = len(msgs)
    out: dict[str, Any] = {
        "alerts": len(counted), "system_alerts": int((roles["role"] == "system").sum()),
        "roles": {k: int(v) for k, v in counted["role"].value_counts().items()},
        "precision": true / len(counted) if len(counted) else np.nan,
        "clean_sensor_months": clean_days / MONTH_DAYS,
        "false_per_100_clean_sensor_months": 100 * n_clean / (clean_days / MONTH_DAYS) if clean_days else np.nan,
        "event_vs_fault_accuracy": right / len(classed) if len(classed) else np.nan,
        "recall": float(faults["detected"].mean()) if len(faults) else np.nan,
        "faults": len(faults), "messages": n_msgs,
        "reminders_share": float((msgs["event"] == "reminder").mean()) if n_msgs else np.nan,
        "messages_per_route": {k: int(v) for k, v in msgs["route"].value_counts().items()} if n_msgs else {},
        "messages_by_event": {k: int(v) for k, v in msgs["event"].value_counts().items()} if n_msgs else {},
        "messages_per_notified_alert": float(n_msgs / msgs["alert_id"].nunique()) if n_msgs and
        msgs["alert_id"].notna().any() else np.nan,
        "messages_per_fault": float(faults["messages"].mean()) if len(faults) else np.nan,
        "faults_one_incident_notified": float((faults["incidents_notified"] == 1).mean()) if len(faults) else np.nan,
        "incidents_spanning_faults": _spanning(scores),
    }
    return out


def _spanning(scores: Sequence[RunScore]) -> int:
    """Incidents (groups) whose alerts belong to more than one planted fault (issue 17: must be 0)."""
    n = 0
    for s in scores:
        r = s.roles.loc[s.roles["fault"] >= 0]
        n += int((r.groupby("group")["fault"].nunique() > 1).sum()) if len(r) else 0
    return n


def cell_table(faults: pd.DataFrame) -> pd.DataFrame:
    """Per grid cell over seeds: recall, days to detect (median, max), siblings blamed, closing, messages."""
    if faults.empty:
        return faults
    g = faults.groupby("cell", sort=False)
    table = pd.DataFrame({
        "episodes": g.size(), "recall": g["detected"].mean(),
        "days_median": g["days_to_detect"].median(), "days_max": g["days_to_detect"].max(),
        "siblings_blamed": g["siblings_blamed"].sum(), "as_event": g["as_event"].sum(),
        "closed_after_end": g["closed_after_end"].mean(), "alerts_per_fault": g["alerts"].mean(),
        "messages_per_fault": g["messages"].mean(),
    })
    return table.reset_index()


def to_json(obj: Any) -> str:
    """JSON for figures (NaN → null, timestamps → ISO)."""
    def default(x: Any) -> Any:
        if isinstance(x, pd.Timestamp):
            return x.isoformat()
        if isinstance(x, np.integer | np.bool_):
            return x.item()
        if isinstance(x, np.floating):
            return None if np.isnan(x) else float(x)
        return str(x)

    def clean(x: Any) -> Any:
        if isinstance(x, float) and np.isnan(x):
            return None
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        return x

    return json.dumps(clean(obj), default=default, indent=1)


def family_table(faults: pd.DataFrame) -> pd.DataFrame:
    """Per fault type (all magnitudes and durations together): recall, days to detect, siblings blamed."""
    if faults.empty:
        return faults
    g = faults.groupby("kind", sort=False)
    return pd.DataFrame({"episodes": g.size(), "recall": g["detected"].mean(),
                         "days_median": g["days_to_detect"].median(), "days_max": g["days_to_detect"].max(),
                         "siblings_blamed": g["siblings_blamed"].sum(),
                         "messages_per_fault": g["messages"].mean()}).reset_index()


def _days_ok(faults: pd.DataFrame, rows: pd.Series, limit: float) -> tuple[float, str]:
    sub = faults.loc[rows]
    ok = sub["detected"] & (sub["days_to_detect"] <= limit)
    return float(ok.mean()) if len(sub) else np.nan, f"{int(ok.sum())}/{len(sub)} episodes"


def drift_reaching(faults: pd.DataFrame, size: float) -> pd.Series:
    """Drift episodes whose planted offset reaches ``size`` before they end (only those can be late)."""
    return (faults["kind"] == "drift") & (faults["magnitude"].fillna(0) * faults["days_to_end"] >= size)


def targets(faults: pd.DataFrame, total: dict[str, Any], peers: dict[str, pd.DataFrame] | None = None,
            replicates: int = 3) -> list[dict[str, Any]]:
    """Issue 16's targets against one detector's figures: value, target, met."""
    rows: list[dict[str, Any]] = []

    def add(name: str, value: float, target: str, met: bool, note: str = "") -> None:
        empty = value is None or (isinstance(value, float) and np.isnan(value))
        rows.append({"target": name, "value": value, "goal": target, "met": None if empty else bool(met),
                     "note": note or ("no such episodes" if empty else "")})

    recall = float(faults["detected"].mean()) if len(faults) else np.nan
    add("recall of fault episodes", recall, ">= 0.95", recall >= 0.95, f"{int(faults['detected'].sum())}/{len(faults)}")
    fast = (faults["kind"].isin(["stuck", "drop", "disconnected"]) |
            ((faults["kind"] == "step") & (faults["magnitude"].fillna(0) >= 0.03)))
    share, note = _days_ok(faults, fast, 1)
    add("detected within 1 day: step >= 0.03, stuck, drop, disconnected", share, "1.0", share == 1.0, note)
    share, note = _days_ok(faults, faults["kind"] == "spikes", 3)
    add("spikes/noise detected within 3 days", share, "1.0", share == 1.0, note)
    reach = drift_reaching(faults, 0.03)
    sub = faults.loc[reach]
    early = sub["detected"] & (sub["drift_at_detection"] < 0.03)
    share = float(early.mean()) if len(sub) else np.nan
    add("drift caught before it reaches 0.03 m3/m3", share, "1.0", share == 1.0,
        f"{int(early.sum())}/{len(sub)} drift episodes that reach 0.03")
    blamed = int(faults["siblings_blamed"].sum())
    if replicates >= 3:
        add("healthy siblings blamed (>= 3 replicates)", blamed, "0", blamed == 0)
    else:
        rows.append({"target": "healthy siblings blamed", "value": blamed, "goal": "0 (target set for >= 3 "
                     "replicates)", "met": None, "note": f"{replicates} replicates: the target does not apply"})
    add("precision", total["precision"], ">= 0.90", total["precision"] >= 0.90)
    add("false alerts per 100 clean sensor-months", total["false_per_100_clean_sensor_months"], "<= 1",
        total["false_per_100_clean_sensor_months"] <= 1)
    acc = total["event_vs_fault_accuracy"]
    add("event vs fault accuracy", acc, ">= 0.95", acc >= 0.95)
    for name, pf in (peers or {}).items():
        if pf.empty:
            continue
        pair = faults.merge(pf, on=["run", "cell"], suffixes=("", "_peer"))  # the same episodes
        both = pair["detected"] & pair["detected_peer"]
        mine_days = float(pair.loc[both, "days_to_detect"].median())
        their_days = float(pair.loc[both, "days_to_detect_peer"].median())
        recall = float(pair["detected"].mean())
        their_recall = float(pair["detected_peer"].mean())
        add(f"recall ahead of {name}", recall, f"> {their_recall:.2f}", recall > their_recall,
            f"on the {len(pair)} episodes both were run on")
        add(f"median days to detect ahead of {name}", mine_days, f"< {their_days:.1f}",
            bool(mine_days < their_days), f"on the {int(both.sum())} episodes both detected")
    return rows
