"""Benchmark: one year of hourly USCRN data for 100 sensors (20 stations × 5 depths ≈ 876k rows).

Run on demand (prints figures; not part of the test suite):

    python tests/benchmarks/bench_ingest.py [--stations 20] [--url postgresql+psycopg://...]

Without ``--url`` (or ``SMMDN_BENCH_DATABASE_URL``) it starts its own throwaway PostgreSQL +
TimescaleDB cluster (tests/pg.py). Stages, timed separately: parsing the hourly02 files, validation
(Great Expectations suite + flags, with and without Data Docs), storage (first write, idempotent
re-write), and end to end ``ingest_sensors`` over loopback HTTP into a fresh database.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from smmdn.config import Settings
from smmdn.registry import parse_registry
from smmdn.sources.uscrn import parse_hourly02
from tests.helpers.uscrn_render import hourly02_line

YEAR = 2023


def station_file(i: int, hours: int) -> str:
    """A year of hourly02 lines with a smooth seasonal + diurnal signal and USCRN-like missing cells."""
    rng = np.random.default_rng(i)
    t0 = pd.Timestamp(f"{YEAR}-01-01T01:00Z")
    base = np.array([0.20, 0.24, 0.27, 0.30, 0.33]) + rng.uniform(-0.03, 0.03, 5)
    h = np.arange(hours)
    season = 0.04 * np.sin(2 * np.pi * h / 8760.0)[:, None]
    diurnal = 0.002 * np.sin(2 * np.pi * h / 24.0)[:, None] * np.array([1, 0.6, 0.3, 0.1, 0.05])
    vwc = np.round(base + season + diurnal + rng.normal(0, 0.0008, (hours, 5)), 3)
    missing = rng.random((hours, 5)) < 0.002
    lines = []
    for k in range(hours):
        values = [None if missing[k, d] else float(vwc[k, d]) for d in range(5)]
        lines.append(hourly02_line(f"{90000 + i}", t0 + pd.Timedelta(hours=k), -6, values))
    return "\n".join(lines) + "\n"


def registry_yaml(n: int) -> str:
    sites = "".join(
        f"  - id: S{i:03d}\n    name: S{i}\n    lat: 40\n    lon: -96\n"
        f"    sources: {{uscrn: {{station_file: ST_{i:03d}, wban: '{90000 + i}', product: hourly02}}}}\n"
        for i in range(n)
    )
    return "version: 1\nsites:\n" + sites


def rate(rows: int, seconds: float) -> str:
    return f"{rows:>9,} rows in {seconds:7.2f} s = {rows / seconds:>10,.0f} rows/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=20)
    parser.add_argument("--hours", type=int, default=8760)
    parser.add_argument("--url", default=os.environ.get("SMMDN_BENCH_DATABASE_URL"))
    args = parser.parse_args()

    from smmdn.store import Store

    cluster = None
    if args.url:
        url = args.url

        def fresh(name: str) -> str:
            return url
    else:
        from tests.pg import start_cluster

        cluster = start_cluster()

        def fresh(name: str) -> str:
            return cluster.create_database(name)

    try:
        t = time.perf_counter()
        files = {f"ST_{i:03d}": station_file(i, args.hours) for i in range(args.stations)}
        print(f"rendered {args.stations} hourly02 files ({sum(map(len, files.values())) / 1e6:.1f} MB) "
              f"in {time.perf_counter() - t:.1f} s")

        t = time.perf_counter()
        parts = [parse_hourly02(text, f"S{i:03d}", wban=f"{90000 + i}") for i, text in enumerate(files.values())]
        parse_s = time.perf_counter() - t
        obs = pd.concat([p[0] for p in parts], ignore_index=True)
        forcing = pd.concat([p[1] for p in parts], ignore_index=True)
        print(f"parse      {rate(len(obs), parse_s)}  (+{len(forcing):,} forcing rows)")

        from smmdn.quality.validate import validate_forcing, validate_observations

        validate_observations(obs.head(100))  # import GX outside the timing
        t = time.perf_counter()
        result = validate_observations(obs)
        val_s = time.perf_counter() - t
        print(f"validate   {rate(len(obs), val_s)}  (no Data Docs; flagged "
              f"{(result.clean['quality_flag'] != 'ok').sum():,}, quarantined {len(result.quarantined):,})")
        with tempfile.TemporaryDirectory() as docs:
            t = time.perf_counter()
            validate_observations(obs, docs_dir=Path(docs))
            print(f"validate+docs {rate(len(obs), time.perf_counter() - t)}")
        t = time.perf_counter()
        fres = validate_forcing(forcing)
        print(f"validate forcing {rate(len(forcing), time.perf_counter() - t)}")

        registry = parse_registry(registry_yaml(args.stations))
        store = Store(fresh("bench_ingest_store"))
        store.init()
        store.upsert_sites(registry.sites_frame())
        t = time.perf_counter()
        w = store.write_observations(result.clean, source="uscrn")
        store_s = time.perf_counter() - t
        print(f"store      {rate(len(result.clean), store_s)}  (inserted {w.inserted:,})")
        t = time.perf_counter()
        w2 = store.write_observations(result.clean, source="uscrn")
        print(f"re-store   {rate(len(result.clean), time.perf_counter() - t)}  (idempotent: inserted {w2.inserted}, "
              f"updated {w2.updated})")
        t = time.perf_counter()
        wf = store.write_forcing(fres.clean, source="uscrn", kind="observed")
        print(f"store forcing (wide→long) {rate(len(fres.clean), time.perf_counter() - t)}  "
              f"({wf.inserted:,} long rows)")
        print(f"backend: {store.backend}; rows in observations: {store.count('observations'):,}")
        store.dispose()

        from smmdn.ingest import ingest_sensors
        from tests.helpers.http_server import Reply, serve

        store = Store(fresh("bench_ingest_e2e"))
        store.init()
        store.upsert_sites(registry.sites_frame())
        with serve() as server, tempfile.TemporaryDirectory() as home:
            for name, text in files.items():
                server.route(f"/u/hourly02/{YEAR}/CRNH0203-{YEAR}-{name}.txt", Reply(text))
            settings = Settings(_env_file=None, home=Path(home), uscrn_url=f"{server.url}/u")
            t = time.perf_counter()
            summaries = ingest_sensors(store, settings, registry, since=pd.Timestamp(f"{YEAR}-01-01T00:00Z"),
                                       until=pd.Timestamp(f"{YEAR}-12-31T23:59Z"))
            e2e = time.perf_counter() - t
        total = sum(s.inserted for s in summaries)
        print(f"end to end ingest_sensors (HTTP, parse, validate+docs, obs+forcing write, watermark) "
              f"{rate(total, e2e)}; failed: {[s.line() for s in summaries if s.status == 'failed']}")
        store.dispose()
    finally:
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    main()
