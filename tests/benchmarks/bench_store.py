"""Benchmark: forecast rows (K = 3) into TimescaleDB: the bulk lanes against a raw binary COPY ceiling.

Run on demand (prints figures; not part of the test suite):

    python tests/benchmarks/bench_store.py [--rows 1000000] [--repeat 2] [--naive] [--url postgresql+psycopg://...]

Without ``--url`` it starts its own throwaway PostgreSQL + TimescaleDB cluster (tests/pg.py).

The ceiling: the very bytes the new-issue lane sends (its numpy binary COPY payload, built before the clock
starts), written with psycopg's ``Copy.write`` straight into ``forecasts`` of a fresh, initialised database
(same hypertable, same chunk interval, same primary key and ``ix_forecasts_series_issue`` index: printed
from ``pg_indexes`` for both databases), then committed. The lanes are timed end to end (checks, numpy
encoding, probe, COPY or merge, commit) into another fresh database of the same schema, so each lane pays
for the same chunk creation and index maintenance the ceiling pays for. Targets (issue 25): new-issue lane
>= 90 % of the ceiling, the merge lane (``INSERT ... ON CONFLICT``, new keys and a re-issue of changed rows)
>= 60 %. With ``--repeat`` each figure is the best of that many alternating runs (shared cores are noisy).
``--naive`` adds the SQLAlchemy executemany path (slow: a few minutes per million rows).
"""

from __future__ import annotations

import argparse
import os
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
from smmdn.store.bulk import _copy, _pg_type, upsert_frame
from smmdn.store.forecasts import FORECAST_COLUMNS
from smmdn.store.frames import forecasts_for_write, rows_of
from smmdn.store.pgcopy import Field, encode

RUN_ID = "bench-run"
KEY = ["site", "depth_cm", "valid_time", "issue_time", "model_version"]

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
    return store.start_forecast_run("2020-06-01", "bench", run_id=RUN_ID)


def indexes(store: Store) -> list[str]:
    """The index definitions of ``forecasts`` (the ceiling and the lanes must write into the same ones)."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT indexdef FROM pg_indexes WHERE tablename = 'forecasts' ORDER BY 1"))
        return [r[0] for r in rows]


def copy_fields(k: int) -> list[Field]:
    """The new-issue lane's COPY fields (same order and types as ``bulk.upsert_frame``)."""
    arrays = {"weights": "weight", "means": "mean", "sigmas": "sigma"}
    scalars = [Field(c, _pg_type(T.forecasts.c[c]), (c,)) for c in COLUMNS if c not in arrays]
    return scalars + [Field(name, "float4[]", tuple(f"{p}_{i}" for i in range(k))) for name, p in arrays.items()]


def ceiling(make_url, frame: pd.DataFrame, payload: list, names: list[str]) -> tuple[float, list[str]]:  # type: ignore[no-untyped-def]
    """Seconds for the raw binary COPY of ``payload`` into ``forecasts`` of a fresh database, plus commit."""
    store = fresh_store(make_url)
    register(store, frame)
    try:
        with store.engine.connect() as conn:
            raw = conn.connection.driver_connection
            conn.commit()
            t0 = time.perf_counter()
            _copy(raw, "forecasts", names, payload)
            raw.commit()
            seconds = time.perf_counter() - t0
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM forecasts")).scalar_one() == len(frame)
        return seconds, indexes(store)
    finally:
        store.dispose()


def new_issue_lane(make_url, frame: pd.DataFrame) -> tuple[float, list[str], Store]:  # type: ignore[no-untyped-def]
    """Seconds for ``Store.write_forecasts`` of a new issue, end to end, into a fresh database."""
    store = fresh_store(make_url)
    run = register(store, frame)
    t0 = time.perf_counter()
    result = store.write_forecasts(frame, run_id=run, model_version="bench")
    seconds = time.perf_counter() - t0
    assert result.inserted == len(frame), result
    return seconds, indexes(store), store


def merge_lane_new(make_url, frame: pd.DataFrame) -> float:  # type: ignore[no-untyped-def]
    """Seconds for the merge lane (COPY to temp, ``INSERT ... ON CONFLICT``) on an empty table."""
    store = fresh_store(make_url)
    run = register(store, frame)
    arrays = {name: [f"{p}_{i}" for i in range(3)] for name, p in (("weights", "weight"), ("means", "mean"),
                                                                   ("sigmas", "sigma"))}
    try:
        t0 = time.perf_counter()
        with store.engine.begin() as conn:
            checked, _ = forecasts_for_write(frame.assign(model_version="bench", run_id=run))
            checked["lead"] = checked["lead"].astype(int)
            merged = upsert_frame(conn, T.forecasts, checked, COLUMNS, KEY, COLUMNS[5:], arrays=arrays)
        seconds = time.perf_counter() - t0
        assert merged.inserted == len(frame), merged
        return seconds
    finally:
        store.dispose()


