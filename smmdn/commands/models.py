"""``smmdn models list|promote|rollback``: the model registry (champion/challenger history)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("models", help="list, promote or roll back model versions", description=__doc__)
    sub = p.add_subparsers(dest="models_command", metavar="ACTION")
    ls = sub.add_parser("list", help="every version with status, held-out CRPS and note")
    ls.set_defaults(handler=list_models)
    pr = sub.add_parser("promote", help="make VERSION the champion")
    pr.add_argument("version")
    pr.add_argument("--note", default=None)
    pr.set_defaults(handler=promote)
    rb = sub.add_parser("rollback", help="make an earlier version champion again (default: the previous champion)")
    rb.add_argument("version", nargs="?", default=None)
    rb.set_defaults(handler=rollback)
    p.set_defaults(handler=lambda args: p.print_help() or 2)


def _store():  # type: ignore[no-untyped-def]
    from smmdn.store import Store

    return Store.from_settings()


def list_models(args: argparse.Namespace) -> int:
    frame = _store().model_versions()
    if frame.empty:
        print("no model versions yet (run `smmdn run` or `smmdn demo`)")
        return 0
    for row in frame.itertuples(index=False):
        crps = (row.metrics or {}).get("holdout_crps")
        crps_s = f"{crps:.5f}" if isinstance(crps, int | float) else "-"
        print(f"{row.version:<28} {row.status:<10} {row.kind:<9} crps {crps_s:<8} {row.note or ''}")
    return 0


def promote(args: argparse.Namespace) -> int:
    previous = _store().promote(args.version, note=args.note or "promoted by operator")
    print(f"champion: {args.version} (was {previous})")
    return 0


def rollback(args: argparse.Namespace) -> int:
    """Without VERSION: the most recently retired champion, i.e. the one before the current champion."""
    from smmdn.errors import InputError

    store = _store()
    target = args.version
    if target is None:
        frame = store.model_versions()
        retired = frame.loc[(frame["status"] == "retired") & frame["promoted_at"].notna()]
        if retired.empty:
            raise InputError("no earlier champion to roll back to", where="model_versions",
                             fix="name a version: smmdn models rollback VERSION (see smmdn models list)")
        target = retired.sort_values("promoted_at").iloc[-1]["version"]
    previous = store.promote(target, note=f"rollback from {store.champion()['version'] if store.champion() else None}")
    print(f"champion: {target} (rolled back from {previous})")
    return 0
