"""``smmdn ui``: the Prefect UI for the configured home (runs, logs, artifacts), on 127.0.0.1.

Prefect keeps its run history under ``PREFECT_HOME``; the demo uses ``<SMMDN_HOME>/prefect``, and so does
this command unless ``PREFECT_HOME`` is set. With ``PREFECT_API_URL`` pointing at a running server there is
nothing to start: the command says where that server's UI is.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("ui", help="start the Prefect UI for this home on 127.0.0.1 (Ctrl-C stops it)",
                              description=__doc__)
    p.add_argument("--port", type=int, default=4200, help="port on 127.0.0.1 (default 4200)")
    p.set_defaults(handler=run)


def server_command(port: int) -> list[str]:
    """The Prefect server of this environment (``prefect`` may not be on PATH outside the venv)."""
    import sys

    return [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]


def run(args: argparse.Namespace) -> int:
    import os
    import subprocess
    from pathlib import Path

    from smmdn.config import get_settings

    api = os.environ.get("PREFECT_API_URL")
    if api:
        print(f"PREFECT_API_URL is set: open that server's UI ({api.removesuffix('/api')}); nothing to start")
        return 0
    settings = get_settings()
    prefect_home = os.environ.get("PREFECT_HOME") or str((settings.home / "prefect").resolve())
    Path(prefect_home).mkdir(parents=True, exist_ok=True, mode=0o700)
    env = {**os.environ, "PREFECT_HOME": prefect_home, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "PREFECT_UI_API_URL": f"http://127.0.0.1:{args.port}/api"}
    print(f"Prefect UI for {settings.home.resolve()} (PREFECT_HOME={prefect_home}): "
          f"http://127.0.0.1:{args.port}  — Ctrl-C stops it", flush=True)
    proc = subprocess.Popen(server_command(args.port), env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(timeout=30)
        return 0
