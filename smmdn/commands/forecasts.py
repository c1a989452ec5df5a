"""``smmdn forecasts export|show|plot``: forecasts of complete runs as canonical frames, the latest per series,
and pictures of a site (PNG per depth and a self-contained HTML page)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("forecasts", help="export, show and plot forecasts", description=__doc__)
    sub = p.add_subparsers(dest="forecasts_command", metavar="ACTION")
    ex = sub.add_parser("export", help="write forecasts issued since a date (complete runs only)")
    ex.add_argument("--since", default=None, help="issue date (YYYY-MM-DD) or ISO instant (needed unless --latest)")
    ex.add_argument("--until", default=None, help="issued before this (exclusive)")
    ex.add_argument("--format", choices=("csv", "parquet"), default="csv")
    ex.add_argument("--site", action="append", default=None, help="limit to these sites (repeatable)")
    ex.add_argument("--latest", action="store_true", help="only the latest_forecasts view (no --since needed)")
    ex.add_argument("-o", "--output", default="-", help="file (default: stdout for csv)")
    ex.set_defaults(handler=export)
    sh = sub.add_parser("show", help="the latest forecast per series (a table, or --json)")
    sh.add_argument("--site", action="append", default=None, help="limit to these sites (repeatable)")
    sh.add_argument("--lead", type=int, default=None, help="only this lead (days ahead)")
    sh.add_argument("--json", action="store_true", help="JSON records instead of a table")
    sh.set_defaults(handler=show)
    pl = sub.add_parser("plot", help="a site's forecasts against observations: PNG per depth + an HTML page")
    pl.add_argument("--site", required=True, help="site id (smmdn sites list)")
    pl.add_argument("--depth", type=float, default=None, help="one depth in cm (default: every depth)")
    pl.add_argument("--days", type=int, default=30, help="days of observations shown before the issue day")
    pl.add_argument("--out", default=".", help="directory for <site>.html and <site>-<depth>cm.png")
    pl.set_defaults(handler=plot)
    p.set_defaults(handler=lambda args: p.print_help() or 2)


def export(args: argparse.Namespace) -> int:
    import sys

    import pandas as pd

    from smmdn.errors import InputError
    from smmdn.schema import format_times
    from smmdn.store import Store

    store = Store.from_settings()
    _known_sites(store, args.site)
    if args.latest:
        frame = store.latest_forecasts(sites=args.site)
    else:
        if args.since is None:
            raise InputError("export needs --since (or --latest)", where="--since",
                             fix="give an issue date, e.g. --since 2024-05-01, or use --latest")
        since = pd.Timestamp(args.since)
        since = since.tz_localize("UTC") if since.tzinfo is None else since
        frame = store.read_forecasts(sites=args.site, issued_before=args.until)
        frame = frame.loc[frame["issue_time"] >= since]
    keep = [c for c in frame.columns if c not in ("weights", "means", "sigmas")]
    frame = frame[keep].reset_index(drop=True)
    if args.format == "parquet":
        if args.output == "-":
            raise InputError("parquet needs a file", where="--output", fix="give -o forecasts.parquet")
        frame.to_parquet(args.output, index=False)
    else:
        out = frame.copy()
        for col in ("issue_time", "valid_time"):
            if col in out and len(out):
                out[col] = format_times(out[col])
        # six significant digits: the stored float32 values without their binary noise (0.30512872, not
        # 0.30512871551513672); exports stay data — rounding to the probes' resolution is for people
        out.to_csv(sys.stdout if args.output == "-" else args.output, index=False, float_format="%.6g")
    print(f"{len(frame)} forecast rows", file=sys.stderr)
    return 0


def _known_sites(store, sites):  # type: ignore[no-untyped-def]
    """An unknown site is bad input (exit 2), not an empty export."""
    from smmdn.views.site import known_site

    for site in sites or []:
        known_site(store, site)


SHOW_COLUMNS = ["site", "depth_cm", "lead", "valid_time", "issue_time", "model_version", "q05", "q50", "q95"]


def show(args: argparse.Namespace) -> int:
    import json

    from smmdn.config import get_settings
    from smmdn.display import round_vwc, vwc
    from smmdn.store import Store

    resolution = get_settings().vwc_resolution
    store = Store.from_settings()
    _known_sites(store, args.site)
    frame = store.latest_forecasts(sites=args.site)
    if args.lead is not None:
        frame = frame.loc[frame["lead"] == args.lead]
    frame = frame[[c for c in SHOW_COLUMNS if c in frame]].sort_values(["site", "depth_cm", "lead"])
    if args.json:
        out = frame.copy()
        for col in ("valid_time", "issue_time"):
            out[col] = out[col].map(lambda t: t.isoformat())
        for col in ("q05", "q50", "q95"):
            out[col] = out[col].map(lambda v: round_vwc(v, resolution))
        print(json.dumps(out.to_dict("records"), indent=1))
        return 0
    if frame.empty:
        print("no complete forecast yet (run the daily cycle: smmdn run, or smmdn demo)")
        return 0
    print(f"{'site':<24} {'depth':>6} {'lead':>4} {'valid':<10} {'issued':<10} {'q05':>6} {'median':>6} {'q95':>6}")
    for r in frame.itertuples():
        print(f"{r.site:<24} {r.depth_cm:>6g} {r.lead:>4} {r.valid_time.date()!s:<10} {r.issue_time.date()!s:<10} "
              f"{vwc(r.q05, resolution):>6} {vwc(r.q50, resolution):>6} {vwc(r.q95, resolution):>6}")
    return 0


def plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from smmdn.config import get_settings
    from smmdn.store import Store
    from smmdn.views.fan import depth_png
    from smmdn.views.page import site_page
    from smmdn.views.site import site_view

    view = site_view(Store.from_settings(), args.site, days=args.days, depth=args.depth)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for depth in view.depths:
        path = out / f"{view.site}-{depth:g}cm.png"
        path.write_bytes(depth_png(view, depth))
        print(f"wrote {path}")
    page = out / f"{view.site}.html"
    page.write_text(site_page(view, get_settings().vwc_resolution), encoding="utf-8")
    print(f"wrote {page} (self-contained: open it in a browser)")
    return 0
