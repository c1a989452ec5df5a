"""``forecast`` flow: issue one day's probabilistic forecast with the champion (idempotent per day)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows import common


@flow(name="forecast", flow_run_name=common.run_name("forecast"), timeout_seconds=1800, persist_result=True)
def forecast(day: str | None = None, history_days: int = 400, validation: dict | None = None,
             replay: bool = False, force: bool = False) -> dict[str, Any]:
    """Forecast issue ``day`` (default: yesterday); a stale-forcing run is flagged and logged at WARNING."""
    from smmdn.cycle.day import resolve_day
    from smmdn.cycle.forecast import issue_forecast
    from smmdn.cycle.inputs import load_inputs

    log = common.logger()
    cfg = common.settings()
    db = common.store(cfg)
    cycle = resolve_day(day, cfg, replay=replay)
    inputs = load_inputs(db, cfg, cycle, history_days=history_days)
    outcome = issue_forecast(db, cfg, inputs, cycle, validation=validation, force=force).to_dict()
    if outcome["stale_forcing"]:
        log.warning("forecast %s issued with STALE forcing: %s", outcome["run_id"],
                    outcome["freshness"].get("stale_forcing_reason"))
    else:
        log.info("forecast %s: %s (%d rows)", outcome["run_id"], outcome["status"], outcome["rows"])
    return outcome
