"""Benchmark: the figures behind docs/operations-guide.md "Sizing" (prints them; not part of the test suite).

    python tests/benchmarks/bench_sizing.py                  # 24 sites: shards of 16 and 8 sites
    python tests/benchmarks/bench_sizing.py --sites 48 --history 60

A throwaway TimescaleDB cluster (tests/pg.py), a simulated network of N sites x 3 depths x 3 sensors
(hourly readings dropped as TOA5 files, Open-Meteo on loopback), the real cold-start ``daily`` flow with a
tiny model (setup, not measured), then ONE sharded day (``SMMDN_SHARD_SITES`` = 2N/3, so one run gives two
shard sizes) under the Prefect test harness, shards as in-process subflows. Printed:

- each shard's wall time from Prefect's flow-run records, the fitted fixed cost per shard and cost per series
  (two sizes: (t1 - t2) / (s1 - s2)), and series per worker at the given cycle window (``--window-min``);
- bytes per stored row of each hypertable (TimescaleDB ``hypertable_size`` / rows, uncompressed: the
  compression policy of the licenced build is not applied here); for forecasts and scores, whose rows are
  few in a small run, the marginal bytes per row of ``--copies`` more copies in the same chunks; and per year
  for 100,000 series;
- training throughput on CPU at the production preset's shapes (sequences/s of a real ``fit`` on the stored
  inputs, 2 epochs), from which GPU hours per full retrain are extrapolated with an assumed GPU speed-up
  (``--gpu-speedup``, an assumption, printed as such: no GPU on this machine).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.benchmarks.bench_daily import TINY, configure  # noqa: E402  (the same world set-up)

START = pd.Timestamp("2024-03-01", tz="UTC")
TABLES = ("observations", "forecasts", "verification", "forcing")
TARGET_SERIES = 100_000


def shard_times() -> dict[str, tuple[int, float]]:
    """Per ``shard`` flow run (deployment daily-shard): (sites, wall seconds start → end) from Prefect's records."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    async def read() -> dict[str, tuple[int, float]]:
        async with get_client() as client:
            runs = await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["shard"])))
        return {r.parameters["shard_id"]: (len(r.parameters["sites"]), (r.end_time - r.start_time).total_seconds())
                for r in runs if r.start_time and r.end_time and r.state.is_completed()}

    return asyncio.run(read())


