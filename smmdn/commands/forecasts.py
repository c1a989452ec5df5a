"""``smmdn forecasts export --since … --format csv|parquet``: forecasts of complete runs as canonical frames."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("forecasts", help="export forecasts", description=__doc__)
    sub = p.add_subparsers(dest="forecasts_command", metavar="ACTION")
    ex = sub.add_parser("export", help="write forecasts issued since a date (complete runs only)")
    ex.add_argument("--since", required=True, help="issue date (YYYY-MM-DD) or ISO instant")
    ex.add_argument("--until", default=None, help="issued before this (exclusive)")
    ex.add_argument("--format", choices=("csv", "parquet"), default="csv")
    ex.add_argument("--site", action="append", default=None, help="limit to these sites (repeatable)")
    ex.add_argument("--latest", action="store_true", help="only the latest_forecasts view (ignores --since)")
    ex.add_argument("-o", "--output", default="-", help="file (default: stdout for csv)")
    ex.set_defaults(handler=export)
    p.set_defaults(handler=lambda args: p.print_help() or 2)


def export(args: argparse.Namespace) -> int:
    import sys

    import pandas as pd

    from smmdn.errors import InputError
    from smmdn.schema import format_times
    from smmdn.store import Store

    store = Store.from_settings()
    if args.latest:
        frame = store.latest_forecasts(sites=args.site)
    else:
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
        out.to_csv(sys.stdout if args.output == "-" else args.output, index=False)
    print(f"{len(frame)} forecast rows", file=sys.stderr)
    return 0
