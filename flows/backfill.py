"""``backfill`` flow: replay the daily cycle over past issue days (hindcast), idempotent per day.

Data are read as known on each day where the store can tell (``ingested_at``; weather forecasts by
issue time). What hindsight remains (also in each run's ``input_freshness``): periods ingested after the
fact are read as stored now (later revisions included), and future forcing for days without an archived
weather forecast comes from the reanalysis (perfect weather), so replayed skill is optimistic there.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import flow

from flows import common
from flows.daily import daily
from flows.ingest import ingest


@flow(name="backfill", flow_run_name=common.run_name("backfill", "start", "end"), timeout_seconds=24 * 3600,
      persist_result=True)
def backfill(start: str, end: str, history_days: int = 365, train_overrides: dict | None = None,
             ingest_first: bool = True, skip_training: bool = False) -> dict[str, Any]:
    """Replay issue days ``start..end``; a day already complete (model version, forecast run) is not redone."""
    from smmdn.cycle.day import day_range

    log = common.logger()
    days = day_range(start, end)
    if ingest_first:
        since = (days[0] - pd.Timedelta(days=history_days)).isoformat()
        ingest(now=pd.Timestamp.now(tz="UTC").isoformat(), since=since)
    results = []
    for day in days:
        summary = daily(day=day.date().isoformat(), history_days=history_days, train_overrides=train_overrides,
                        replay=True, skip_ingest=True, skip_training=skip_training)
        results.append({"issue": summary["issue"], "training": (summary.get("training") or {}).get("status"),
                        "forecast": (summary.get("forecast") or {}).get("status")})
    log.info("backfill %s..%s: %d days", start, end, len(results))
    common.table("backfill", results, f"backfill {start}..{end}")
    return {"days": results}
