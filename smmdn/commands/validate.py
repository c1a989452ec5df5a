"""``smmdn validate``: database-free validation of observation (and forcing) CSV files.

Stable contract: ``--observations OBS.csv [--forcing FORCING.csv] --report DIR`` writes
``DIR/summary.json`` (per expectation: success, unexpected_count), ``DIR/quarantine.csv`` (rejected
rows with reasons) and Data Docs under ``DIR/data_docs/``. Exit 0: every row passed; 1: some rows were
quarantined; 2: the batch itself is unusable (missing columns, empty, unparseable).
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "validate", help="validate observation/forcing CSV files without a database",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--observations", required=True, metavar="OBS.csv",
                        help="canonical observations: time, site, depth_cm, sensor, vwc")
    parser.add_argument("--forcing", metavar="FORCING.csv", help="canonical forcing: time, site, variables…")
    parser.add_argument("--report", required=True, metavar="DIR", help="where summary.json, quarantine.csv "
                        "and Data Docs go")
    parser.add_argument("--registry", metavar="FILE", help="site registry YAML (per-site vwc limits)")
    parser.add_argument("--vwc-max", type=float, help="upper vwc limit in m3/m3 (default 0.8)")
    parser.add_argument("--forecast-forcing", action="store_true",
                        help="forcing is a weather forecast (future times allowed)")
    parser.set_defaults(handler=_validate)


def _read_csv(path: str, where: str):  # type: ignore[no-untyped-def]
    import pandas as pd

    from smmdn.errors import InputError

    try:
        # Strings as received: quarantine.csv must show rows exactly as they were.
        return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError as exc:
        raise InputError(f"file not found: {path}", where=where, fix="check the path") from exc
    except pd.errors.EmptyDataError as exc:
        raise InputError("empty file (no header, no rows)", where=where, fix="send a CSV with a header") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise InputError(f"unreadable CSV: {exc}", where=where, fix="send UTF-8 CSV with one header line") from exc


def _validate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from smmdn.errors import InputError
    from smmdn.quality.report import EXIT_BATCH, write_report
    from smmdn.quality.rules import ForcingRules, ObservationRules
    from smmdn.quality.validate import validate_forcing, validate_observations

    report = Path(args.report)
    inputs = {"observations": args.observations, **({"forcing": args.forcing} if args.forcing else {})}
    docs = report / "data_docs"
    try:
        rules = ObservationRules()
        if args.registry:
            from smmdn.registry import load_registry

            reg = load_registry(args.registry)
            rules = ObservationRules(vwc_max=reg.defaults.vwc_max, vwc_max_by_site=reg.vwc_max())
        if args.vwc_max is not None:
            rules = ObservationRules(vwc_max=args.vwc_max, vwc_max_by_site=rules.vwc_max_by_site)
        results = [validate_observations(_read_csv(args.observations, args.observations), rules,
                                         docs_dir=docs, where=args.observations)]
        if args.forcing:
            results.append(validate_forcing(_read_csv(args.forcing, args.forcing),
                                            ForcingRules(allow_future=args.forecast_forcing),
                                            docs_dir=docs, where=args.forcing))
    except InputError as exc:
        write_report(report, [], error=str(exc), inputs=inputs)
        print(f"error: batch unusable: {exc}")
        print(f"report: {report / 'summary.json'}")
        return EXIT_BATCH
    summary = write_report(report, results, inputs=inputs)
    for r in results:
        s = r.summary
        print(f"{r.table}: {s['rows']} rows, {s['clean']} clean ({s.get('flagged', 0)} flagged), "
              f"{s['quarantined']} quarantined {s['quarantine_reasons'] or ''}".rstrip())
    print(f"report: {report / 'summary.json'}; data docs: {summary['data_docs']}")
    return int(summary["exit_code"])