def naive_executemany(make_url, frame: pd.DataFrame, checked: pd.DataFrame, k: int) -> float:  # type: ignore[no-untyped-def]
    naive = fresh_store(make_url)
    run = register(naive, frame)
    records = forecast_records(checked, k)
    for record in records:
        record["run_id"] = run
    stmt = pg_insert(T.forecasts)
    stmt = stmt.on_conflict_do_update(index_elements=KEY, set_={c: stmt.excluded[c] for c in COLUMNS[5:]})
    t0 = time.perf_counter()
    with naive.engine.begin() as conn:
        conn.execute(stmt, records)
    seconds = time.perf_counter() - t0
    assert naive.count("forecasts") == len(frame)
    naive.dispose()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1, help="alternating runs per figure; the best counts")
    parser.add_argument("--naive", action="store_true", help="also time SQLAlchemy executemany (slow)")
    parser.add_argument("--url", help="an empty PostgreSQL database URL to use instead of a throwaway cluster "
                                      "(then --repeat 1: every stage needs a fresh database)")
    args = parser.parse_args()

    cluster = None
    counter = iter(range(1000))
    if args.url:

        def make_url() -> str:
            with sa.create_engine(args.url).begin() as conn:
                conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
            return args.url
    else:
        from tests.pg import start_cluster

        cluster = start_cluster()

        def make_url() -> str:
            return cluster.create_database(f"bench_{next(counter)}")

    try:
        frame = forecast_rows(args.rows)
        n = len(frame)
        print(f"rows: {n:,} forecast rows, K = 3 (three real[3] arrays each); load average {os.getloadavg()}")

        t0 = time.perf_counter()
        checked, k = forecasts_for_write(frame.assign(model_version="bench", run_id=RUN_ID))
        checked["lead"] = checked["lead"].astype(int)
        t_prep = time.perf_counter() - t0
        fields = copy_fields(k)
        t0 = time.perf_counter()
        stream = encode(checked, fields)
        assert stream is not None
        payload = list(stream)  # the ceiling writes these bytes, built before its clock starts
        t_encode = time.perf_counter() - t0
        names = [f.name for f in fields]
        print(f"checks alone:                  {t_prep:6.2f} s  {n / t_prep:10,.0f} rows/s")
        print(f"numpy COPY encoding alone:     {t_encode:6.2f} s  {n / t_encode:10,.0f} rows/s "
              f"({sum(len(c) for c in payload) / n:.0f} bytes/row)")

        t_ceiling, t_new, t_merge = [], [], []
        lane_store = None
        for i in range(args.repeat):
            seconds, ceiling_indexes = ceiling(make_url, frame, payload, names)
            t_ceiling.append(seconds)
            if lane_store is not None:
                lane_store.dispose()
            seconds, lane_indexes, lane_store = new_issue_lane(make_url, frame)
            t_new.append(seconds)
            if i == 0:
                assert lane_indexes == ceiling_indexes, (lane_indexes, ceiling_indexes)
                print("indexes of forecasts (ceiling and lanes alike):\n  " + "\n  ".join(ceiling_indexes))
            t_merge.append(merge_lane_new(make_url, frame))
        assert lane_store is not None
        ceil = n / min(t_ceiling)

        t0 = time.perf_counter()
        again = lane_store.write_forecasts(frame, run_id=RUN_ID, model_version="bench")
        t_again = time.perf_counter() - t0
        assert again.inserted == 0 and again.updated == 0, again
        changed = frame.assign(q95=frame["q95"] + 0.001)
        t0 = time.perf_counter()
        upd = lane_store.write_forecasts(changed, run_id=RUN_ID, model_version="bench")
        t_upd = time.perf_counter() - t0
        assert upd.updated == n, upd
        lane_store.dispose()

        print(f"\n{'stage':<44} {'s':>7} {'rows/s':>11} {'of ceiling':>10} {'target':>7}")

        def line(name: str, seconds: float, target: float | None = None) -> None:
            share = n / seconds / ceil
            verdict = "" if target is None else f">= {target:.0%} {'met' if share >= target else 'NOT met'}"
            print(f"{name:<44} {seconds:7.2f} {n / seconds:11,.0f} {share:10.0%} {verdict}")

        line("CEILING raw binary COPY (same bytes/table)", min(t_ceiling))
        line("new-issue lane end to end", min(t_new), 0.90)
        line("merge lane end to end (new keys)", min(t_merge), 0.60)
        line("re-issue, changed rows (merge: all updated)", t_upd, 0.60)
        line("re-issue, same rows (merge: nothing changes)", t_again)
        if args.naive:
            line("SQLAlchemy executemany ON CONFLICT", naive_executemany(make_url, frame, checked, k))
        print(f"runs: ceiling {[round(t, 2) for t in t_ceiling]} s, new-issue {[round(t, 2) for t in t_new]} s, "
              f"merge {[round(t, 2) for t in t_merge]} s; load average {os.getloadavg()}")
    finally:
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    main()
