"""Replay the detect step on a finished benchmark run: the development loop for the detector's thresholds.

Why: a benchmark run is 60 real daily cycles (minutes to an hour); the detector itself is pure (frames in,
frames out) and reads only the stored readings, forecasts and its own alerts. Replaying the real detect
step (``smmdn.alerts.step.detect``, the real lifecycle) day by day on a *copy* of a finished run's store,
with its alerts, outbox and alert watermarks removed, costs seconds per run, so a threshold change can be
judged on development seeds before anything is run on the scored ones.

What it cannot replay: the forecasts are the ones the run issued, i.e. made with the exclusions the run's
own alerts caused (a detector that names a sensor later would, in a real run, also have had a forecast
steered by it for longer). The figures from a replay are a development signal, never a reported result.

    python tests/helpers/detection_replay.py var/dev-detect/demo-s11-r0 [--set z_step=6 ...]

Uses ``sqlite3`` on the copied benchmark database only (test tooling, not the library).
"""

from __future__ import annotations

import argparse
import dataclasses
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

from tests.helpers import detection_score as S  # noqa: E402
from tests.helpers import detection_truth as T  # noqa: E402


def copy_store(run_dir: Path, work: Path) -> Path:
    """A copy of the run's home with only what detection reads (store, registry, routes), upgraded to
    the current schema."""
    home = work / "home"
    (home / "data").mkdir(parents=True, exist_ok=True)
    shutil.copy2(run_dir / "home" / "data" / "smmdn.db", home / "data" / "smmdn.db")
    for name in ("registry.yaml", "alert-routes.yaml"):
        if (run_dir / "home" / name).exists():
            shutil.copy2(run_dir / "home" / name, home / name)
    from smmdn.store import Store

    Store(f"sqlite:///{home / 'data' / 'smmdn.db'}").init()  # a run made by older code: today's schema
    return home


def copy_home(run_dir: Path, work: Path) -> Path:
    """``copy_store`` without the run's alerts and outbox (detection raises them again)."""
    home = copy_store(run_dir, work)
    with sqlite3.connect(home / "data" / "smmdn.db") as conn:
        conn.execute("DELETE FROM alert_outbox")
        conn.execute("DELETE FROM alerts")
        conn.execute("DELETE FROM watermarks WHERE source = 'alerts'")
    return home


def replay(run_dir: Path, consensus: dict[str, Any] | None = None, work: Path | None = None) -> pd.DataFrame:
    """Every cycle's detect step again on a copy of ``run_dir``'s store; returns the alerts it raised."""
    from smmdn.demo.run import prepare_environment

    spec = json.loads((run_dir / "spec.json").read_text(encoding="utf-8"))
    plan = T.RunPlan.from_dict(spec["plan"])
    tmp = Path(tempfile.mkdtemp(prefix="replay-")) if work is None else work
    home = copy_home(run_dir, tmp)
    prepare_environment(home, {"SMMDN_ALERT_ROUTES_FILE": str(home / "alert-routes.yaml")})
    from smmdn.alerts import consensus as C
    from smmdn.alerts.routing import load_routes
    from smmdn.alerts.step import detect
    from smmdn.config import get_settings
    from smmdn.cycle.day import resolve_day
    from smmdn.store import Store
    from smmdn.store import alerts as db

    if consensus:
        fields = {f.name: f.type for f in dataclasses.fields(C.Consensus)}
        unknown = set(consensus) - set(fields)
        if unknown:
            raise SystemExit(f"unknown Consensus fields {sorted(unknown)}; known: {sorted(fields)}")
        C.DEFAULT = dataclasses.replace(C.DEFAULT, **consensus)
    settings = get_settings()
    store = Store(settings.resolved_database_url)
    routes = load_routes(settings)
    for day in pd.date_range(plan.start, plan.end - T.DAY, freq="D"):
        cycle = resolve_day(day.date().isoformat(), settings)
        detect(store, cycle.now, settings, routes=routes)
    alerts = db.read_alerts(store)
    if work is None:
        shutil.rmtree(tmp, ignore_errors=True)
    return alerts


