"""``smmdn demo`` at its default size reproduces its golden record exactly (refactors change no behaviour).

The golden file was written from main before the alert role moved into ``smmdn/alerts/`` (issue 14); a
change that is *meant* to alter what the demo decides rewrites it with ``tests/helpers/demo_golden.py`` and
says so in its commit. About four minutes on two cores: the default demo, 3 sites x 60 daily cycles.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "demo-seed7.json"


def test_default_demo_matches_its_golden_record(prefect_harness, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from smmdn.cli import main
    from smmdn.config import get_settings
    from tests.helpers.demo_golden import golden_of

    saved = dict(os.environ)
    try:
        assert main(["demo", "--home", str(tmp_path / "demo"), "--quiet"]) == 0
        got = golden_of(tmp_path / "demo")
    finally:
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()
    out = capsys.readouterr().out
    assert "day 1/60" not in out and "demo finished" in out  # --quiet: only the closing summary
    want = json.loads(GOLDEN.read_text(encoding="utf-8"))
    got = json.loads(json.dumps(got, sort_keys=True))  # the same JSON round trip the golden file went through
    assert got["counts"] == want["counts"]
    for mine, theirs in zip(got["days"], want["days"], strict=True):
        assert mine == theirs, mine["issue"]
    assert got["alerts"] == want["alerts"]
    assert want["alerts"] and want["counts"]["alerts_delivered"] > 0  # the record is about something
