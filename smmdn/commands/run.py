"""``smmdn run [--date D]`` (the real daily cycle) and ``smmdn replay --start --end`` (the hindcast).

Both run the Prefect flows in-process (Prefect's ephemeral mode unless PREFECT_API_URL points at a
server) for the sites in ``SMMDN_REGISTRY_FILE``. Without network, ``run`` fails fast, naming the URL
and the setting that points it at a mirror.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    r = subparsers.add_parser("run", help="run the daily cycle for the configured registry", description=__doc__)
    r.add_argument("--date", default=None, help="issue day YYYY-MM-DD (default: yesterday in SMMDN_TIMEZONE)")
    r.add_argument("--history-days", type=int, default=365, help="history back-filled on cold start")
    r.add_argument("--skip-check", action="store_true", help="do not probe the sources first")
    r.set_defaults(handler=run)
    p = subparsers.add_parser("replay", help="replay the daily cycle over past days (hindcast)", description=__doc__)
    p.add_argument("--start", required=True)
    p.add_argument("--end", required=True)
    p.add_argument("--history-days", type=int, default=365)
    p.add_argument("--no-ingest", action="store_true", help="use only what is stored")
    p.set_defaults(handler=replay)


def preflight(settings: object) -> None:
    """Reach each configured upstream once (short timeout) so an offline host fails in seconds."""
    import requests

    from smmdn.errors import SourceUnreachable

    checks = [("open_meteo_url", settings.open_meteo_url)]  # type: ignore[attr-defined]
    reg = getattr(settings, "registry_file", None)
    if reg:
        from smmdn.registry import load_registry

        sites = load_registry(reg).sites
        if any(s.sources.uscrn for s in sites):
            checks.append(("uscrn_url", settings.uscrn_url))  # type: ignore[attr-defined]
    for setting, url in checks:
        try:
            requests.head(url, timeout=(3, 5), allow_redirects=True)
        except requests.RequestException as exc:
            raise SourceUnreachable(f"cannot reach {url} ({type(exc).__name__}); check the network or point "
                              f"SMMDN_{setting.upper()} at a mirror") from exc


def _init_store() -> None:
    from smmdn.config import get_settings
    from smmdn.store import Store

    settings = get_settings()
    if settings.database_url is None:  # the embedded default: create the schema on first use
        Store(settings.resolved_database_url).init()


def run(args: argparse.Namespace) -> int:
    from smmdn.config import get_settings
    from smmdn.ingest import registry_from_settings

    settings = get_settings()
    registry_from_settings(settings)
    if not args.skip_check:
        preflight(settings)
    _init_store()
    from flows.daily import daily

    summary = daily(day=args.date, history_days=args.history_days)
    from flows.report import cycle_markdown

    print(cycle_markdown(summary))
    return 0


def replay(args: argparse.Namespace) -> int:
    from smmdn.config import get_settings
    from smmdn.ingest import registry_from_settings

    registry_from_settings(get_settings())
    _init_store()
    from flows.backfill import backfill

    result = backfill(start=args.start, end=args.end, history_days=args.history_days,
                      ingest_first=not args.no_ingest)
    for day in result["days"]:
        print(f"{day['issue']}: training {day['training']}, forecast {day['forecast']}")
    return 0
