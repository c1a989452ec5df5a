"""The detection benchmark at smoke size (one seed, one demo run, three daily cycles, peers on those days), so
that it cannot rot between the runs that record its figures (docs/results-detection.md)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def test_detection_benchmark_smoke(tmp_path: Path) -> None:
    peers = importlib.util.find_spec("saqc") is not None and importlib.util.find_spec("flagit") is not None
    cmd = [sys.executable, str(REPO / "tests" / "benchmarks" / "bench_detection.py"), "--out", str(tmp_path),
           "--seeds", "1", "--datasets", "demo", "--history", "40", "--cycles", "3", "--runs", "0"]
    env = {**os.environ, "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "GX_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run([*cmd, *([] if peers else ["--no-peers"])], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    smmdn = result["demo"]["detectors"]["smmdn"]
    assert smmdn["summary"]["faults"] == len(smmdn["faults"]) == 8  # run 0 of seed 1: an event site + 8 faults
    assert {c["cell"] for c in smmdn["cells"]} == {f["cell"] for f in smmdn["faults"]}
    assert result["demo"]["timing"][0]["cycles"] == 3
    assert (tmp_path / "demo-s1-r0" / "alerts.csv").exists()
    if peers:
        assert set(result["demo"]["detectors"]) == {"smmdn", "saqc", "flagit"}
