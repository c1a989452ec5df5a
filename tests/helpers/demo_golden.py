"""The golden record of one ``smmdn demo`` run: its summary counts and every alert it raised.

A refactor that claims "behaviour unchanged" must reproduce this exactly (``tests/flows/test_demo_golden.py``).
Timings and paths are left out; everything else the run decided is in: per-day ingest, training and
forecast figures, model versions, outbox and delivery counts, and each alert's kind, place, status and
first and last day.

Write a new golden file from a finished demo home (only when behaviour is *meant* to change)::

    .venv/bin/python -m tests.helpers.demo_golden var/demo tests/golden/demo-seed7.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

COUNTS = ("alerts_delivered", "outbox", "verification_rows", "model_versions", "promoted", "rejected", "champion",
          "forecast_runs", "forecast_rows")
DAY_FIELDS = ("issue", "fetched", "inserted", "updated", "quarantined", "flagged", "forcing_inserted",
              "validation", "training", "model", "holdout_crps", "champion_crps", "forecast_rows", "stale_forcing",
              "alerts", "drift")


def _day(value: Any) -> str | None:
    import pandas as pd

    return None if value is None or pd.isna(value) else pd.Timestamp(value).date().isoformat()


def _round(value: Any) -> Any:
    return round(value, 6) if isinstance(value, float) else value


def golden_of(home: Path) -> dict[str, Any]:
    """The golden record of the demo whose home is ``home`` (summary.json plus its database's alerts)."""
    from smmdn.store import Store
    from smmdn.store import alerts as db

    summary = json.loads((home / "summary.json").read_text(encoding="utf-8"))
    alerts = db.read_alerts(Store(summary["database"]))
    return {
        "counts": {k: summary[k] for k in COUNTS},
        "days": [{k: _round(d.get(k)) for k in DAY_FIELDS} for d in summary["days"]],
        "alerts": [{"kind": a.kind, "site": a.site, "depth_cm": float(a.depth_cm), "sensor": a.sensor,
                    "status": a.status, "first_day": _day(a.window_start), "last_day": _day(a.window_end),
                    "revision": int(a.revision)} for a in alerts.itertuples()],
    }


def main(argv: list[str]) -> int:
    home, out = Path(argv[0]), Path(argv[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(golden_of(home), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"golden record written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
