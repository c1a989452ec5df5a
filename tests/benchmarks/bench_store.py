"""Benchmark: 1,000,000 forecast rows (K = 3) into TimescaleDB, bulk idempotent path vs executemany.

Run on demand (prints figures; not part of the test suite):

    python tests/benchmarks/bench_store.py [--rows 1000000] [--url postgresql+psycopg://...]

Without ``--url`` it starts its own throwaway PostgreSQL + TimescaleDB cluster (tests/pg.py).
Stages: frame checks, numpy COPY encoding and COPY into a temp table alone, and end to end: a new issue
(probe, direct COPY, commit), rewriting the same rows (merge: nothing changes) and changed rows (merge:
every row updated), the merge lane alone on an empty table (COPY to temp, ``INSERT … ON CONFLICT``), and
the same rows through SQLAlchemy executemany (``INSERT … ON CONFLICT DO UPDATE``) into a fresh database.
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
from smmdn.store.bulk import _pg_type
from smmdn.store.forecasts import FORECAST_COLUMNS
from smmdn.store.frames import forecasts_for_write, rows_of
from smmdn.store.pgcopy import Field, encode

COLUMNS = list(FORECAST_COLUMNS)


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


def forecast_records(checked: pd.DataFrame, k: int) -> list[dict]:
    """The naive path's input: one dict per row with Python lists for the arrays."""
    listed = checked.assign(
        **{
            name: checked[[f"{p}_{i}" for i in range(k)]].to_numpy(np.float32).tolist()
            for name, p in (("weights", "weight"), ("means", "mean"), ("sigmas", "sigma"))
        }
    )
    return [dict(zip(COLUMNS, row, strict=True)) for row in rows_of(listed, COLUMNS)]


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

        # Stage 1: checks (part of the end-to-end figure below).
        t0 = time.perf_counter()
        checked, k = forecasts_for_write(frame.assign(model_version="bench", run_id="r"))
        t_prep = time.perf_counter() - t0
        print(f"prepare (checks):              {t_prep:6.2f} s  {n / t_prep:10,.0f} rows/s")

        # Stage 2: numpy encoding + COPY alone into a temp table.
        arrays = {
            name: [f"{p}_{i}" for i in range(k)]
            for name, p in (("weights", "weight"), ("means", "mean"), ("sigmas", "sigma"))
        }
        fields = [
            Field(c, "float4[]", tuple(arrays[c])) if c in arrays else Field(c, _pg_type(T.forecasts.c[c]), (c,))
            for c in COLUMNS
        ]
        store = fresh_store(make_url)
        with store.engine.begin() as conn:
            conn.execute(sa.text("CREATE TEMP TABLE copy_only (LIKE forecasts INCLUDING DEFAULTS) ON COMMIT DROP"))
            raw = conn.connection.driver_connection
            t0 = time.perf_counter()
            payload = encode(checked, fields)
            t_encode = time.perf_counter() - t0
            with (
                raw.cursor() as cur,
                cur.copy(f"COPY copy_only ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)") as cp,
            ):
                for chunk in payload:
                    cp.write(chunk)
            t_copy = time.perf_counter() - t0
        print(f"numpy COPY encoding alone:     {t_encode:6.2f} s  {n / t_encode:10,.0f} rows/s")
        print(f"COPY stage alone (+encoding):  {t_copy:6.2f} s  {n / t_copy:10,.0f} rows/s")

        # Stage 3: end to end, bulk idempotent path (checks, encoding, probe, COPY, commit): a new issue.
        run = register(store, frame)
        t0 = time.perf_counter()
        result = store.write_forecasts(frame, run_id=run, model_version="bench")
        t_bulk = time.perf_counter() - t0
        assert result.inserted == n, result
        print(f"bulk write end to end (new):   {t_bulk:6.2f} s  {n / t_bulk:10,.0f} rows/s  ({result})")

        t0 = time.perf_counter()
        again = store.write_forecasts(frame, run_id=run, model_version="bench")
        t_again = time.perf_counter() - t0
        assert again.inserted == 0 and again.updated == 0, again
        print(f"bulk rewrite (merge, same):    {t_again:6.2f} s  {n / t_again:10,.0f} rows/s")

        changed = frame.assign(q95=frame["q95"] + 0.001)
        t0 = time.perf_counter()
        upd = store.write_forecasts(changed, run_id=run, model_version="bench")
        t_upd = time.perf_counter() - t0
        assert upd.updated == n, upd
        print(f"bulk rewrite (merge, changed): {t_upd:6.2f} s  {n / t_upd:10,.0f} rows/s")
        store.dispose()

        # Stage 3b: the merge lane on an empty table (COPY to temp, INSERT … ON CONFLICT), for comparison.
        merge_store = fresh_store(make_url)
        run = register(merge_store, frame)
        from smmdn.store.bulk import upsert_frame

        key = ["site", "depth_cm", "valid_time", "issue_time", "model_version"]
        t0 = time.perf_counter()
        with merge_store.engine.begin() as conn:
            checked_m, _ = forecasts_for_write(frame.assign(model_version="bench", run_id=run))
            merged = upsert_frame(conn, T.forecasts, checked_m, COLUMNS, key, COLUMNS[5:], arrays=arrays)
        t_merge = time.perf_counter() - t0
        assert merged.inserted == n, merged
        print(f"merge lane end to end (new):   {t_merge:6.2f} s  {n / t_merge:10,.0f} rows/s")
        merge_store.dispose()

        records = forecast_records(checked, k)

        # Stage 4: naive path, SQLAlchemy executemany with ON CONFLICT, fresh database.
        naive = fresh_store(make_url)
        run = register(naive, frame)
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
        print(f"ratio bulk / executemany:      {t_naive / t_bulk:6.2f}x (merge lane {t_naive / t_merge:.2f}x)")
    finally:
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    main()