def bytes_per_row(url: str) -> dict[str, tuple[int, int]]:
    """Per hypertable: (rows, bytes of table + indexes + chunks)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    out = {}
    with engine.connect() as conn:
        for table in TABLES:
            rows = conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
            size = conn.execute(sa.text(f"SELECT hypertable_size('{table}')")).scalar_one()
            out[table] = (int(rows), int(size or 0))
    engine.dispose()
    return out


def marginal_bytes(url: str, copies: int) -> dict[str, tuple[int, float]]:
    """Bytes per row added when the stored forecasts and scores are written ``copies`` times more under other
    model versions: the same chunks, so per-chunk overhead (large in a small run) is left out."""
    from smmdn.store import Store
    from smmdn.store.verification import read_verification, write_verification

    store = Store(url)
    fc, ver = store.read_forecasts(), read_verification(store)
    before = bytes_per_row(url)
    for k in range(copies):
        store.write_forecasts(fc.assign(model_version=f"bench-{k}"), run_id=str(fc["run_id"].iloc[0]))
        write_verification(store, ver.assign(model_version=f"bench-{k}"))
    after = bytes_per_row(url)
    store.dispose()
    return {t: (after[t][0] - before[t][0], (after[t][1] - before[t][1]) / max(after[t][0] - before[t][0], 1))
            for t in ("forecasts", "verification")}


def training_rate(url: str, issue: pd.Timestamp, history: int) -> tuple[float, int]:
    """(sequences/s, locations) of a real 2-epoch fit at the production preset's shapes on this store's inputs."""
    from smmdn.config import get_settings
    from smmdn.cycle.day import resolve_day
    from smmdn.cycle.inputs import load_inputs
    from smmdn.model.api import fit
    from smmdn.model.presets import PRODUCTION, preset_config
    from smmdn.store import Store

    cfg = get_settings()
    store = Store(url)
    cycle = resolve_day(issue, cfg)
    inputs = load_inputs(store, cfg, cycle, history_days=history + 30)
    config = preset_config(PRODUCTION, max_epochs=2, min_epochs=1, refit=False, calibrate=False, device="cpu")
    model = fit(inputs.observations, inputs.forcing, inputs.sites, config, train_end=cycle.data_end)
    locations = int(inputs.observations[["site", "depth_cm"]].drop_duplicates().shape[0])
    return float(model.metrics["training"]["sequences_per_s"]), locations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=24)
    parser.add_argument("--history", type=int, default=45)
    parser.add_argument("--copies", type=int, default=40, help="extra copies of forecasts/scores (marginal size)")
    parser.add_argument("--window-min", type=float, default=30.0, help="the cycle's time budget per worker")
    parser.add_argument("--gpu-speedup", type=float, default=20.0,
                        help="ASSUMED GPU/CPU training speed ratio for the extrapolation (not measured here)")
    args = parser.parse_args()
    os.environ.update({"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                       "GX_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING"})
    from prefect.testing.utilities import prefect_test_harness

    from flows.daily import daily
    from smmdn.config import get_settings
    from smmdn.demo.feeds import WeatherServer, registry_yaml, write_toa5_day
    from smmdn.demo.simulate import simulate_network
    from smmdn.store import Store
    from tests.pg import start_cluster

    print(f"load average {os.getloadavg()[0]:.2f} (2 cores)")
    cluster = start_cluster()
    home = Path(tempfile.mkdtemp(prefix="bench-sizing-"))
    url = cluster.create_database(f"bench_sizing_{uuid.uuid4().hex[:6]}")
    net = simulate_network(args.sites, START, args.history + 3, failure_day=args.history - 5, seed=11)
    weather = WeatherServer(net.sites, net.weather, seed=11).start()
    try:
        (home / "registry.yaml").write_text(registry_yaml(net.sites), encoding="utf-8")
        configure(home, url, weather, home / "registry.yaml")
        Store(url).init()
        landing = get_settings().path("landing")
        for s in net.sites:
            write_toa5_day(landing, s.site, net.readings, START, days=args.history)
        cold = START + pd.Timedelta(days=args.history - 1)
        day = cold + pd.Timedelta(days=1)
        with prefect_test_harness(server_startup_timeout=90):
            weather.today = cold + pd.Timedelta(days=1)
            daily(day=cold.date().isoformat(), history_days=args.history + 30, train_overrides=TINY)
            for s in net.sites:
                write_toa5_day(landing, s.site, net.readings, day)
            weather.today = day + pd.Timedelta(days=1)
            per_shard = math.ceil(2 * args.sites / 3)
            os.environ["SMMDN_SHARD_SITES"] = str(per_shard)
            get_settings.cache_clear()
            t0 = time.perf_counter()
            summary = daily(day=day.date().isoformat(), history_days=args.history + 30, skip_training=True,
                            remote_shards=False)
            cycle_s = time.perf_counter() - t0
            times = shard_times()
        load = os.getloadavg()[0]
        series_per_site = 3 * 3
        print(f"\nsharded day: {args.sites} sites ({args.sites * series_per_site} series), shards of {per_shard} "
              f"sites; whole cycle {cycle_s:.1f} s wall; forecast {summary['forecast']['status']}; "
              f"load average {load:.2f}")
        points = sorted((n * series_per_site, t) for n, t in times.values())
        for series, seconds in points:
            print(f"  shard of {series:5d} series: {seconds:6.1f} s")
        if len(points) >= 2 and points[-1][0] != points[0][0]:
            (s1, t1), (s2, t2) = points[0], points[-1]
            per_series = (t2 - t1) / (s2 - s1)
            fixed = t1 - per_series * s1
            capacity = (args.window_min * 60 - max(fixed, 0)) / per_series if per_series > 0 else float("inf")
            print(f"  fitted: {fixed:.1f} s fixed per shard + {per_series * 1000:.1f} ms per series -> "
                  f"{capacity:,.0f} series per worker in a {args.window_min:g}-min window (at this load)")
        sizes = bytes_per_row(url)
        print("\nstorage (uncompressed hypertables, this run's rows):")
        for table, (rows, size) in sizes.items():
            print(f"  {table:<13} {rows:9d} rows {size / 1e6:8.2f} MB  {size / max(rows, 1):7.1f} B/row")
        marginal = marginal_bytes(url, args.copies)
        for table, (rows, per_row) in marginal.items():
            print(f"  {table:<13} marginal: {per_row:7.1f} B/row over {rows} more rows in the same chunks")
        obs_b = sizes["observations"][1] / max(sizes["observations"][0], 1)
        fc_b, ver_b = marginal["forecasts"][1], marginal["verification"][1]
        horizon = get_settings().forecast_horizon
        year = TARGET_SERIES * 365 * (24 * obs_b + horizon * fc_b + horizon * ver_b)
        print(f"  per year at {TARGET_SERIES:,} series (hourly readings, {horizon} leads, each lead scored): "
              f"{year / 1e9:.0f} GB (observations {TARGET_SERIES * 365 * 24 * obs_b / 1e9:.0f}, forecasts "
              f"{TARGET_SERIES * 365 * horizon * fc_b / 1e9:.0f}, verification "
              f"{TARGET_SERIES * 365 * horizon * ver_b / 1e9:.0f}) -- extrapolated, uncompressed")
        rate, locations = training_rate(url, day, args.history)
        from smmdn.model.presets import PRODUCTION, preset_config

        preset = preset_config(PRODUCTION)
        epochs = preset.max_epochs * (2 if preset.refit else 1)
        seqs = TARGET_SERIES * preset.chunks_per_location * epochs
        print(f"\ntraining on CPU, production shapes (h{preset.hidden}, seq {preset.seq_len}, batch "
              f"{preset.batch_size}): {rate:.0f} sequences/s over {locations} locations (load average "
              f"{os.getloadavg()[0]:.2f})")
        print(f"  full retrain at {TARGET_SERIES:,} series: {seqs:,} sequences (<= {epochs} epochs x "
              f"{preset.chunks_per_location} chunks) = {seqs / rate / 3600:.1f} CPU hours; "
              f"{seqs / rate / 3600 / args.gpu_speedup:.2f} GPU hours at an ASSUMED {args.gpu_speedup:g}x")
    finally:
        weather.stop()
        cluster.stop()


if __name__ == "__main__":
    main()
