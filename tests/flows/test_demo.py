"""``smmdn demo`` end to end at reduced size: TOA5 landing + loopback Open-Meteo → real daily cycles."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.prefect, pytest.mark.slow]


def test_demo_reduced(prefect_harness, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from smmdn.cli import main
    from smmdn.config import get_settings

    saved = dict(os.environ)
    try:
        rc = main(["demo", "--home", str(tmp_path / "demo"), "--sites", "1", "--days", "2", "--history", "30"])
    finally:
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()
    assert rc == 0
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["forecast_runs"] == 2 and summary["forecast_rows"] == 2 * 3 * 7
    assert summary["model_versions"] >= 2 and summary["champion"]
    assert summary["days"][0]["training"].startswith("full") and summary["days"][1]["training"].startswith("fine")
    assert Path(summary["database"].removeprefix("sqlite:///")).exists()
    assert list((tmp_path / "demo" / "landing" / "processed").glob("*.dat"))

    # what a person reads: a counter per day, no log records on the terminal (they are in demo.log), and a
    # closing summary that explains its numbers and gives commands that work as printed
    out = capsys.readouterr().out
    assert "day 1/2 " in out and "elapsed, about" in out and "day 2/2 " in out
    assert " INFO " not in out and "Sent JSON POST" not in out
    log = (tmp_path / "demo" / "demo.log").read_text(encoding="utf-8")
    assert "smmdn.alerts.step" in log and "smmdn.cycle.forecast" in log
    assert "received by the local alert receiver" in out and "per route:" in out
    home = summary["home"]
    assert f"SMMDN_HOME={home} " in out and " alerts list" in out and " ui " in out
    assert summary["messages"]["by_route"] or summary["alerts_delivered"] == 0
    assert sum(summary["messages"]["by_event"].values()) == summary["alerts_delivered"]
