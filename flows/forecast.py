"""``forecast`` flow: issue one day's probabilistic forecast with the champion (idempotent per day)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect import flow, task

from flows import common

if TYPE_CHECKING:
    from smmdn.store import Store


@flow(name="forecast", flow_run_name=common.run_name("forecast"), timeout_seconds=1800, persist_result=True)
def forecast(day: str | None = None, history_days: int = 400, validation: dict | None = None,
             replay: bool = False, force: bool = False) -> dict[str, Any]:
    """Forecast issue ``day`` (default: yesterday); a stale-forcing run is flagged and logged at WARNING."""
    return issue(day, history_days, validation, replay, force)


# The daily cycle's forecast step: the same function as a task run (``forecast-<day>``), not a subflow.
forecast_task = task(name="forecast", task_run_name=common.run_name("forecast", task=True), timeout_seconds=1800,
                     persist_result=True)(forecast.fn)


def issue(day: str | None, history_days: int, validation: dict | None, replay: bool, force: bool = False, *,
          sites: list[str] | None = None, run_suffix: str | None = None) -> dict[str, Any]:
    """The forecast step in the running flow: the whole network, or one shard (``sites``, its run id ending
    with ``run_suffix``; the operators' model alert is then the parent's, told once for the day)."""
    from smmdn.cycle.day import resolve_day
    from smmdn.cycle.forecast import issue_forecast
    from smmdn.cycle.inputs import load_inputs

    log = common.logger()
    cfg = common.settings()
    db = common.store(cfg)
    cycle = resolve_day(day, cfg, replay=replay)
    inputs = load_inputs(db, cfg, cycle, history_days=history_days, sites=sites)
    outcome = issue_forecast(db, cfg, inputs, cycle, validation=validation, force=force,
                             run_suffix=run_suffix).to_dict()
    if sites is None:
        tell_operators_about_the_model(db, cfg, cycle.now, outcome)
    if outcome["stale_forcing"]:
        log.warning("forecast %s issued with STALE forcing: %s", outcome["run_id"],
                    outcome["freshness"].get("stale_forcing_reason"))
    else:
        log.info("forecast %s: %s (%d rows)", outcome["run_id"], outcome["status"], outcome["rows"])
    return outcome


def tell_operators_about_the_model(db: Store, cfg: Any, now: Any, outcome: dict[str, Any]) -> None:
    """Open (or resolve) the operators' ``model_fallback`` alert; a failure to tell them never stops the day."""
    from flows.secrets import prefect_secret
    from smmdn.alerts.network import network_transition
    from smmdn.alerts.routing import load_routes

    if outcome["status"] != "complete":
        return
    fallback = outcome.get("fallback_from")
    details = {"champion": fallback or outcome["model_version"], "serving": outcome["model_version"],
               "error": outcome.get("fallback_error"), "run_id": outcome["run_id"]}
    try:
        event = network_transition(db, now, "model_fallback", bool(fallback), details,
                                   load_routes(cfg, secrets=prefect_secret),
                                   resolved_note=f"the champion {outcome['model_version']} loads again")
    except Exception as exc:
        common.logger().warning("model-fallback alert not queued: %s", exc)
        return
    if event:  # opened, updated or resolved today: automations and the event feed see it too
        from flows.alerts import alert_event

        alert_event({"event": event, "alert": "model-fallback", "kind": "model_fallback", "site": "*",
                     "depth_cm": 0.0, "sensor": "*", **details})
    if fallback:
        common.logger().warning("champion %s cannot be loaded: forecast issued with %s (%s); operators alerted "
                                "(%s)", fallback, outcome["model_version"], outcome.get("fallback_error"), event)