def score(run_dir: Path, alerts: pd.DataFrame, wet: bool = False) -> tuple[S.RunScore, pd.DataFrame]:
    """The run's score from replayed alerts, and every alert with its role; ``wet``: the simulator's own
    heavy-rain days count as wetting events (``detection_score.assign_roles``), else the pinned truth."""
    plan = T.RunPlan.from_dict(json.loads((run_dir / "spec.json").read_text(encoding="utf-8"))["plan"])
    heavy = S.heavy_rain_days(pd.read_parquet(run_dir / "weather.parquet")) if wet else None
    sc = S.score_run(S.detections_from_alerts(alerts), plan, heavy_rain=heavy)
    extra = alerts[["id", "details"]].assign(fault_type=lambda a: [(d or {}).get("fault") for d in a["details"]],
                                             basis=lambda a: [(d or {}).get("basis") for d in a["details"]])
    return sc, sc.roles.merge(extra.drop(columns="details"), on="id", how="left")


def with_rain(run_dir: Path, roles: pd.DataFrame) -> pd.DataFrame:
    """Each alert with the precipitation the run's weather had at its site on the evaluated day (the alert's
    day: ``raised`` minus a day) and the day before — whether a cluster alert followed real rain."""
    weather = pd.read_parquet(run_dir / "weather.parquet")
    weather["day"] = pd.to_datetime(weather["time"], utc=True).dt.floor("D")
    rain = weather.groupby(["site", "day"])["precipitation_sum"].sum()

    def mm(site: str, day: pd.Timestamp) -> float:
        return float(rain.get((site, day), float("nan")))

    day = pd.to_datetime(roles["raised"], utc=True).dt.floor("D") - T.DAY
    return roles.assign(rain_mm=[mm(s, d) for s, d in zip(roles["site"], day, strict=True)],
                        rain_before_mm=[mm(s, d - T.DAY) for s, d in zip(roles["site"], day, strict=True)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--set", nargs="*", default=[], help="Consensus field=value overrides")
    parser.add_argument("--stored", action="store_true", help="score the run's own alerts.csv (no replay)")
    args = parser.parse_args()
    overrides = {k: float(v) if "." in v or "e" in v else int(v) for k, v in (s.split("=", 1) for s in args.set)}
    scores, rolled, wet_scores = [], [], []
    for run_dir in args.runs:
        t0 = time.perf_counter()
        alerts = (pd.read_csv(run_dir / "alerts.csv").assign(details=None) if args.stored
                  else replay(run_dir, overrides))
        sc, roles = score(run_dir, alerts)
        roles = with_rain(run_dir, roles)
        scores.append(sc)
        rolled.append(roles)
        wet_scores.append(score(run_dir, alerts, wet=True)[0])
        print(f"== {run_dir.name}: {len(alerts)} alerts in {time.perf_counter() - t0:.0f} s")
        with pd.option_context("display.width", 220, "display.max_rows", 300, "display.max_colwidth", 70):
            cols = ["site", "depth_cm", "sensor", "kind", "raised", "resolved", "role", "fault_type", "rain_mm",
                    "rain_before_mm"]
            print(roles.loc[roles["role"] != "culprit", cols].to_string(index=False))
    total = S.summary(scores)
    false_roles = ("other", "clean", "fault_as_event", "event_as_fault")
    every = pd.concat(rolled, ignore_index=True) if rolled else pd.DataFrame()
    if len(every):
        false = every.loc[every["role"].isin(false_roles)]
        wet = false.loc[(false["kind"] == "cluster") & ((false["rain_mm"] >= S.HEAVY_MM)
                                                         | (false["rain_before_mm"] >= S.HEAVY_MM))]
        print(f"false alerts (roles {', '.join(false_roles)}): {len(false)}; of them cluster alerts on a day with "
              f">= {S.HEAVY_MM:g} mm of real rain at the site (that day or the day before): {len(wet)}")
    keys = ("faults", "recall", "alerts", "precision", "false_per_100_clean_sensor_months", "event_vs_fault_accuracy",
            "roles")
    print({k: (round(total[k], 3) if isinstance(total[k], float) else total[k]) for k in keys if k in total})
    wet_total = S.summary(wet_scores)
    print("with heavy-rain days as wetting events:",
          {k: (round(wet_total[k], 3) if isinstance(wet_total[k], float) else wet_total[k]) for k in keys
           if k in wet_total})
    faults = pd.concat([s.faults for s in scores], ignore_index=True)
    with pd.option_context("display.width", 220, "display.max_rows", 100):
        print(S.cell_table(faults)[["cell", "episodes", "recall", "days_median", "siblings_blamed"]].to_string(
            index=False))


if __name__ == "__main__":
    main()
