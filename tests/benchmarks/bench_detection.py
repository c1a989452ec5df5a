"""Benchmark: fault detection against planted ground truth — smmdn's real daily flow and two peers (SaQC,
flagit) on the same readings, every cell of the pinned grid reported.

Run on demand (prints figures and writes JSON; not part of the test suite):

    python tests/benchmarks/bench_detection.py --out var/bench-detection          # 3 seeds, both datasets
    python tests/benchmarks/bench_detection.py --seeds 1 --datasets demo --cycles 20 --out /tmp/bd   # smaller
    python tests/benchmarks/bench_detection.py --score-only --out var/bench-detection   # re-score finished runs

What runs, per seed (``tests/helpers/detection_truth.py`` plants, ``detection_score.py`` scores):
- ``demo``: 3 runs of the demo simulator (4 sites × 3 depths × 3 replicates, hourly readings, ``--history``
  days of logger history, ``--cycles`` daily cycles). The 26 fault cells (step 0.01/0.03/0.06; drift
  0.0005/0.002/0.01 per day; stuck; spikes 0.1/0.2 every 3/12 h with noise; drop to ~0; disconnected — each
  ending after 10 days and never ending), one rain event in the forcing and one irrigation event not in it,
  at most one fault per site-depth cluster, and clean control clusters.
- ``cosmos``: 2 runs of 11 virtual sites, each a copy of the real COSMOS-UK SPENF pair (TDT1/TDT2, 10 cm,
  daily) over its own stretch of the record, faults planted into one of the two sensors; the same grid
  without the sub-daily spike cells (the record is daily), the two events, and control sites. (The recorded
  baseline ran COSMOS with ``--cycles 40``: see docs/results-detection.md.)

smmdn runs exactly as ``smmdn demo`` does: each run is a fresh home (SQLite, landing directory, model
store), the loggers drop one TOA5 file per site and day, a local Open-Meteo server answers for the
weather, and every cycle is the real Prefect ``daily`` flow (ingest → validate → train → forecast → detect →
verify → deliver, the demo's tiny model) — one subprocess per run. Messages are what the local apprise
receiver on 127.0.0.1 got, per route (its path), attributed to alerts by the idempotency key each carries.

The peers run causally on the readings the run planted (``tests/helpers/detection_peers.py``): each cycle
day, on the data up to its end; their flags are scored per sensor-day (each flagged sensor-day one
detection) and, for the counts, also as episodes (consecutive flagged days as one).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.helpers import detection_score as S  # noqa: E402
from tests.helpers import detection_truth as T  # noqa: E402
from tests.helpers import detection_worlds as W  # noqa: E402

DEMO_DEPTHS, DEMO_SENSORS = (5.0, 20.0, 50.0), ("a", "b", "c")
COSMOS_SITES_PER_RUN = 11


# ---------------------------------------------------------------------------------------------------
# plans
# ---------------------------------------------------------------------------------------------------
def _days(cycles: int) -> tuple[int, int]:
    """Fault start days (cycle index): late enough for a settled model, early enough that a 10-day fault
    ends and recovers inside the run."""
    return max(2, cycles * 8 // 60), max(3, cycles * 25 // 60)


def demo_plans(seed: int, history: int, cycles: int) -> list[T.RunPlan]:
    names = W.demo_site_names()
    lo, hi = _days(cycles)
    return T.plan_runs(seed, [names] * 3, DEMO_DEPTHS, DEMO_SENSORS, W.DEMO_START + history * T.DAY, cycles,
                       faults=T.grid(), controls_per_run=1, first_day=lo, last_day=hi, prefix=f"demo-s{seed}-r")


def cosmos_plans(seed: int, history: int, cycles: int) -> list[T.RunPlan]:
    names = W.cosmos_site_names(COSMOS_SITES_PER_RUN)
    obs, _ = W.cosmos_record()
    calendar, _ = W.cosmos_windows(seed, len(names), history + cycles + W.FORECAST_TAIL, obs)
    lo, hi = _days(cycles)
    faults = [f for f in T.grid() if f.kind != "spikes"]  # daily means: no sub-daily spikes to plant
    return T.plan_runs(seed, [names] * 2, (W.COSMOS_DEPTH,), W.COSMOS_SENSORS, calendar + history * T.DAY, cycles,
                       faults=faults, controls_per_run=1, first_day=lo, last_day=hi, prefix=f"cosmos-s{seed}-r")


def world_of(spec: dict[str, Any]) -> W.World:
    plan = T.RunPlan.from_dict(spec["plan"])
    if spec["dataset"] == "demo":
        return W.demo_world(plan, spec["sim_seed"], history=spec["history"], cycles=spec["cycles"])
    names = W.cosmos_site_names(COSMOS_SITES_PER_RUN)
    return W.cosmos_world(plan, spec["seed"], names, history=spec["history"], cycles=spec["cycles"])


# ---------------------------------------------------------------------------------------------------
# one run of smmdn (a subprocess: a fresh environment, as `smmdn demo` has)
# ---------------------------------------------------------------------------------------------------
def worker(run_dir: Path) -> None:
    """Run every cycle of one run through the real daily flow; write alerts, outbox and timings."""
    spec = json.loads((run_dir / "spec.json").read_text(encoding="utf-8"))
    world = world_of(spec)
    world.readings.to_parquet(run_dir / "readings.parquet")
    world.weather.to_parquet(run_dir / "weather.parquet")
    from smmdn.demo.run import TINY_MODEL, _torch_threads, _warm_imports, start_services

    home = run_dir / "home"
    home.mkdir(parents=True, exist_ok=True)
    services = start_services(
        home, world.sites, world.weather, world.sim_seed, world.registry, run_dir / "received.jsonl",
        lambda path, receiver: write_routes(path, [s.site for s in world.sites], receiver, world.dataset))
    weather, receiver, server, settings = services.weather, services.receiver, services.server, services.settings
    landing = settings.path("landing")
    for s in world.sites:
        world.writer(landing, s.site, world.readings, world.start, world.history)
    from prefect.settings import temporary_settings

    from flows.daily import daily

    _warm_imports()
    if server is not None:
        server.join()
    threads = _torch_threads(int(os.environ.get("OMP_NUM_THREADS") or 1))
    cycles = []
    t_run = time.perf_counter()
    try:
        with temporary_settings(updates={"flows.heartbeat_frequency": None}):
            for d in range(world.history, world.history + world.cycles):
                day = world.start + d * T.DAY
                for s in world.sites:
                    world.writer(landing, s.site, world.readings, day, 1)
                weather.today = day + T.DAY
                t0 = time.perf_counter()
                summary = daily(day=day.date().isoformat(), history_days=world.history + world.cycles,
                                train_overrides=TINY_MODEL)
                seconds = time.perf_counter() - t0
                cycles.append({"issue": summary["issue"], "seconds": round(seconds, 2),
                               "training": (summary.get("training") or {}).get("status"),
                               "alerts": (summary.get("alerts") or {}).get("status")})
                print(f"{spec['name']} {summary['issue']}: {seconds:.1f} s", flush=True)
    finally:
        weather.stop()
        receiver.stop()
        _torch_threads(threads)
    from smmdn.store import Store
    from smmdn.store import alerts as db

    store = Store(settings.resolved_database_url)
    from smmdn.store import incidents as idb  # issue 17: incidents and their members, scored apart

    members = idb.read_members(store)
    idb.read_incidents(store).to_csv(run_dir / "incidents.csv", index=False)
    members.to_csv(run_dir / "incident_members.csv", index=False)
    alerts = db.read_alerts(store).drop(columns=["details"], errors="ignore")
    alerts["incident"] = alerts["id"].map(dict(zip(members["alert_id"], members["incident_id"], strict=True)))
    alerts.to_csv(run_dir / "alerts.csv", index=False)
    db.read_outbox(store).drop(columns=["body", "attachment_spec"], errors="ignore").to_csv(run_dir / "outbox.csv",
                                                                                            index=False)
    (run_dir / "cycles.json").write_text(json.dumps({"cycles": cycles, "seconds": time.perf_counter() - t_run}),
                                         encoding="utf-8")


def write_routes(path: Path, sites: list[str], receiver: Any, dataset: str) -> Path:
    """One field team per site (its registry tag), operators apart; each team posts under its own path."""
    import yaml

    tag = (lambda s: f"field-{s[-1]}") if dataset == "demo" else (lambda s: f"field-{s}")
    teams: dict[str, Any] = {tag(s): {"urls": [receiver.url_for(tag(s))], "escalate_to": "ops"} for s in sites}
    teams["ops"] = {"urls": [receiver.url_for("ops")]}
    spec = {"teams": teams, "operators": ["ops"], "routes": [{"tags": [f"team:{tag(s)}"], "teams": [tag(s)]}
                                                             for s in sites]}
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def run_smmdn(run_dir: Path, log: Path) -> bool:
    """One run in a subprocess (environment and Prefect state of its own); True when it finished."""
    if (run_dir / "alerts.csv").exists():
        return True
    env = {**os.environ, "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "GX_ANALYTICS_ENABLED": "false"}
    with log.open("a", encoding="utf-8") as fh:
        done = subprocess.run([sys.executable, __file__, "--worker", str(run_dir)], cwd=REPO, env=env, stdout=fh,
                              stderr=subprocess.STDOUT, check=False)
    return done.returncode == 0 and (run_dir / "alerts.csv").exists()


# ---------------------------------------------------------------------------------------------------
# peers and scoring
# ---------------------------------------------------------------------------------------------------
def run_peers(run_dir: Path, plan: T.RunPlan, cadence: str) -> None:
    from tests.helpers import detection_peers as P

    if (run_dir / "peers.json").exists() or not (run_dir / "readings.parquet").exists():
        return
    readings = pd.read_parquet(run_dir / "readings.parquet")
    weather = pd.read_parquet(run_dir / "weather.parquet")
    days = list(pd.date_range(plan.start, plan.end - T.DAY, freq="D"))
    t0 = time.perf_counter()
    flags = P.run_peers(readings, weather, days, cadence)
    for peer, frame in flags.items():
        frame.to_csv(run_dir / f"flags-{peer}.csv", index=False)
    rates = {peer: P.sensor_day_rates(frame, plan, days) for peer, frame in flags.items()}
    (run_dir / "peers.json").write_text(json.dumps({"seconds": time.perf_counter() - t0, "rates": rates}),
                                        encoding="utf-8")


def score_dir(run_dir: Path) -> dict[str, S.RunScore]:
    """Scores of every detector that finished on this run."""
    plan = T.RunPlan.from_dict(json.loads((run_dir / "spec.json").read_text(encoding="utf-8"))["plan"])
    out: dict[str, S.RunScore] = {}
    if (run_dir / "alerts.csv").exists():
        alerts = pd.read_csv(run_dir / "alerts.csv")
        lines = [json.loads(x) for x in (run_dir / "received.jsonl").read_text(encoding="utf-8").splitlines()
                 if x.strip()] if (run_dir / "received.jsonl").exists() else []
        out["smmdn"] = S.score_run(S.detections_from_alerts(alerts), plan, S.messages_from_receiver(lines))
    for peer in ("saqc", "flagit"):
        path = run_dir / f"flags-{peer}.csv"
        if path.exists():
            flags = pd.read_csv(path)
            if len(flags):
                flags["time"] = pd.to_datetime(flags["time"], utc=True)
            out[peer] = S.score_run(S.detections_from_flags(flags, max_gap_days=0), plan)  # per sensor-day
            out[f"{peer}:episodes"] = S.score_run(S.detections_from_flags(flags, max_gap_days=1), plan)
    return out


def report(out: Path, datasets: list[str]) -> dict[str, Any]:
    """Print and write every grid cell and the totals per dataset and detector."""
    result: dict[str, Any] = {}
    for dataset in datasets:
        per: dict[str, list[S.RunScore]] = {}
        rates: dict[str, list[dict[str, float]]] = {}
        runs = sorted(p for p in out.glob(f"{dataset}-s*-r*") if (p / "spec.json").exists())
        timing = []
        for run_dir in runs:
            for detector, score in score_dir(run_dir).items():
                per.setdefault(detector, []).append(score)
            if (run_dir / "peers.json").exists():
                for peer, r in json.loads((run_dir / "peers.json").read_text())["rates"].items():
                    rates.setdefault(peer, []).append(r)
            if (run_dir / "cycles.json").exists():
                c = json.loads((run_dir / "cycles.json").read_text())
                timing.append({"run": run_dir.name, "cycles": len(c["cycles"]), "seconds": round(c["seconds"], 1)})
        result[dataset] = {"runs": [r.name for r in runs], "timing": timing, "detectors": {}}
        episodes = {k.split(":")[0]: per.pop(k) for k in [k for k in per if k.endswith(":episodes")]}
        for detector, scores in per.items():
            faults = pd.concat([s.faults for s in scores], ignore_index=True)
            events = pd.concat([s.events for s in scores], ignore_index=True)
            cells = S.cell_table(faults)
            total = S.summary(scores)
            if detector in episodes:  # the same flags as episodes (consecutive flagged days as one "alert")
                ep = S.summary(episodes[detector])
                total["episodes"] = {k: ep[k] for k in ("alerts", "precision", "false_per_100_clean_sensor_months")}
            if detector in rates:
                total["sensor_day_rates"] = {k: float(pd.Series([r[k] for r in rates[detector]]).mean())
                                             for k in rates[detector][0]}
            result[dataset]["detectors"][detector] = {"summary": total, "cells": cells.to_dict("records"),
                                                      "events": events.to_dict("records"),
                                                      "faults": faults.to_dict("records")}
            print(f"\n== {dataset} / {detector}: {len(scores)} runs, {total['faults']} fault episodes")
            with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_rows", 100):
                print(cells.round(2).to_string(index=False))
                if len(events):
                    print(events[["run", "kind", "in_forcing", "site", "as_event", "as_fault", "messages"]]
                          .to_string(index=False))
            print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in total.items()})
        from tests.helpers import notification_score as N  # issue 17's targets, same runs

        figures = N.score_dirs(runs)
        if figures is not None:
            result[dataset]["notifications"] = figures
            print(f"\n== {dataset} / notifications (messages = what the receiver got, digests apart)")
            print(N.table(figures))
    (out / "results.json").write_text(S.to_json(result), encoding="utf-8")
    (out / "results.md").write_text(markdown(result), encoding="utf-8")
    return result


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _side_by_side(tables: dict[str, pd.DataFrame], key: str, cols: dict[str, str]) -> list[str]:
    """One markdown table: a row per ``key``, for each detector the ``cols`` (column → header)."""
    names = list(tables)
    keys: list[str] = []
    for t in tables.values():
        keys += [k for k in t[key] if k not in keys]
    head = [key, "episodes"] + [f"{n} {h}" for n in names for h in cols.values()]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k in keys:
        first = next(t for t in tables.values() if k in set(t[key]))
        row = [k, _fmt(int(first.loc[first[key] == k, "episodes"].iloc[0]))]
        for n in names:
            t = tables[n]
            r = t.loc[t[key] == k]
            for c in cols:
                row.append(_fmt(r[c].iloc[0]) if len(r) else "–")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def markdown(result: dict[str, Any]) -> str:
    """The figures as markdown tables (pasted into docs/results-detection.md)."""
    out: list[str] = []
    for dataset, res in result.items():
        dets = res["detectors"]
        if not dets:
            continue
        faults = {n: pd.DataFrame(d["faults"]) for n, d in dets.items()}
        out += [f"### {dataset}: {len(res['runs'])} runs ({', '.join(res['runs'])})", ""]
        if res["timing"]:
            secs = sum(t["seconds"] for t in res["timing"])
            cyc = sum(t["cycles"] for t in res["timing"])
            out += [f"smmdn: {cyc} daily cycles through the real `daily` flow, {secs / 60:.0f} min "
                    f"({secs / max(cyc, 1):.1f} s per cycle).", ""]
        out += ["Per fault type (all magnitudes and both durations):", ""]
        out += _side_by_side({n: S.family_table(f) for n, f in faults.items()}, "kind",
                             {"recall": "recall", "days_median": "days (median)", "siblings_blamed": "siblings"})
        out += ["", "Every grid cell (days: daily cycles to the first culprit alert, median / max over seeds):", ""]
        cells = {n: S.cell_table(f).assign(days=lambda t: [f"{_fmt(a, 0)} / {_fmt(b, 0)}" for a, b in
                                                          zip(t["days_median"], t["days_max"], strict=True)])
                 for n, f in faults.items()}
        out += _side_by_side(cells, "cell", {"recall": "recall", "days": "days", "siblings_blamed": "siblings"})
        if "smmdn" in cells:
            out += ["", "smmdn per cell: faults read as cluster events, culprit alerts closed after a 10-day fault "
                    "ended (share), alerts and messages per fault:", ""]
            out += _side_by_side({"smmdn": cells["smmdn"]}, "cell",
                                 {"as_event": "as event", "closed_after_end": "closed after end",
                                  "alerts_per_fault": "alerts/fault", "messages_per_fault": "messages/fault"})
        out += ["", "| totals | " + " | ".join(dets) + " |", "|---|" + "---|" * len(dets)]
        keys = [("faults", "fault episodes"), ("recall", "recall"),
                ("alerts", "alerts (smmdn, non-system) / flagged sensor-days (peers)"),
                ("system_alerts", "system alerts (calibration drift)"), ("precision", "precision"),
                ("false_per_100_clean_sensor_months",
                 "false alerts (peers: flagged sensor-days) per 100 clean sensor-months"),
                ("clean_sensor_months", "clean sensor-months"), ("event_vs_fault_accuracy", "event vs fault accuracy"),
                ("messages", "messages received"), ("messages_per_fault", "messages per fault"),
                ("reminders_share", "reminders share"), ("faults_one_incident_notified",
                                                         "faults with exactly one notified incident (alert)"),
                ("incidents_spanning_faults", "incidents (alerts) spanning two faults")]
        notify = {"messages", "messages_per_fault", "reminders_share", "faults_one_incident_notified", "system_alerts",
                  "incidents_spanning_faults"}
        for k, label in keys:  # the peers flag; they notify nobody
            out.append(f"| {label} | " + " | ".join(_fmt(d["summary"].get(k)) if n == "smmdn" or k not in notify
                                                    else "–" for n, d in dets.items()) + " |")
        ep_keys = ("alerts", "precision", "false_per_100_clean_sensor_months")
        out.append("| peers as episodes (consecutive flagged days = one): count / precision / false per 100 clean "
                   "sensor-months | " + " | ".join(
                       "–" if "episodes" not in d["summary"] else
                       " / ".join(_fmt(d["summary"]["episodes"][k]) for k in ep_keys) for d in dets.values()) + " |")
        for k in ("clean_flagged_share", "event_flagged_share"):
            out.append(f"| {k.replace('_', ' ')} (sensor-days) | " + " | ".join(
                _fmt((d["summary"].get("sensor_day_rates") or {}).get(k)) for d in dets.values()) + " |")
        out.append("| roles | " + " | ".join(", ".join(f"{a} {b}" for a, b in d["summary"]["roles"].items())
                                            for d in dets.values()) + " |")
        if "smmdn" in dets:
            sm = dets["smmdn"]["summary"]
            out += ["", f"smmdn messages per route: {sm['messages_per_route']}; by event: {sm['messages_by_event']}; "
                    f"{_fmt(sm['messages_per_notified_alert'], 1)} messages per alert that notified "
                    "(every alert is its own incident today).", ""]
            ev = pd.DataFrame(dets["smmdn"]["events"])
            if len(ev):
                out += ["| event | run | site | in forcing | alerts as event | alerts as fault | messages |",
                        "|---|---|---|---|---|---|---|"]
                out += [f"| {r.kind} | {r.run} | {r.site} | {_fmt(bool(r.in_forcing))} | {r.as_event} | {r.as_fault} | "
                        f"{r.messages} |" for r in ev.itertuples()]
            peers = {n: f for n, f in faults.items() if n != "smmdn"}
            rows = S.targets(faults["smmdn"], sm, peers, replicates=3 if dataset == "demo" else 2)
            out += ["", "Issue 16 targets, today's detector:", "", "| target | value | goal | met | note |",
                    "|---|---|---|---|---|"]
            out += [f"| {r['target']} | {_fmt(r['value'])} | {r['goal']} | "
                    f"{'n/a' if r['met'] is None else ('yes' if r['met'] else '**no**')} | {r['note']} |" for r in rows]
            res["targets"] = rows
        out.append("")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "var" / "bench-detection")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--datasets", nargs="+", default=["demo", "cosmos"], choices=["demo", "cosmos"])
    parser.add_argument("--history", type=int, default=60)
    parser.add_argument("--cycles", type=int, default=60)
    parser.add_argument("--runs", type=int, nargs="*", default=None, help="only these run indices per seed")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--no-smmdn", action="store_true")
    parser.add_argument("--score-only", action="store_true")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "runs.log"
    if not args.score_only:
        for dataset in args.datasets:
            if dataset == "cosmos" and not W.cosmos_available():
                print(f"cosmos: {W.COSMOS_CSV} not found, skipped")
                continue
            for seed in args.seeds:
                plans = (demo_plans if dataset == "demo" else cosmos_plans)(seed, args.history, args.cycles)
                for r, plan in enumerate(plans):
                    if args.runs is not None and r not in args.runs:
                        continue
                    run_dir = args.out / plan.name
                    run_dir.mkdir(parents=True, exist_ok=True)
                    spec = {"name": plan.name, "dataset": dataset, "seed": seed, "sim_seed": 1000 * seed + r,
                            "history": args.history, "cycles": args.cycles, "plan": plan.to_dict()}
                    (run_dir / "spec.json").write_text(json.dumps(spec, indent=1), encoding="utf-8")
                    t0 = time.perf_counter()
                    ok = True
                    if not args.no_smmdn:
                        ok = run_smmdn(run_dir, log)
                    if not args.no_peers:
                        if not (run_dir / "readings.parquet").exists():
                            world = world_of(spec)
                            world.readings.to_parquet(run_dir / "readings.parquet")
                            world.weather.to_parquet(run_dir / "weather.parquet")
                        run_peers(run_dir, plan, "hourly" if dataset == "demo" else "daily")
                    print(f"{plan.name}: {'ok' if ok else 'FAILED (see runs.log)'} in {time.perf_counter() - t0:.0f} s",
                          flush=True)
    report(args.out, args.datasets)


if __name__ == "__main__":
    main()
