"""``smmdn models list|promote|rollback``: the model registry (champion/challenger history)."""

from __future__ import annotations

import argparse

from smmdn.commands.output import add_json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("models", help="list, promote or roll back model versions", description=__doc__)
    sub = p.add_subparsers(dest="models_command", metavar="ACTION")
    ls = sub.add_parser("list", help="every version with status, held-out CRPS, parent and note")
    add_json(ls)
    ls.set_defaults(handler=list_models)
    pr = sub.add_parser("promote", help="make VERSION the champion")
    pr.add_argument("version")
    pr.add_argument("--note", default=None)
    pr.add_argument("--force", action="store_true", help="promote a rejected version without asking")
    pr.set_defaults(handler=promote)
    rb = sub.add_parser("rollback", help="back along the lineage: the champion's parent, else the champion "
                                         "before it (the one left is marked rejected)")
    rb.add_argument("version", nargs="?", default=None)
    rb.set_defaults(handler=rollback)
    p.set_defaults(handler=lambda args: p.print_help() or 2)


def _store():  # type: ignore[no-untyped-def]
    from smmdn.store import Store

    return Store.from_settings()


def list_models(args: argparse.Namespace) -> int:
    from smmdn.commands.output import print_json, print_table
    from smmdn.display import score

    frame = _store().model_versions()
    records = [{**r, "holdout_crps": (r.get("metrics") or {}).get("holdout_crps")} for r in frame.to_dict("records")]
    if args.json:
        print_json([{k: r.get(k) for k in ("version", "status", "kind", "parent", "holdout_crps", "created_at",
                                            "promoted_at", "note")} for r in records])
        return 0
    if not records:
        print("no model versions yet (run `smmdn run` or `smmdn demo`)")
        return 0
    print_table(records, [("version", lambda r: r["version"]), ("status", lambda r: r["status"]),
                          ("kind", lambda r: r["kind"]), ("crps", lambda r: score(r["holdout_crps"])),
                          ("parent", lambda r: r.get("parent")), ("note", lambda r: r.get("note"))])
    return 0


def _confirm(question: str) -> bool:
    import sys

    if not sys.stdin.isatty():
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def promote(args: argparse.Namespace) -> int:
    from smmdn.errors import InputError

    store = _store()
    versions = store.model_versions()
    row = versions.loc[versions["version"] == args.version]
    if not row.empty and row.iloc[0]["status"] == "rejected" and not args.force:
        why = row.iloc[0]["note"] or "no reason recorded"
        if not _confirm(f"{args.version} was rejected ({why}). Promote it anyway?"):
            raise InputError(f"{args.version} was rejected ({why}); not promoted", where="models promote",
                             fix=f"confirm at the prompt, or pass --force: smmdn models promote {args.version} --force")
    previous = store.promote(args.version, note=args.note or "promoted by operator")
    print(f"champion: {args.version} (was {previous})")
    return 0


def rollback_target(versions, champion: str | None) -> str | None:  # type: ignore[no-untyped-def]
    """The champion's parent when it is usable (a fine-tune steps back to what it was tuned from), else the
    latest retired champion promoted before the current one; never a rejected version."""
    usable = versions.loc[versions["status"] == "retired"]
    current = versions.loc[versions["version"] == champion]
    if not current.empty:
        parent = current.iloc[0].get("parent")
        if parent and parent in set(usable["version"]):
            return str(parent)
        before = current.iloc[0]["promoted_at"]
        usable = usable.loc[usable["promoted_at"].notna() & (usable["promoted_at"] < before)]
    else:
        usable = usable.loc[usable["promoted_at"].notna()]
    return None if usable.empty else str(usable.sort_values("promoted_at").iloc[-1]["version"])


def rollback(args: argparse.Namespace) -> int:
    from smmdn.errors import InputError

    store = _store()
    champion = store.champion()
    current = champion["version"] if champion else None
    target = args.version or rollback_target(store.model_versions(), current)
    if target is None:
        raise InputError("no earlier champion to roll back to", where="model_versions",
                         fix="name a version: smmdn models rollback VERSION (see smmdn models list)")
    previous = store.roll_back(target, note=f"rolled back by operator to {target}")
    print(f"champion: {target} (rolled back from {previous}, now marked rejected)")
    return 0
