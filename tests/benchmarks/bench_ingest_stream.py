"""Streaming ingest of large TOA5 logger files: peak RSS and rows/s, against the raw COPY rate.

    python tests/benchmarks/bench_ingest_stream.py                    # 200 MB and 1 GB, PostgreSQL
    python tests/benchmarks/bench_ingest_stream.py --sizes-mb 20      # quick check
    python tests/benchmarks/bench_ingest_stream.py --backend sqlite   # the SQLite store instead

Each file is written to a temporary directory (never the repo): a one-minute CR1000 table of 20
columns (TIMESTAMP, RECORD, battery, panel temperature, water content, soil temperature and EC at 4
depths, 4 met variables), of which the 4 water-content columns are mapped, so each record gives 4
observation rows (tests/helpers/toa5_stream.py). Without ``--url`` a throwaway PostgreSQL +
TimescaleDB cluster is started (tests/pg.py), one fresh database per file.

Each ingest runs ``smmdn.ingest.ingest_landing`` in a child process; its peak RSS is the child's
``ru_maxrss`` (``os.wait4``), compared with the target of 1 GiB. The ceiling for rows/s is measured in
the same run: a binary COPY of the same kind of rows straight into an unindexed temporary table
(``store.bulk.copy_frame``), with no parsing, validation or merge.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

RSS_TARGET_MIB = 1024.0
NOW = "2100-01-01T00:00Z"  # after the last record of any size (1 GB of one-minute records ends in 2036)


def _vm_kib(field: str) -> int:
    """``VmRSS`` / ``VmHWM`` of this process in KiB (Linux), 0 elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler:
    """The child's resident memory every ``every`` seconds, from a thread (a few bytes per sample).

    Why: a peak alone cannot tell a flat run from one creeping towards the target; the samples show
    the shape (printed as RSS at each tenth of the ingest's duration).
    """

    def __init__(self, every: float = 5.0) -> None:
        import threading

        self.every, self.samples = every, []  # (seconds since start, RSS MiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start = time.perf_counter()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append((time.perf_counter() - self._start, _vm_kib("VmRSS") / 1024))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def rss_profile(samples: list[list[float]]) -> str:
    """RSS at each tenth of the run (the sample nearest to it), e.g. ``10%: 740 | 20%: 752 …``."""
    if not samples:
        return "no samples"
    end = samples[-1][0]
    picks = []
    for tenth in range(1, 11):
        at = end * tenth / 10
        picks.append(f"{tenth * 10}%: {min(samples, key=lambda s: abs(s[0] - at))[1]:,.0f}")
    return " | ".join(picks) + " MiB"


def child(url: str, path: str, home: str) -> None:
    """One ingest in this (child) process; prints one JSON line."""
    import pandas as pd

    from smmdn.config import Settings
    from smmdn.ingest import ingest_landing
    from smmdn.quality.validate import validate_observations
    from smmdn.registry import parse_registry
    from smmdn.store import Store
    from tests.helpers import toa5_stream

    store = Store(url)
    store.init()
    registry = parse_registry(toa5_stream.registry_yaml())
    store.upsert_sites(registry.sites_frame())
    settings = Settings(_env_file=None, home=Path(home), landing_dir=Path(home) / "landing")
    landing = settings.path("landing")
    landing.mkdir(parents=True, exist_ok=True)
    target = landing / Path(path).name
    os.replace(path, target)
    old = time.time() - 3600
    os.utime(target, (old, old))
    validate_observations(pd.DataFrame({"time": [pd.Timestamp("2023-01-01T00:00Z")], "site": ["big"],
                                        "depth_cm": [5.0], "sensor": ["a"], "vwc": [0.2]}))  # GX imported
    start = time.perf_counter()
    with RssSampler() as sampler:
        [summary] = ingest_landing(store, settings, registry, now=pd.Timestamp(NOW))
    seconds = time.perf_counter() - start
    stored = store.count("observations")
    print(json.dumps({"status": summary.status, "line": summary.line(), "notes": summary.notes,
                      "seconds": seconds, "stored": stored, "quarantined": store.count("quarantine"),
                      "rss": sampler.samples}))


