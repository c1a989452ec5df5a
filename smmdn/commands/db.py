"""``smmdn db init|check|retention``: create/upgrade the schema and report on the database."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("db", help="database schema and status")
    parser.add_argument("--url", help="database URL (default: SMMDN_DATABASE_URL or the embedded SQLite file)")
    db_sub = parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    init = db_sub.add_parser("init", help="create or upgrade the schema (safe to run twice)")
    init.set_defaults(handler=_init)
    check = db_sub.add_parser("check", help="backend, versions, licence, hypertables, row counts")
    check.add_argument("--json", action="store_true", help="print JSON instead of text")
    check.set_defaults(handler=_check)
    retention = db_sub.add_parser("retention", help="drop raw observations/forcing older than N days")
    retention.add_argument("--days", type=int, help="default: SMMDN_RETENTION_DAYS")
    retention.set_defaults(handler=_retention)


def _store(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from smmdn.config import get_settings
    from smmdn.store import Store

    return Store(args.url or get_settings().resolved_database_url)


def _init(args: argparse.Namespace) -> int:
    from smmdn.config import get_settings

    store = _store(args)
    report = store.init(retention_days=get_settings().retention_days)
    before = report["revision_before"] or "empty"
    verb = "already at" if report["revision_before"] == report["revision"] else f"upgraded {before} →"
    print(f"{store.backend}: schema {verb} revision {report['revision']}")
    for note in report.get("policies", {}).get("notes", []):
        print(f"note: {note}")
    policies = report.get("policies", {})
    if policies.get("compression"):
        print(f"compression policies: {', '.join(policies['compression'])}")
    if policies.get("retention"):
        print(f"retention policies: {', '.join(policies['retention'])}")
    return 0


def _check(args: argparse.Namespace) -> int:
    info = _store(args).check()
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        print(f"backend:      {info['backend']} {info['server_version']}")
        print(f"database:     {info['url']}")
        print(f"schema:       revision {info['revision']} (head {info['head']})")
        if info["backend"] == "postgresql":
            version = info["timescaledb_version"] or "not installed"
            print(f"timescaledb:  {version} (licence: {info['timescaledb_licence'] or '-'})")
            print(f"hypertables:  {', '.join(info['hypertables']) or 'none'}")
        print("rows:         " + ", ".join(f"{k}={v}" for k, v in info["row_counts"].items()))
    if info["revision"] != info["head"]:
        print("schema is not at head: run `smmdn db init`")
        return 1
    return 0


def _retention(args: argparse.Namespace) -> int:
    from smmdn.config import get_settings
    from smmdn.errors import InputError

    days = args.days or get_settings().retention_days
    if not days:
        raise InputError("no retention period", fix="pass --days N or set SMMDN_RETENTION_DAYS")
    removed = _store(args).apply_retention(days)
    print("removed: " + ", ".join(f"{k}={v}" for k, v in removed.items()))
    return 0
