"""The ``smmdn`` command line.

Each sub-command lives in ``smmdn/commands/<name>.py`` exposing ``register(subparsers)``; those modules
import only ``argparse`` at module level so ``smmdn --help`` stays fast, and heavy libraries (torch,
Great Expectations, Prefect) are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from smmdn.commands import exits

DEBUG_FLAG = "--debug"

COMMAND_MODULES = (
    "db",
    "data",
    "backtest",
    "tune",
    "validate",
    "sites",
    "ingest",
    "quarantine",
    "models",
    "forecasts",
    "alerts",
    "run",
    "demo",
    "ui",
)
# commands that look at a home: after `smmdn demo` they find the demo's when no home of the user's exists
LOOKING = ("alerts", "sites", "models", "forecasts", "quarantine", "ui")


def _version() -> str:
    from smmdn import __version__

    return __version__


def find_demo_home(command: str | None) -> str | None:
    """The demo's home when the user has none yet: no ``SMMDN_HOME`` or database URL configured, no database
    at the default home, and ``smmdn demo``'s default home (``var/demo``) beside it. Returns the note to print."""
    import os
    from pathlib import Path

    from smmdn.config import get_settings

    if command not in LOOKING:
        return None
    settings = get_settings()
    if settings.database_url or "home" in settings.model_fields_set:
        return None
    default_db = Path(settings.resolved_database_url.removeprefix("sqlite:///"))
    demo = settings.home / "demo"
    if default_db.exists() or not (demo / "summary.json").exists():
        return None
    os.environ["SMMDN_HOME"] = str(demo)
    get_settings.cache_clear()
    return (f"note: no database at {default_db}; using the demo's home {demo} "
            f"(set SMMDN_HOME to choose another)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smmdn", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(DEBUG_FLAG, action="store_true",
                        help="print the traceback of an error (accepted anywhere on the command line)")
    parser.add_argument("--version", action="version", version=f"smmdn {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"smmdn.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"smmdn.commands.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every error ends as one line and an exit code of ``smmdn.commands.exits``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv  # the same switch for every command, wherever it is written
    argv = [a for a in argv if a != DEBUG_FLAG]
    parser = build_parser()
    args = parser.parse_args(argv)  # usage errors: argparse's one line and SystemExit(2), the table's code
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        for noisy in ("alembic", "great_expectations", "httpx", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        note = find_demo_home(args.command)
        if note:
            print(note, file=sys.stderr)
        result = args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        return exits.report(exc, debug=debug)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
