"""``smmdn demo``: the whole system offline on a simulated network (start here)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="run the daily cycle offline on a simulated sensor network",
                              description=__doc__)
    p.add_argument("--home", default="var/demo", help="where everything goes (default: var/demo; wiped first)")
    p.add_argument("--sites", type=int, default=3, help="simulated sites (3 depths x 3 sensors each)")
    p.add_argument("--days", type=int, default=60, help="daily cycles to run after cold start")
    p.add_argument("--history", type=int, default=60, help="days of logger history before the first cycle")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--keep", action="store_true", help="do not wipe --home first")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from smmdn.demo.run import DemoOptions, run_demo

    result = run_demo(DemoOptions(Path(args.home), sites=args.sites, days=args.days, history=args.history,
                                  seed=args.seed, fresh=not args.keep))
    print()
    print(f"demo finished in {result['seconds']} s")
    for key in ("database", "landing", "models", "data_docs", "alerts_file", "prefect_home"):
        print(f"  {key:<14} {result[key]}")
    print(f"  model versions {result['model_versions']} (rejected {result['rejected']}), champion {result['champion']}")
    print(f"  forecast runs  {result['forecast_runs']} complete, {result['forecast_rows']} rows")
    print(f"  alerts         {result['alerts_delivered']} delivered to the local sink")
    print(f"  Prefect UI     PREFECT_HOME={result['prefect_home']} prefect server start  (artifacts, run history)")
    print("  SQL            SELECT * FROM latest_forecasts;   (sqlite3 on the database file)")
    return 0
