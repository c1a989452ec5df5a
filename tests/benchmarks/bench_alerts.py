"""Benchmark: detection and verification for 1000 series × 1 day and × 30 days of new observations; delivery
of 100 alerts (PNG attached) to a local json:// receiver.

Run on demand (prints figures; not part of the test suite):

    python tests/benchmarks/bench_alerts.py [--sites 250] [--days 30] [--sqlite] [--url postgresql+psycopg://...]

Without ``--url`` it starts its own throwaway PostgreSQL + TimescaleDB cluster (tests/pg.py); ``--sqlite``
uses the embedded backend instead. The network: ``--sites`` sites × 2 depths × 2 replicate sensors
(1000 series at 250 sites), hourly readings, a forecast run per day (7 leads, K = 2), and 5 % of the
series drifting from day 20 on (so the lifecycle, the plots and the outbox do real work).

Stages timed (wall clock, this machine):
- 30 days: a first detection that evaluates all 30 days (lookback 30), then the first verification
  (every forecast of the 30 days scored);
- 1 day: the next day's readings arrive, detection and verification of that day (detection reads the
  detector state the 30-day run built and only the new day's raw readings; verification also rescores its
  look-back window, ``SMMDN_VERIFICATION_LOOKBACK_DAYS``), each against the 3 s target of issue 25;
- delivery of 100 queued alerts with a plot each to a receiver on 127.0.0.1.
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

from smmdn.alerts import deliver as notify
from smmdn.alerts import step as anomalies
from smmdn.config import Settings
from smmdn.demo.receiver import AlertReceiver
from smmdn.store import Store
from smmdn.store import alerts as db
from smmdn.verify import verification
from tests.helpers import alert_world as W

TARGET_1DAY = 3.0  # s, detection and verification each, 1,000 series x 1 day (issue 25)


def timed(label: str, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    seconds = time.perf_counter() - t0
    print(f"  {label:<58} {seconds:8.2f} s")
    return out, seconds


def build(store: Store, sites: int, days: int) -> W.World:
    names = [f"B{i:04d}" for i in range(sites)]
    world, _ = timed("build sites, sensors, truth", W.build, store, sites=names, depths=(10.0, 30.0),
                     sensors=("a", "b"), days=days + 1, horizon=7, tags={s: [f"team:t{i % 5}"] for i, s in
                                                                         enumerate(names)})
    timed(f"write {days + 1} forecast runs ({sites * 2 * 7} rows each)", W.write_forecasts, world, range(days + 1))
    drifting = set(names[:: 20])  # 5 % of the series (sensor b at 10 cm of every 20th site)

    def bend(site, depth, sensor, day, values):  # type: ignore[no-untyped-def]
        if site in drifting and depth == 10.0 and sensor == "b" and day >= world.day(20):
            return values + 0.06 + 0.01 * (day - world.day(20)).days
        return values

    world.bend = bend  # type: ignore[attr-defined]
    frame, _ = timed(f"simulate {days} days of hourly readings", W.readings, world, range(days), bend=bend)
    timed(f"write {len(frame):,} readings", store.write_observations, frame, "bench")
    return world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=250, help="sites (x 2 depths x 2 sensors = series)")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--alerts", type=int, default=100, help="alerts to deliver in the delivery stage")
    parser.add_argument("--url", help="database URL (default: a throwaway TimescaleDB cluster)")
    parser.add_argument("--sqlite", action="store_true", help="use an embedded SQLite file instead")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    cluster = None
    if args.sqlite:
        url = f"sqlite:///{tmp / 'bench.db'}"
    elif args.url:
        url = args.url
    else:
        from tests.pg import start_cluster

        cluster = start_cluster()
        url = cluster.create_database("bench_alerts")
    rx = AlertReceiver(tmp / "received.jsonl").start()
    try:
        store = Store(url)
        store.init()
        series = args.sites * 4
        print(f"backend {store.backend}; {series} series ({args.sites} sites x 2 depths x 2 sensors), "
              f"{args.days} days, hourly readings")
        world = build(store, args.sites, args.days)
        routes = W.routes_file(tmp / "routes.yaml", rx, {f"t{i}": [f"team:t{i}"] for i in range(5)} | {"ops": []},
                               operators="ops")
        cfg = Settings(_env_file=None, home=tmp, alert_routes_file=routes, alert_lookback_days=args.days)
        last = args.days - 1
        print(f"\n{series} series x {args.days} days of new observations")
        out, t_det30 = timed("detect", anomalies.detect, store, world.now_after(last), cfg)
        print(f"    {out.observations:,} daily values, {out.outside} outside, {out.opened} alerts opened, "
              f"{out.resolved} resolved, {out.messages_queued} messages queued")
        ver, t_ver30 = timed("verify", verification.verify, store, world.now_after(last), cfg)
        print(f"    {ver.scored:,} forecast/observation pairs scored; drift {ver.drift}")
        print(f"\n{series} series x 1 day of new observations")
        frame = W.readings(world, [args.days], bend=world.bend, seed=1)  # type: ignore[attr-defined]
        store.write_observations(frame, source="bench")
        out1, t_det1 = timed("detect", anomalies.detect, store, world.now_after(args.days), cfg)
        print(f"    {out1.observations:,} daily values, {out1.outside} outside, {out1.opened} opened, "
              f"{out1.resolved} resolved, {out1.messages_queued} messages queued")
        ver1, t_ver1 = timed("verify", verification.verify, store, world.now_after(args.days), cfg)
        print(f"    {ver1.scored:,} pairs scored (incl. the {cfg.verification_lookback_days}-day rescoring window)")

        print(f"\ndelivery of {args.alerts} alerts (PNG attached) to json://127.0.0.1")
        now = world.now_after(args.days) + pd.Timedelta(hours=1)
        timed("drain what detection queued", notify.deliver_outbox, store, cfg, now)
        before = len(rx.messages())
        png = open_png(store, cfg)
        rows = [dict(idempotency_key=f"bench:{i}", event="opened", team="t0", target="t0#0",
                     title=f"[smmdn] NEW: bench alert {i}", body="bench " * 60, attachment=png,
                     attachment_name="alert.png", status="pending", attempts=0, next_attempt_at=now, created_at=now)
                for i in range(args.alerts)]
        db.enqueue(store, rows)
        res, t_del = timed(f"deliver {args.alerts}", notify.deliver_outbox, store, cfg, now)
        got = len(rx.messages()) - before
        print(f"    sent {res.sent}, received {got}, {len(png) / 1024:.0f} KiB PNG each")
        print("\nsummary (wall clock; load average at the end: "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs)")
        print(f"  detect  1 day : {t_det1:6.2f} s   30 days: {t_det30:6.2f} s   (30 days: a cold start, builds the "
              "detector state)")
        print(f"  verify  1 day : {t_ver1:6.2f} s   30 days: {t_ver30:6.2f} s")
        for label, seconds in (("detection", t_det1), ("verification", t_ver1)):
            verdict = "met" if seconds <= TARGET_1DAY else "NOT met"
            print(f"  target: {label} {series} series x 1 day <= {TARGET_1DAY:.0f} s (issue 25): "
                  f"{seconds:.2f} s, {verdict}")
        print(f"  deliver {args.alerts} alerts: {t_del:6.2f} s ({args.alerts / t_del:.1f} messages/s)")
        store.dispose()
    finally:
        rx.stop()
        if cluster is not None:
            cluster.stop()


def open_png(store: Store, cfg: Settings) -> bytes:
    """A real alert PNG (from the outbox if detection attached one, else a fresh plot)."""
    box = db.read_outbox(store, with_attachment=True)
    with_png = box.loc[box["attachment"].notna()] if not box.empty else box
    if len(with_png):
        return bytes(with_png.iloc[0]["attachment"])
    from smmdn.alerts.plots import alert_png

    t = pd.date_range("2024-05-01", periods=21, tz="UTC")
    fan = pd.DataFrame({"time": t, "q05": 0.18, "q25": 0.2, "q50": 0.21, "q75": 0.22, "q95": 0.24})
    obs = pd.DataFrame({"time": t, "sensor": "a", "vwc": 0.21 + np.random.default_rng(0).normal(0, 0.01, 21)})
    return alert_png(obs, fan, "bench")


if __name__ == "__main__":
    main()
