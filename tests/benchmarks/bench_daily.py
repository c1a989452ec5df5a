"""Benchmark: the daily cycle without training, at growing network sizes; fine-tune time; demo wall time.

Run on demand (prints figures; not part of the test suite):

    python tests/benchmarks/bench_daily.py                      # 1, 11, 100, 111 sites (9 … 999 series)
    python tests/benchmarks/bench_daily.py --sites 100 --demo   # the 900-series target case + smmdn demo

Each size gets a fresh TimescaleDB database on a throwaway cluster (tests/pg.py; or ``--url``), a
simulated network of N sites × 3 depths × 3 sensors (``smmdn.demo.simulate``) whose loggers drop TOA5
files into the landing directory, and the loopback Open-Meteo server. Setup (not timed as the cycle):
the real cold-start ``daily`` flow with a tiny model ingests ``--history`` days and trains a champion.
Then the measured cycle: the next day's files arrive and the real ``daily`` flow runs with
``skip_training=True`` (ingest → validate → forecast → detect → deliver → verify) under the Prefect
test harness. The per-step breakdown is read back from Prefect's own flow- and task-run records, as an
operator would see it in the UI. After that, one real fine-tune (``train`` flow, production defaults).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

START = pd.Timestamp("2024-03-01", tz="UTC")
TINY = {"hidden": 8, "seq_len": 30, "warmup": 5, "max_epochs": 2, "batch_size": 64, "valid_steps": 10,
        "fine_tune_epochs": 1, "patience": 2, "min_epochs": 1, "chunks_per_location": 2, "device": "cpu"}
# The champion is tiny (training is not what is measured) but its spread is calibrated, so the number of
# alerts (each opened one renders a PNG) is what a real network would see, not the output of a broken model.


def configure(home: Path, url: str, weather: Any, registry: Path, alerts_url: str = "") -> None:
    from smmdn.config import get_settings

    env = {"SMMDN_APPRISE_URLS": alerts_url, "SMMDN_HOME": str(home), "SMMDN_DATABASE_URL": url,
           "SMMDN_REGISTRY_FILE": str(registry),
           "SMMDN_HOLDOUT_DAYS": "8", "SMMDN_FORECAST_HORIZON": "7", "SMMDN_HTTP_RETRIES": "0",
           "SMMDN_HTTP_BACKOFF_S": "0.01", "SMMDN_FULL_RETRAIN_WEEKDAY": "6", **weather.settings_env()}
    os.environ.update(env)
    get_settings.cache_clear()


def step_times(flow_run_id: uuid.UUID) -> dict[str, float]:
    """Wall seconds of each task and subflow of one flow run, from Prefect's records (start→end)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentTaskRunId, TaskRunFilter

    async def read() -> dict[str, float]:
        async with get_client() as client:
            tasks = await client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [flow_run_id]}),
                                                limit=200)
            children = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
                parent_task_run_id=FlowRunFilterParentTaskRunId(any_=[t.id for t in tasks])), limit=200)
            out: dict[str, float] = {}
            for run in children:
                flow = await client.read_flow(run.flow_id)
                if run.start_time and run.end_time:
                    out[f"flow {flow.name}"] = (run.end_time - run.start_time).total_seconds()
                    inner = await client.read_task_runs(
                        flow_run_filter=FlowRunFilter(id={"any_": [run.id]}), task_run_filter=TaskRunFilter(),
                        limit=200)
                    for t in inner:
                        if t.start_time and t.end_time:
                            key = f"  {flow.name}/{t.task_key.split('-')[0] if t.task_key else t.name}"
                            out[key] = out.get(key, 0.0) + (t.end_time - t.start_time).total_seconds()
            child_tasks = {r.parent_task_run_id for r in children}
            for t in tasks:
                if t.id not in child_tasks and t.start_time and t.end_time:
                    out[f"task {t.name.rsplit('-', 1)[0]}"] = (t.end_time - t.start_time).total_seconds()
            return out

    return asyncio.run(read())


