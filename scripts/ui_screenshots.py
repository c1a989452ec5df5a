"""Refresh docs/screenshots/: the Prefect UI pages an operator uses, shot in headless Chromium from a demo home.

    .venv/bin/python scripts/ui_screenshots.py [--home var/demo] [--out docs/screenshots]

Without a finished demo in --home it runs a short one first (1 site, 5 cycles). It starts ``smmdn ui`` on a
free loopback port, finds the newest daily run through the API, shoots each page and stops the server.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(base: str, path: str, body: dict | None = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{base}/api{path}", data=data, method="POST" if body is not None else "GET",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _wait(base: str, proc: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"smmdn ui exited with {proc.returncode}")
        try:
            _api(base, "/health")
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("the Prefect server did not answer in time")


def shoot(chromium: str, url: str, out: Path, profile: Path) -> None:
    subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--hide-scrollbars", "--window-size=1440,1000", "--virtual-time-budget=15000",
                    f"--user-data-dir={profile}", f"--screenshot={out}", url],
                   check=True, capture_output=True, timeout=180)
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB) from {url}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", default="var/demo")
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = parser.parse_args()
    home, out = Path(args.home).resolve(), Path(args.out)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("needs chromium: bash infra/install-browser.sh")
    smmdn = [sys.executable, "-m", "smmdn.cli"]
    if not (home / "summary.json").exists():
        subprocess.run([*smmdn, "demo", "--home", str(home), "--sites", "1", "--days", "5", "--history", "30",
                        "--quiet"], check=True)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"SMMDN_HOME": str(home), "DO_NOT_TRACK": "1"})
    proc = subprocess.Popen([*smmdn, "ui", "--port", str(port)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    profile = out / ".chromium-profile"
    try:
        _wait(base, proc)
        out.mkdir(parents=True, exist_ok=True)
        runs = _api(base, "/flow_runs/filter", {"flow_runs": {"name": {"like_": "daily-"}}, "sort": "START_TIME_DESC",
                                                "limit": 1})
        pages = {"flow-runs": "/runs", "artifacts": "/artifacts", "network-overview": "/artifacts/key/network-overview"}
        if runs:
            pages["daily-run"] = f"/runs/flow-run/{runs[0]['id']}"
        for name, path in pages.items():
            shoot(chromium, base + path, out / f"prefect-{name}.png", profile)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(profile, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
