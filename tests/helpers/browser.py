"""Headless Debian Chromium, as a person's browser: load a page, return its DOM after load and the console
errors it raised. Skips with a ``needs:`` reason when Chromium is absent (so CI, which installs it, fails)."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

CONSOLE = re.compile(r":CONSOLE[:(]\d+\)?\] \"(?P<text>.*)\", source: (?P<source>\S*)")


@dataclass
class Rendered:
    dom: str
    console: list[str]  # every console message of the page, uncaught exceptions included


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("needs: chromium (infra/install-browser.sh)")
    return path


def render(page: Path, screenshot: Path | None = None, budget_ms: int = 3000) -> Rendered:
    """Load ``page`` (a file) headless; the DOM is dumped once the page has loaded and its scripts ran."""
    base = [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
            "--enable-logging=stderr", "--v=0", f"--virtual-time-budget={budget_ms}",
            f"--user-data-dir={page.parent / '.chromium-profile'}"]
    result = subprocess.run([*base, "--dump-dom", page.resolve().as_uri()], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    # Chromium logs console messages without their level: a page of ours logs nothing, so any is an error
    console = [m.group("text") for m in CONSOLE.finditer(result.stderr)]
    if screenshot is not None:
        subprocess.run([*base, "--window-size=1200,1600", f"--screenshot={screenshot}", page.resolve().as_uri()],
                       capture_output=True, text=True, timeout=120, check=True)
    return Rendered(result.stdout, console)