def one_size(n_sites: int, history: int, cluster: Any, url: str | None) -> dict[str, Any]:
    from flows.daily import daily
    from flows.train import train
    from smmdn.demo.feeds import WeatherServer, registry_yaml, write_toa5_day
    from smmdn.demo.receiver import AlertReceiver
    from smmdn.demo.simulate import simulate_network
    from smmdn.store import Store

    home = Path(tempfile.mkdtemp(prefix=f"bench-daily-{n_sites}-"))
    db_url = url or cluster.create_database(f"bench_daily_{n_sites}_{uuid.uuid4().hex[:6]}")
    t0 = time.perf_counter()
    net = simulate_network(n_sites, START, history + 12, failure_day=history - 5, seed=11)
    weather = WeatherServer(net.sites, net.weather, seed=11).start()
    receiver = AlertReceiver(home / "alerts.jsonl").start()
    (home / "registry.yaml").write_text(registry_yaml(net.sites), encoding="utf-8")
    configure(home, db_url, weather, home / "registry.yaml", receiver.url)
    Store(db_url).init()
    from smmdn.config import get_settings

    landing = get_settings().path("landing")
    try:
        for s in net.sites:
            write_toa5_day(landing, s.site, net.readings, START, days=history - 1)
        cold_day = START + pd.Timedelta(days=history - 1)
        for s in net.sites:
            write_toa5_day(landing, s.site, net.readings, cold_day)
        weather.today = cold_day + pd.Timedelta(days=1)
        t1 = time.perf_counter()
        cold = daily(day=cold_day.date().isoformat(), history_days=history + 30, train_overrides=TINY)
        cold_s = time.perf_counter() - t1
        assert cold["forecast"]["status"] == "complete", cold["forecast"]

        day = cold_day + pd.Timedelta(days=1)
        for s in net.sites:
            write_toa5_day(landing, s.site, net.readings, day)
        weather.today = day + pd.Timedelta(days=1)
        t2 = time.perf_counter()
        state = daily(day=day.date().isoformat(), history_days=history + 30, skip_training=True, return_state=True)
        cycle_s = time.perf_counter() - t2
        summary = state.result()
        steps = step_times(state.state_details.flow_run_id)

        t3 = time.perf_counter()
        tuned = train(day=day.date().isoformat(), kind="fine-tune", history_days=history + 30)
        tune_s = time.perf_counter() - t3
        store = Store(db_url)
        series = int(store.read_sensors().shape[0])
        return {"sites": n_sites, "series": series, "setup_s": t1 - t0, "cold_start_s": cold_s, "cycle_s": cycle_s,
                "steps": steps, "forecast_rows": summary["forecast"]["rows"], "fine_tune_s": tune_s,
                "fine_tune_status": tuned["status"], "observations": store.count("observations"),
                "alerts_open": store.count("alerts"), "delivered": receiver.count}
    finally:
        weather.stop()
        receiver.stop()


def demo_wall() -> float:
    home = tempfile.mkdtemp(prefix="bench-demo-")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "smmdn.cli", "demo", "--home", home], check=True, cwd=REPO,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, nargs="+", default=[1, 11, 100, 111])
    parser.add_argument("--history", type=int, default=45, help="days of logger history before the cycle")
    parser.add_argument("--url", default=os.environ.get("SMMDN_BENCH_DATABASE_URL"),
                        help="an existing PostgreSQL+TimescaleDB database (default: a throwaway cluster)")
    parser.add_argument("--demo", action="store_true", help="also time `smmdn demo` end to end")
    args = parser.parse_args()
    os.environ.update({"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                       "GX_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING"})
    import torch

    print(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")
    cluster = None
    if not args.url:
        from tests.pg import start_cluster

        cluster = start_cluster()
    from prefect.testing.utilities import prefect_test_harness

    results = []
    try:
        with prefect_test_harness(server_startup_timeout=90):
            for n in args.sites:
                r = one_size(n, args.history, cluster, args.url)
                results.append(r)
                print(f"\n== {r['sites']} sites, {r['series']} series ({r['observations']} observation rows stored)")
                print(f"setup (simulate + files) {r['setup_s']:.1f} s; cold start with tiny training "
                      f"{r['cold_start_s']:.1f} s")
                print(f"daily cycle without training: {r['cycle_s']:.1f} s wall, {r['forecast_rows']} forecast rows, "
                      f"{r['alerts_open']} alerts in the table, {r['delivered']} messages delivered (tiny model)")
                for name, seconds in r["steps"].items():
                    print(f"  {name:<40} {seconds:7.2f} s")
                print(f"fine-tune (production defaults, CPU): {r['fine_tune_s']:.1f} s ({r['fine_tune_status']})")
    finally:
        if cluster is not None:
            cluster.stop()
    print("\nseries  cycle_s  fine_tune_s")
    for r in results:
        print(f"{r['series']:6d}  {r['cycle_s']:7.1f}  {r['fine_tune_s']:11.1f}")
    if args.demo:
        print(f"\nsmmdn demo wall time: {demo_wall():.1f} s (load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
