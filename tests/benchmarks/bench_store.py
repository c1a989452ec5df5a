"""Benchmark: 1,000,000 forecast rows (K = 3) into TimescaleDB, bulk idempotent path vs executemany.

Run on demand (prints figures; not part of the test suite):

    python tests/benchmarks/bench_store.py [--rows 1000000] [--url postgresql+psycopg://...]

Without ``--url`` it starts its own throwaway PostgreSQL + TimescaleDB cluster (tests/pg.py).
Stages: frame checks + conversion, COPY into a temp table alone, and end to end (COPY, upsert, commit);
then the same rows through SQLAlchemy executemany (``INSERT … ON CONFLICT DO UPDATE``) into a fresh
database, and finally a second bulk write of the same rows (the idempotent no-op path).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from smmdn.store import Store
from smmdn.store import tables as T
from smmdn.store.frames import forecasts_for_write, rows_of

COLUMNS = [
    "valid_time",
    "site",
    "depth_cm",
    "issue_time",
    "model_version",
    "lead",
    "run_id",
    "weights",
    "means",
    "sigmas",
    "mean",
    "sd",
    "q05",
    "q25",
    "q50",
    "q75",
    "q95",
]


def forecast_rows(n: int, k: int = 3, leads: int = 16, depths: int = 5) -> pd.DataFrame:
    """n forecast rows: sites × depths × issue days × leads, with valid mixtures."""
    rng = np.random.default_rng(42)
    per_site = depths * leads
    n_issue = 20
    n_sites = int(np.ceil(n / (per_site * n_issue)))
    site = np.repeat([f"S{i:04d}" for i in range(n_sites)], per_site * n_issue)[:n]
    idx = np.arange(n)
    depth = np.array([5.0, 10.0, 20.0, 50.0, 100.0])[(idx // leads) % depths]
    lead = idx % leads + 1
    issue = pd.Timestamp("2020-06-01", tz="UTC") + pd.to_timedelta((idx // per_site) % n_issue, unit="D")
    w = rng.dirichlet(np.ones(k), n)
    mu = 0.25 + rng.normal(0, 0.03, (n, k))
    sd = rng.uniform(0.003, 0.02, (n, k))
    frame = pd.DataFrame(
        {
            "site": site,
            "depth_cm": depth,
            "issue_time": issue,
            "valid_time": issue + pd.to_timedelta(lead, unit="D"),
            "lead": lead,
        }
    )
    for i in range(k):
        frame[f"weight_{i}"], frame[f"mean_{i}"], frame[f"sigma_{i}"] = w[:, i], mu[:, i], sd[:, i]
    mean = (w * mu).sum(1)
    frame["mean"], frame["sd"] = mean, 0.02
    for q, z in (("q05", -1.645), ("q25", -0.674), ("q50", 0.0), ("q75", 0.674), ("q95", 1.645)):
        frame[q] = mean + z * 0.02
    return frame


def fresh_store(make_url) -> Store:  # type: ignore[no-untyped-def]
    store = Store(make_url())
    store.init()
    return store


def register(store: Store, frame: pd.DataFrame) -> str:
    store.upsert_sites(pd.DataFrame({"site": pd.unique(frame["site"])}))
    return store.start_forecast_run("2020-06-01", "bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--url", help="an empty PostgreSQL database URL to use instead of a throwaway cluster")
    args = parser.parse_args()

    cluster = None
    counter = iter(range(100))
    if args.url:

        def make_url() -> str:
            return args.url
    else:
        from tests.pg import start_cluster

        cluster = start_cluster()

        def make_url() -> str:
            return cluster.create_database(f"bench_{next(counter)}")

    try:
        frame = forecast_rows(args.rows)
        n = len(frame)
        print(f"rows: {n:,} forecast rows, K = 3 (three real[3] arrays each)")

        # Stage 1: checks + conversion to Python rows (part of the end-to-end figure below).
        t0 = time.perf_counter()
        checked, _ = forecasts_for_write(frame.assign(model_version="bench"))
        checked["run_id"] = "r"
        rows = rows_of(checked, COLUMNS)
        t_prep = time.perf_counter() - t0
        print(f"prepare (checks + conversion): {t_prep:6.2f} s  {n / t_prep:10,.0f} rows/s")

        # Stage 2: COPY alone into a temp table.
        store = fresh_store(make_url)
        with store.engine.begin() as conn:
            conn.execute(sa.text("CREATE TEMP TABLE copy_only (LIKE forecasts INCLUDING DEFAULTS) ON COMMIT DROP"))
            from smmdn.store.bulk import _pg_type

            types = [_pg_type(T.forecasts.c[c]) for c in COLUMNS]
            raw = conn.connection.driver_connection
            t0 = time.perf_counter()
            with (
                raw.cursor() as cur,
                cur.copy(f"COPY copy_only ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)") as cp,
            ):
                cp.set_types(types)
                for row in rows:
                    cp.write_row(row)
            t_copy = time.perf_counter() - t0
        print(f"COPY stage alone:              {t_copy:6.2f} s  {n / t_copy:10,.0f} rows/s")

        # Stage 3: end to end, bulk idempotent path (checks, conversion, COPY, upsert, commit).
        run = register(store, frame)
        t0 = time.perf_counter()
        result = store.write_forecasts(frame, run_id=run, model_version="bench")
        t_bulk = time.perf_counter() - t0
        assert result.inserted == n, result
        print(f"bulk upsert end to end:        {t_bulk:6.2f} s  {n / t_bulk:10,.0f} rows/s  ({result})")

        t0 = time.perf_counter()
        again = store.write_forecasts(frame, run_id=run, model_version="bench")
        t_again = time.perf_counter() - t0
        assert again.inserted == 0 and again.updated == 0, again
        print(f"bulk rewrite (all unchanged):  {t_again:6.2f} s  {n / t_again:10,.0f} rows/s")
        store.dispose()

        # Stage 4: naive path, SQLAlchemy executemany with ON CONFLICT, fresh database.
        naive = fresh_store(make_url)
        run = register(naive, frame)
        records = [dict(zip(COLUMNS, row, strict=True)) for row in rows]
        for record in records:
            record["run_id"] = run
        stmt = pg_insert(T.forecasts)
        stmt = stmt.on_conflict_do_update(
            index_elements=["site", "depth_cm", "valid_time", "issue_time", "model_version"],
            set_={c: stmt.excluded[c] for c in COLUMNS[5:]},
        )
        t0 = time.perf_counter()
        with naive.engine.begin() as conn:
            conn.execute(stmt, records)
        t_naive = time.perf_counter() - t0
        assert naive.count("forecasts") == n
        print(f"SQLAlchemy executemany:        {t_naive:6.2f} s  {n / t_naive:10,.0f} rows/s")
        naive.dispose()
        print(f"ratio bulk / executemany:      {t_naive / t_bulk:6.2f}x")
    finally:
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    main()
