"""``smmdn sites load FILE | import ismn ARCHIVE | list | show SITE``: the site registry and the database."""

from __future__ import annotations

import argparse

from smmdn.commands.output import add_json


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("sites", help="site registry: load the YAML file, list and show sites")
    parser.add_argument("--url", help="database URL (default: SMMDN_DATABASE_URL or the embedded SQLite file)")
    actions = parser.add_subparsers(dest="sites_command", metavar="ACTION", required=True)
    load = actions.add_parser("load", help="validate the registry YAML and upsert its sites and sensors")
    load.add_argument("file", nargs="?", help="registry YAML (default: SMMDN_REGISTRY_FILE)")
    load.add_argument("--dry-run", action="store_true", help="only check the file")
    load.set_defaults(handler=_load)
    imp = actions.add_parser("import", help="write registry entries for the stations of a source archive")
    imp_sub = imp.add_subparsers(dest="import_source", metavar="SOURCE", required=True)
    ismn = imp_sub.add_parser("ismn", help="an ISMN archive (zip or folder): one site per station")
    ismn.add_argument("archive", help="ISMN download: the zip or its extracted folder")
    ismn.add_argument("--network", action="append", help="only this network (repeatable)")
    ismn.add_argument("--station", action="append", help="only this station (repeatable)")
    ismn.add_argument("--registry", help="registry YAML to add the sites to (default: SMMDN_REGISTRY_FILE; "
                                         "created when missing)")
    ismn.add_argument("--dry-run", action="store_true", help="print the entries, write nothing")
    ismn.set_defaults(handler=_import_ismn)
    lst = actions.add_parser("list", help="sites in the database")
    add_json(lst)
    lst.set_defaults(handler=_list)
    show = actions.add_parser("show", help="one site with its sensors and sources (JSON)")
    show.add_argument("site")
    add_json(show)
    show.set_defaults(handler=_show)


def _store(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from smmdn.config import get_settings
    from smmdn.store import Store

    store = Store(args.url or get_settings().resolved_database_url)
    store.init()
    return store


def _load(args: argparse.Namespace) -> int:
    from smmdn.config import get_settings
    from smmdn.errors import InputError
    from smmdn.registry import load_registry

    path = args.file or get_settings().registry_file
    if not path:
        raise InputError("no registry file given", where="sites load", fix="pass FILE or set SMMDN_REGISTRY_FILE")
    registry = load_registry(path)
    sites, sensors = registry.sites_frame(), registry.sensors_frame()
    print(f"registry {path}: version {registry.version}, {len(sites)} sites, {len(sensors)} sensors")
    if args.dry_run:
        return 0
    from smmdn.ingest import load_sites

    s, n = load_sites(_store(args), registry)
    print(f"sites: {s.inserted} new, {s.updated} updated; "
          f"sensors: {n.inserted if n else 0} new, {n.updated if n else 0} updated")
    return 0


def _import_ismn(args: argparse.Namespace) -> int:
    """Entries for every selected station, merged into the registry file atomically (checked first)."""
    import os
    import tempfile
    from pathlib import Path

    import yaml

    from smmdn.config import get_settings
    from smmdn.errors import InputError
    from smmdn.registry import merge_sites
    from smmdn.sources.ismn import read_ismn
    from smmdn.sources.ismn_registry import registry_entries

    settings = get_settings()
    entries = registry_entries(read_ismn(args.archive, networks=args.network, stations=args.station,
                                         work_dir=settings.home / "tmp"))
    if args.dry_run:
        print(yaml.safe_dump({"sites": entries}, sort_keys=False, allow_unicode=True), end="")
        return 0
    path = args.registry or settings.registry_file
    if not path:
        raise InputError("no registry file given", where="sites import ismn",
                         fix="pass --registry FILE or set SMMDN_REGISTRY_FILE")
    target = Path(path)
    try:
        existing = target.read_text(encoding="utf-8") if target.exists() else None
    except OSError as exc:
        raise InputError(f"cannot read registry: {exc}", where=str(target), fix="check the path") from exc
    text = merge_sites(existing, entries, where=str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:  # the registry is replaced whole or not at all
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    ids = ", ".join(str(e["id"]) for e in entries[:10]) + (" …" if len(entries) > 10 else "")
    print(f"registry {target}: {len(entries)} ISMN site(s) written ({ids}); load them with: smmdn sites load {target}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from smmdn.commands.output import print_json, print_table
    from smmdn.display import coordinates

    records = _store(args).read_sites().to_dict("records")
    if args.json:
        print_json(records)
        return 0
    if not records:
        print("no sites (load a registry: smmdn sites load FILE)")
        return 0
    print_table(records, [("site", lambda r: r["site"]), ("name", lambda r: r.get("name")),
                          ("where", lambda r: coordinates(r["latitude"], r["longitude"])),
                          ("source", lambda r: r.get("source")), ("tags", lambda r: r.get("tags"))])
    return 0


def _show(args: argparse.Namespace) -> int:
    from smmdn.errors import InputError

    store = _store(args)
    sites = store.read_sites()
    match = sites[sites["site"] == args.site]
    if match.empty:
        raise InputError(f"unknown site {args.site!r}", where="sites", fix="see smmdn sites list")
    row = match.iloc[0].to_dict()
    sensors = store.read_sensors()
    row["sensors"] = sensors[sensors["site"] == args.site][["depth_cm", "sensor", "active_from", "active_to"]] \
        .to_dict("records")
    from smmdn.commands.output import print_json

    print_json(row)  # one object, with or without --json: a site is nested data
    return 0
