"""``smmdn quarantine list|release``: inspect rejected rows; release re-validates and writes them."""

from __future__ import annotations

import argparse

from smmdn.commands.output import add_json


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("quarantine", help="rows rejected by validation: list and release")
    parser.add_argument("--url", help="database URL (default: SMMDN_DATABASE_URL or the embedded SQLite file)")
    actions = parser.add_subparsers(dest="quarantine_command", metavar="ACTION", required=True)
    lst = actions.add_parser("list", help="open (or released) quarantined rows")
    lst.add_argument("--table", choices=["observations", "forcing"])
    lst.add_argument("--released", action="store_true", help="show released rows instead")
    lst.add_argument("--limit", type=int, default=50)
    add_json(lst)
    lst.set_defaults(handler=_list)
    rel = actions.add_parser("release", help="re-validate rows by id and write those that now pass")
    rel.add_argument("ids", nargs="+", type=int)
    rel.add_argument("--registry", help="site registry YAML (per-site limits; default: SMMDN_REGISTRY_FILE)")
    rel.add_argument("--vwc-max", type=float, help="override the vwc limit for this release (m3/m3)")
    rel.add_argument("--by", default="operator", help="who releases (recorded)")
    rel.set_defaults(handler=_release)


def _store(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from smmdn.config import get_settings
    from smmdn.store import Store

    return Store(args.url or get_settings().resolved_database_url)


def _list(args: argparse.Namespace) -> int:
    from smmdn.commands.output import print_json, print_table

    rows = _store(args).list_quarantine(table=args.table, released=args.released)
    records = rows.head(args.limit).to_dict("records")
    if args.json:
        print_json(records)
        return 0
    print(f"{len(rows)} {'released' if args.released else 'open'} row(s)")
    if records:
        print_table(records, [(c, (lambda k: lambda r: r.get(k))(c))
                              for c in ("id", "table_name", "source", "site", "time", "reason")])
    return 0


def _release(args: argparse.Namespace) -> int:
    from smmdn.config import get_settings
    from smmdn.quality.release import release_rows
    from smmdn.quality.rules import ObservationRules
    from smmdn.registry import load_registry

    settings = get_settings()
    rules = ObservationRules()
    path = args.registry or settings.registry_file
    if path:
        reg = load_registry(path)
        rules = ObservationRules(vwc_max=reg.defaults.vwc_max, vwc_max_by_site=reg.vwc_max())
    if args.vwc_max is not None:
        rules = ObservationRules(vwc_max=args.vwc_max, vwc_max_by_site={})
    outcome = release_rows(_store(args), args.ids, rules=rules, released_by=args.by)
    print(outcome.line())
    return 0 if not outcome.still_rejected else 1
