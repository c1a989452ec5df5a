"""``smmdn models list|show|promote|rollback``: the model registry (champion/challenger history)."""

from __future__ import annotations

import argparse

from smmdn.commands.output import add_json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("models", help="list, promote or roll back model versions", description=__doc__)
    sub = p.add_subparsers(dest="models_command", metavar="ACTION")
    ls = sub.add_parser("list", help="every version with status, held-out CRPS, parent and note")
    add_json(ls)
    ls.set_defaults(handler=list_models)
    sh = sub.add_parser("show", help="one version: status, lineage, preset, config hash, held-out and backtest "
                                     "figures, the training config")
    sh.add_argument("version")
    add_json(sh)
    sh.set_defaults(handler=show_model)
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


SHOW_FIELDS = ("version", "status", "kind", "parent", "artifact_uri", "train_start", "train_end", "created_at",
               "promoted_at", "note")


def show_model(args: argparse.Namespace) -> int:
    """Everything recorded about one version; what the preset's backtest measured, when the config is the preset's."""
    from smmdn.commands.output import print_json
    from smmdn.display import score
    from smmdn.errors import InputError

    versions = _store().model_versions()
    row = versions.loc[versions["version"] == args.version]
    if row.empty:
        raise InputError(f"unknown model version {args.version!r}", where="model_versions", column="version",
                         fix="list versions with `smmdn models list`")
    record = row.iloc[-1].to_dict()
    metrics = record.get("metrics") or {}
    if args.json:
        print_json({**{k: record.get(k) for k in SHOW_FIELDS}, "metrics": metrics})
        return 0
    for key in SHOW_FIELDS:
        print(f"{key:<20} {_plain(record.get(key))}")
    print(f"{'holdout crps':<20} {score(metrics.get('holdout_crps'))} (champion then: "
          f"{score(metrics.get('champion_holdout_crps'))}; window {' .. '.join(metrics.get('holdout') or []) or '-'})")
    print(f"{'preset':<20} {metrics.get('preset') or 'not recorded (trained before presets were recorded)'}")
    if metrics.get("preset"):
        same = "yes" if metrics.get("matches_preset") else "no"
        print(f"{'config hash':<20} {metrics.get('config_hash')} (preset's {metrics.get('preset_hash')}; same: {same})")
        for name, change in (metrics.get("changes_from_preset") or {}).items():
            print(f"  changed {name:<12} preset {change['preset']} -> used {change['used']}")
        backtest = metrics.get("preset_backtest")
        if backtest:
            print("preset backtest (what `smmdn backtest --preset` measured with this config):")
            for key, value in backtest.items():
                print(f"  {key:<28} {_plain(value)}")
        elif metrics.get("matches_preset"):
            print("preset backtest     not measured yet")
        else:
            print("preset backtest     not applicable: the config differs from the preset")
    config = metrics.get("config") or {}
    if config:
        print("config:")
        for key, value in config.items():
            print(f"  {key:<22} {_plain(value)}")
    return 0


def _plain(value: object) -> str:
    from smmdn.commands.output import jsonable

    value = jsonable(value)
    return "-" if value is None else str(value)


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
