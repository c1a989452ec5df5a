"""``smmdn ingest sensors|forcing [--since --until --site]`` and ``smmdn ingest ismn ARCHIVE``: fetch, validate and
store new data."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("ingest", help="fetch, validate and store sensor data or weather forcing")
    parser.add_argument("--url", help="database URL (default: SMMDN_DATABASE_URL or the embedded SQLite file)")
    parser.add_argument("--registry", help="site registry YAML (default: SMMDN_REGISTRY_FILE)")
    what = parser.add_subparsers(dest="ingest_command", metavar="WHAT", required=True)
    for name, helptext in (("sensors", "USCRN, COSMOS-UK, SensorThings, TOA5 landing files"),
                           ("forcing", "Open-Meteo forecast/archive")):
        p = what.add_parser(name, help=helptext)
        p.add_argument("--since", help="start after this time (overrides the watermark; backfill)")
        p.add_argument("--until", help="up to this time (default: now)")
        p.add_argument("--site", action="append", help="only this site (repeatable)")
        if name == "sensors":
            p.add_argument("--lookback-hours", type=float, default=0.0,
                           help="also re-read this many hours before each watermark (picks up revisions)")
        if name == "forcing":
            p.add_argument("--api", choices=["forecast", "archive", "historical-forecast"], default="forecast")
            p.add_argument("--resolution", choices=["daily", "hourly"], default="daily")
            p.add_argument("--forecast-days", type=int)
            p.add_argument("--past-days", type=int)
        p.set_defaults(handler=_ingest, what=name)
    p = what.add_parser("ismn", help="an ISMN archive (zip or folder) for the registry's sites with sources.ismn")
    p.add_argument("archive", help="ISMN download: the zip or its extracted folder")
    p.add_argument("--network", action="append", help="only this network (repeatable)")
    p.add_argument("--station", action="append", help="only this station (repeatable)")
    p.add_argument("--since", help="re-read readings after this time (overrides the watermark)")
    p.set_defaults(handler=_ingest, what="ismn", site=None, until=None)


def _ts(value: str | None):  # type: ignore[no-untyped-def]
    import pandas as pd

    from smmdn.errors import InputError

    if value is None:
        return None
    try:
        ts = pd.Timestamp(value)
    except ValueError as exc:
        raise InputError(f"bad time {value!r}", where="ingest", fix="use ISO 8601, e.g. 2024-05-01T00:00Z") from exc
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _ingest(args: argparse.Namespace) -> int:
    from smmdn.config import get_settings
    from smmdn.errors import InputError
    from smmdn.ingest import ingest_forcing, ingest_sensors
    from smmdn.registry import load_registry
    from smmdn.store import Store

    settings = get_settings()
    path = args.registry or settings.registry_file
    if not path:
        raise InputError("no registry", where="ingest", fix="pass --registry or set SMMDN_REGISTRY_FILE")
    registry = load_registry(path)
    store = Store(args.url or settings.resolved_database_url)
    store.init()
    since, until = _ts(args.since), _ts(args.until)

    def progress(line: str) -> None:
        print(line, flush=True)

    if args.what == "sensors":
        import pandas as pd

        lookback = pd.Timedelta(hours=args.lookback_hours) if args.lookback_hours else None
        summaries = ingest_sensors(store, settings, registry, since=since, until=until, sites=args.site,
                                   progress=progress, lookback=lookback)
    elif args.what == "ismn":
        from smmdn.ingest import ingest_ismn

        summaries = ingest_ismn(store, settings, registry, args.archive, networks=args.network,
                                stations=args.station, since=since, progress=progress)
    else:
        summaries = ingest_forcing(store, settings, registry, since=since, until=until, sites=args.site,
                                   api=args.api, resolution=args.resolution, forecast_days=args.forecast_days,
                                   past_days=args.past_days, progress=progress)
    failed = [s for s in summaries if s.status in ("failed", "rejected")]
    print(f"{len(summaries)} batch(es), {len(failed)} failed")
    return 1 if failed else 0