def copy_ceiling(url: str, rows: int) -> float:
    """Rows/s of a plain binary COPY of canonical observation rows into a temporary table."""
    import numpy as np
    import pandas as pd
    import sqlalchemy as sa

    from smmdn.store import Store
    from smmdn.store import tables as T
    from smmdn.store.bulk import copy_frame

    store = Store(url)
    store.init()
    now = pd.Timestamp.now(tz="UTC")
    frame = pd.DataFrame({"time": pd.date_range("2023-01-01", periods=rows, freq="min", tz="UTC"), "site": "big",
                          "depth_cm": 5.0, "sensor": "a", "vwc": np.full(rows, 0.2), "quality_flag": "ok",
                          "source": "toa5", "ingested_at": now, "updated_at": now})
    columns = list(frame.columns)
    table = sa.Table("ceiling", sa.MetaData(), *(sa.Column(c, T.observations.c[c].type) for c in columns),
                     prefixes=["TEMPORARY"])
    with store.engine.begin() as conn:
        table.create(conn)
        start = time.perf_counter()
        copy_frame(conn, table, frame, columns, T.observations)
        seconds = time.perf_counter() - start
    store.dispose()
    return rows / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", default="200,1000", help="file sizes in MB (10^6 bytes), comma-separated")
    parser.add_argument("--backend", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--url", default=os.environ.get("SMMDN_BENCH_DATABASE_URL"),
                        help="an existing PostgreSQL database (emptied first by nobody: use a fresh one)")
    parser.add_argument("--child", nargs=3, metavar=("URL", "PATH", "HOME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    from tests.helpers import toa5_stream

    sizes = [int(s) for s in args.sizes_mb.split(",")]
    cluster = None
    if args.backend == "postgres" and not args.url:
        from tests.pg import start_cluster

        cluster = start_cluster()
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="smmdn-bench-stream-") as tmp:
            for size in sizes:
                if args.backend == "sqlite":
                    url = f"sqlite:///{tmp}/db-{size}.sqlite"
                elif cluster is not None:
                    url = cluster.create_database(f"stream_{size}")
                else:
                    url = args.url
                path = Path(tmp) / f"logger_{size}MB.dat"
                t = time.perf_counter()
                records = toa5_stream.write_file(path, size * 1_000_000, wide=True)
                actual = path.stat().st_size
                print(f"wrote {path.name}: {actual / 1e6:.1f} MB, {records:,} records "
                      f"({4 * records:,} observation rows) in {time.perf_counter() - t:.0f} s", flush=True)
                ceiling = copy_ceiling(url, min(2_000_000, 4 * records))
                proc = subprocess.Popen([sys.executable, __file__, "--child", url, str(path), f"{tmp}/home-{size}"],
                                        stdout=subprocess.PIPE, text=True, cwd=ROOT)
                assert proc.stdout is not None
                output = proc.stdout.read()
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
                if proc.returncode != 0:
                    raise SystemExit(f"child failed ({proc.returncode}): {output}")
                got = json.loads(output.strip().splitlines()[-1])
                rss_mib = usage.ru_maxrss / 1024  # kilobytes on Linux
                rate = 4 * records / got["seconds"]
                if got["stored"] != 4 * records:  # said, not hidden: the figures below still print
                    print(f"  WARNING: {got['stored']:,} of {4 * records:,} rows stored, "
                          f"{got['quarantined']:,} quarantined", flush=True)
                results.append((size, actual, records, got, rss_mib, rate, ceiling))
                print(f"  {got['line']}", flush=True)
                print(f"  {got['notes']}", flush=True)
                print(f"  RSS during the ingest (at each tenth of it): {rss_profile(got['rss'])}", flush=True)
                print(f"  ingest {got['seconds']:.0f} s, {rate:,.0f} rows/s (ceiling: raw COPY {ceiling:,.0f} rows/s, "
                      f"{rate / ceiling:.0%} of it); peak RSS {rss_mib:,.0f} MiB (target ≤ {RSS_TARGET_MIB:,.0f} MiB: "
                      f"{'met' if rss_mib <= RSS_TARGET_MIB else 'NOT met'})", flush=True)
    finally:
        if cluster is not None:
            cluster.stop()
    print(f"\nbackend {args.backend}; figures are the child's summary and its ru_maxrss")
    print("| file | records | observation rows | ingest s | rows/s | raw COPY rows/s | peak RSS MiB | ≤ 1 GiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for _size, actual, records, got, rss, rate, ceiling in results:
        print(f"| {actual / 1e6:.0f} MB | {records:,} | {4 * records:,} | {got['seconds']:.0f} | {rate:,.0f} | "
              f"{ceiling:,.0f} | {rss:,.0f} | {'yes' if rss <= RSS_TARGET_MIB else 'no'} |")


if __name__ == "__main__":
    main()
