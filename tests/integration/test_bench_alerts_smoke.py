"""The detection/verification/delivery benchmark at smoke size (5 sites, 2 days, SQLite), so that it cannot
rot between the runs that record its figures (docs/results-detection.md; it once failed on a removed
``DetectOutcome`` field after its 1-day detection)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_alerts_benchmark_smoke(tmp_path: Path) -> None:
    cmd = [sys.executable, str(REPO / "tests" / "benchmarks" / "bench_alerts.py"), "--sites", "5", "--days", "2",
           "--alerts", "2", "--sqlite"]
    env = {**os.environ, "DO_NOT_TRACK": "1", "GX_ANALYTICS_ENABLED": "false", "SMMDN_HOME": str(tmp_path)}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    for line in ("target: detection 20 series x 1 day", "target: verification 20 series x 1 day",
                 "sent 2, received 2"):
        assert line in out, out[-3000:]
