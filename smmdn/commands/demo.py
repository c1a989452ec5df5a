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
    p.add_argument("-q", "--quiet", action="store_true", help="no line per day, only the closing summary")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from smmdn.demo.run import DemoOptions, run_demo

    verbose = bool(getattr(args, "verbose", False))
    result = run_demo(DemoOptions(Path(args.home), sites=args.sites, days=args.days, history=args.history,
                                  seed=args.seed, fresh=not args.keep, log_file=not verbose),
                      echo=(lambda line: None) if args.quiet else print)
    print(closing_summary(result, args.home))
    return 0


def _smmdn() -> str:
    """How to call smmdn from here: plain ``smmdn`` when it is on PATH, else this environment's script."""
    import shutil
    import sys
    from pathlib import Path

    if shutil.which("smmdn"):
        return "smmdn"
    script = Path(sys.executable).parent / "smmdn"
    return str(script) if script.exists() else f"{sys.executable} -m smmdn.cli"


def closing_summary(result: dict, home_arg: str) -> str:
    """What the demo did, every number explained, and the exact commands to look at it."""
    box = result.get("outbox") or {}
    messages = result.get("messages") or {}
    by_event = messages.get("by_event") or {}
    by_route = messages.get("by_route") or {}
    alerts = result.get("alerts") or []
    kinds: dict[str, int] = {}
    for a in alerts:
        kinds[a["kind"]] = kinds.get(a["kind"], 0) + 1
    env = f"SMMDN_HOME={result['home']}"
    cmd = _smmdn()
    site = next((a["site"] for a in alerts if a["site"] != "*"), None)
    lines = [
        "",
        f"demo finished in {result['seconds']} s — {len(result['days'])} daily cycles; everything is under "
        f"{result['home']}",
        f"  forecasts      {result['forecast_runs']} complete runs, {result['forecast_rows']} rows "
        "(site x depth x lead, each a Gaussian mixture)",
        f"  models         {result['model_versions']} versions trained: {result['promoted']} promoted, "
        f"{result['rejected']} rejected by the held-out CRPS judge; champion {result['champion']}",
        f"  alerts         {len(alerts)} raised (" + (", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
                                                   or "none") + ")",
        f"  messages       {result['alerts_delivered']} received by the local alert receiver: "
        + (", ".join(f"{n} {e}" for e, n in by_event.items()) or "none"),
        "                 per route: " + (", ".join(f"{r} {n}" for r, n in by_route.items()) or "none")
        + "; outbox: " + (", ".join(f"{k} {v}" for k, v in box.items()) or "empty")
        + " (suppressed = muted by a silence or maintenance window, never sent)",
        f"  verification   {result['verification_rows']} forecast/observation pairs scored",
        f"  logs           {result.get('log_file', '-')} (run with -v to see them on the terminal)",
        "",
        "Look at it (copy these lines):",
        f"  {env} {cmd} alerts list",
        f"  {env} {cmd} forecasts show" + (f" --site {site}" if site else ""),
    ]
    if site:
        lines.append(f"  {env} {cmd} forecasts plot --site {site} --out {result['home']}/plots")
    lines += [
        f"  {env} {cmd} models list",
        f"  {env} {cmd} ui        # the Prefect UI: runs, logs, artifacts of every cycle",
        f"  sqlite3 {result['database'].removeprefix('sqlite:///')} 'SELECT * FROM latest_forecasts LIMIT 5'",
        f"  Data Docs: {result['data_docs']}/index.html",
    ]
    if home_arg == "var/demo":
        lines.append(f"Run from this directory, `{cmd} alerts list` finds the demo by itself while no other "
                     "home is set up.")
    return "\n".join(lines)
