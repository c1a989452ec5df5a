"""Replay the alert steps of a finished benchmark run — detect, then plan the notifications — day by day on a
copy of its store, and score issue 17's figures on what was queued: the fast loop for notification rules.

Why: a bench_detection run is 60 real daily cycles (10–30 minutes on the shared machine); what decides the
messages is the detect step (``smmdn.alerts.step.detect``, reading the run's stored readings and forecasts)
and the planning at the end of each cycle (``smmdn.alerts.notify.notify``). Both are replayed here with the
code as it is now, on a copy of the run's store with its alerts, incidents and outbox removed.

What it replays and what it cannot:
- the system alerts the verify step raised (``calibration_drift``) are not recomputed: they are put back as
  the run stored them, opened at ``created_at``, escalated at ``escalated_at`` and resolved at
  ``resolved_at`` (a reopening within the cooldown is not seen: its alert keeps one open span);
- messages are the outbox rows planned (one per target), not the receiver's lines: the run delivered every
  row (``outbox: sent``), and the keys are the same; digests are counted apart as in the receiver figures;
- the forecasts are the run's own (made with the exclusions its own alerts caused); notification rules do
  not change alerts, so a replay with the code the run used reproduces its alerts — check that first
  (``--check``: the replayed alerts against ``alerts.csv`` and the planned keys against ``received.jsonl``).

    python tests/helpers/notification_replay.py var/bench-notify/demo-s1-r0 [...] [--check]

Uses ``sqlite3`` on the copied benchmark database only (test tooling, not the library).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.helpers import detection_replay  # noqa: E402
from tests.helpers import detection_score as S  # noqa: E402
from tests.helpers import detection_truth as T  # noqa: E402
from tests.helpers import notification_score as N  # noqa: E402

SYSTEM = ("calibration_drift",)
CLEARED = ("alert_incident_notices", "alert_incident_members", "alert_incidents", "alert_outbox", "alerts")


def copy_home(run_dir: Path, work: Path) -> tuple[Path, pd.DataFrame]:
    """A copy of the run's home without its alerts, incidents and outbox; returns it and the system alerts."""
    home = detection_replay.copy_store(run_dir, work)
    with sqlite3.connect(home / "data" / "smmdn.db") as conn:
        system = pd.read_sql_query(f"SELECT * FROM alerts WHERE kind IN ({','.join('?' * len(SYSTEM))})", conn,
                                   params=SYSTEM)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table in CLEARED:
            if table in tables:
                conn.execute(f"DELETE FROM {table}")
        conn.execute("DELETE FROM watermarks WHERE source = 'alerts'")
    return home, system


def _system_step(store: Any, system: pd.DataFrame, ids: dict[int, int], now: pd.Timestamp) -> None:
    """Put the run's system alerts back as they stood at ``now`` (open, escalated, resolved)."""
    from smmdn.store import alerts as db

    for r in system.to_dict("records"):
        created = pd.Timestamp(r["created_at"], tz="UTC") if pd.Timestamp(r["created_at"]).tz is None else \
            pd.Timestamp(r["created_at"])
        if created > now:
            continue
        times = {k: (None if r.get(k) is None or pd.isna(r.get(k)) else pd.Timestamp(r[k]).tz_localize("UTC")
                     if pd.Timestamp(r[k]).tz is None else pd.Timestamp(r[k]))
                 for k in ("resolved_at", "escalated_at", "window_start", "window_end", "last_event_at")}
        if int(r["id"]) not in ids:
            values = {k: r[k] for k in ("kind", "site", "depth_cm", "sensor", "dedup_key")} | {
                "window_start": times["window_start"] or created, "window_end": times["window_end"] or created,
                "status": "open", "created_at": created, "revision": 1, "last_event_at": created,
                "details": json.loads(r["details"]) if isinstance(r.get("details"), str) else {}}
            ids[int(r["id"])] = db.insert_alert(store, values)
        new = ids[int(r["id"])]
        if times["escalated_at"] is not None and times["escalated_at"] <= now:
            db.update_alert(store, new, {"escalated_at": times["escalated_at"]})
        if times["resolved_at"] is not None and times["resolved_at"] <= now and str(r["status"]) == "resolved":
            db.update_alert(store, new, {"status": "resolved", "resolved_at": times["resolved_at"],
                                         "resolved_by": "auto"})


