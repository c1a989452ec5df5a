"""What the fault cases assert on every store: nothing lost, nothing duplicated, read through the Store.

"Lost" is judged per input record of a landing file: each record's cells are stored, or the cell or the
whole record (its raw line) is in quarantine, or the file lies in ``landing/rejected`` with a reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from smmdn.store import Store

KEY = ["time", "site", "depth_cm", "sensor"]


def _raw_time(raw: str) -> pd.Timestamp | None:
    """The logger timestamp opening a raw TOA5 record (the demo loggers keep UTC), None if unreadable."""
    try:
        return pd.Timestamp(raw.split(",")[0].strip('"'), tz="UTC")
    except ValueError:
        return None


def quarantine_of_day(store: Store, site: str, day: pd.Timestamp) -> tuple[int, int]:
    """(cells, whole records) of ``site`` quarantined for ``day``: cell rows carry a time, record rows the raw
    line whose first field is the logger's timestamp (a record whose time cannot be read is not counted, so
    the accounting of its file fails loudly)."""
    q = store.list_quarantine(table="observations")
    q = q[q["site"] == site]
    end = day + pd.Timedelta(days=1)
    cells = records = 0
    for time, row in zip(q["time"], q["row"], strict=True):
        if isinstance(row, dict) and row.get("raw"):
            stamp = _raw_time(str(row["raw"]))
            records += stamp is not None and day <= stamp < end
        elif pd.notna(time):
            cells += day <= pd.Timestamp(time) < end
    return cells, records


def stored_of_day(store: Store, site: str, day: pd.Timestamp) -> int:
    return len(store.read_observations(sites=[site], start=day, end=day + pd.Timedelta(days=1)))


def assert_no_duplicates(store: Store) -> dict[str, int]:
    """No reading, quarantined row, forecast or outbox message twice; returns the counts (for before/after)."""
    from smmdn.store import alerts as db

    obs = store.read_observations()
    assert not obs.duplicated(KEY).any(), obs[obs.duplicated(KEY, keep=False)].head()
    q = store.list_quarantine()
    quarantine_key = q.assign(payload=[json.dumps(r, sort_keys=True) for r in q["row"]])
    dup = quarantine_key.duplicated(["table_name", "site", "time", "reason", "payload"])
    assert not dup.any(), q[dup].head()
    runs = store.forecast_runs()
    complete = runs[runs["status"] == "complete"]
    assert not complete.duplicated("issue_time").any(), complete
    forecasts = store.read_forecasts()
    fkey = ["issue_time", "site", "depth_cm", "valid_time"]
    assert not forecasts.duplicated(fkey).any(), forecasts[forecasts.duplicated(fkey, keep=False)].head()
    outbox = db.read_outbox(store)
    okey = ["alert_id", "event", "target", "title"]
    once = outbox[outbox["event"] != "reminder"]  # reminders repeat by design (bounded, each its own key)
    assert not once.duplicated(okey).any(), once[once.duplicated(okey, keep=False)]
    assert not outbox["idempotency_key"].duplicated().any()
    return {"observations": len(obs), "quarantine": len(q), "forecast_runs": len(runs), "forecasts": len(forecasts),
            "outbox": len(outbox)}


def landing_state(landing: Path) -> dict[str, Any]:
    """File names left in landing, processed and rejected (with or without a reason beside them)."""
    rejected = landing / "rejected"
    return {
        "waiting": sorted(p.name for p in landing.glob("*.dat")),
        "processed": sorted(p.name for p in (landing / "processed").glob("*.dat")),
        "rejected": sorted(p.name for p in rejected.glob("*.dat")),
        "reasons": {p.name[: -len(".reason.txt")]: p.read_text() for p in rejected.glob("*.reason.txt")},
    }