def replay(run_dir: Path, work: Path | None = None, days: int | None = None) -> dict[str, Any]:
    """Detect and plan every cycle again on a copy of ``run_dir`` (its first ``days`` cycles only, if given);
    returns alerts, outbox, incidents, members."""
    from smmdn.demo.run import prepare_environment

    spec = json.loads((run_dir / "spec.json").read_text(encoding="utf-8"))
    plan = T.RunPlan.from_dict(spec["plan"])
    tmp = Path(tempfile.mkdtemp(prefix="notify-replay-")) if work is None else work
    home, system = copy_home(run_dir, tmp)
    prepare_environment(home, {"SMMDN_ALERT_ROUTES_FILE": str(home / "alert-routes.yaml")})
    from smmdn.alerts.notify import notify
    from smmdn.alerts.routing import load_routes
    from smmdn.alerts.step import detect
    from smmdn.config import get_settings
    from smmdn.cycle.day import resolve_day
    from smmdn.store import Store
    from smmdn.store import alerts as db
    from smmdn.store import incidents as idb

    get_settings.cache_clear()
    settings = get_settings()
    store = Store(settings.resolved_database_url)
    routes = load_routes(settings)
    ids: dict[int, int] = {}
    cycles = pd.date_range(plan.start, plan.end - T.DAY, freq="D")
    for day in cycles[:days]:
        now = resolve_day(day.date().isoformat(), settings).now
        detect(store, now, settings, routes=routes)
        _system_step(store, system, ids, now)
        notify(store, now, routes, plot_days=settings.alert_plot_days)
    out = {"alerts": db.read_alerts(store), "outbox": db.read_outbox(store), "incidents": idb.read_incidents(store),
           "members": idb.read_members(store), "plan": plan,
           "end": pd.Timestamp(plan.end) if days is None else cycles[:days][-1] + T.DAY}
    store.dispose()
    if work is None:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def figures(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Issue 17's figures over replayed runs (ids offset per run, as ``notification_score.score_dirs`` does)."""
    msgs, incs, mems, faults, sent = [], [], [], {}, {}
    end = None
    for k, res in enumerate(results):
        offset = (k + 1) * 1_000_000
        box = res["outbox"]
        lines = [{"path": f"/{t}", "key": key} for t, key in zip(box["team"], box["idempotency_key"], strict=True)]
        m = N.messages(lines)
        m["incident"] = [None if i is None or pd.isna(i) else int(i) + offset for i in m["incident"]]
        for key, at in zip(box["idempotency_key"], box["created_at"], strict=True):
            sent[N.offset_key(key, offset)] = pd.Timestamp(at)
        m["key"] = [N.offset_key(x, offset) for x in m["key"]]
        inc = res["incidents"].copy()
        inc["id"] += offset
        mem = res["members"].copy()
        mem["incident_id"] += offset
        alerts = res["alerts"].copy()
        roles = S.score_run(S.detections_from_alerts(alerts), res["plan"]).roles
        for r in roles.loc[roles["fault"] >= 0].itertuples():
            faults[int(r.id) + offset] = int(r.fault) + offset
        mem["alert_id"] += offset
        msgs.append(m)
        incs.append(inc)
        mems.append(mem)
        end = res["end"] if end is None else max(end, res["end"])
    return N.score(pd.concat(msgs, ignore_index=True), pd.concat(incs, ignore_index=True),
                   pd.concat(mems, ignore_index=True), end, faults, sent_at=sent)


def check(run_dir: Path, res: dict[str, Any]) -> list[str]:
    """Differences between the replay and the run itself (empty: the replay reproduces it)."""
    problems = []
    stored = pd.read_csv(run_dir / "alerts.csv")
    cols = ["kind", "site", "depth_cm", "sensor", "status"]
    a = stored[cols].astype(str).sort_values(cols).reset_index(drop=True)
    b = res["alerts"][cols].astype(str).sort_values(cols).reset_index(drop=True)
    if not a.equals(b):
        problems.append(f"alerts differ: run {len(a)}, replay {len(b)}")
    lines = [json.loads(x) for x in (run_dir / "received.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]
    got = sorted(str(x.get("key")) for x in lines)
    want = sorted(res["outbox"]["idempotency_key"].astype(str))
    if got != want:
        only_got, only_want = sorted(set(got) - set(want))[:5], sorted(set(want) - set(got))[:5]
        problems.append(f"messages differ: received {len(got)}, replay planned {len(want)}; "
                        f"only received {only_got}, only replayed {only_want}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--check", action="store_true", help="compare each replay with the run's own records")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--days", type=int, help="replay only the first DAYS cycles (a quick look)")
    args = parser.parse_args()
    results = []
    for run_dir in args.runs:
        t0 = time.perf_counter()
        res = replay(run_dir, days=args.days)
        results.append(res)
        print(f"== {run_dir.name}: {len(res['alerts'])} alerts, {len(res['outbox'])} messages planned, "
              f"{len(res['incidents'])} incidents in {time.perf_counter() - t0:.0f} s", flush=True)
        if args.check:
            print("\n".join(check(run_dir, res)) or "replay reproduces the run (alerts and message keys)")
    got = figures(results)
    print(json.dumps(got, indent=1, default=str))
    print(N.table(got))
    if args.json:
        args.json.write_text(json.dumps(got, indent=1, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
