"""``daily`` flow, the runbook of one day: ingest → validate → train → forecast → detect → verify → deliver.

Training: fine-tune daily, full retrain on ``Settings.full_retrain_weekday`` or after verification
reported calibration drift (``smmdn.cycle.training_plan``). Cold start (no champion yet): ingest first
back-fills ``history_days`` of sensor data and archived forcing, then a full training runs.

When this flow runs as a deployment, training goes to the ``train`` deployment on the ``gpu`` pool via
``run_deployment`` (the parent waits and reads its persisted result); run locally, it is a subflow.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import flow, task

from flows import common
from flows.forecast import forecast
from flows.ingest import ingest
from flows.train import TRAIN_TIMEOUT_S, train
from flows.validate import validate

TRAIN_DEPLOYMENT = "train/train"


def run_train(parameters: dict[str, Any], *, remote: bool | None = None,
              deployment: str = TRAIN_DEPLOYMENT) -> dict[str, Any]:
    """Train on the GPU pool (as a deployment) or in-process; returns the ``TrainOutcome`` dict."""
    from prefect.runtime import deployment as runtime

    remote = runtime.id is not None if remote is None else remote
    if not remote:
        return train(**parameters)
    from prefect.deployments import run_deployment

    flow_run = run_deployment(name=deployment, parameters=parameters, timeout=TRAIN_TIMEOUT_S)
    state = flow_run.state
    if state is None or not state.is_completed():
        raise RuntimeError(f"train deployment run {flow_run.name} ended {state.type if state else 'unknown'}: "
                           f"{state.message if state else ''}")
    return state.result()


@task(name="detect-anomalies", timeout_seconds=900, persist_result=True)
def detect_task(now: str) -> dict[str, Any]:
    from smmdn import alerting

    cfg = common.settings()
    return alerting.detect(common.store(cfg), pd.Timestamp(now), cfg)


@task(name="deliver-alerts", timeout_seconds=600, retries=2, retry_delay_seconds=[30, 120], persist_result=True)
def deliver_task() -> dict[str, Any]:
    from smmdn import alerting

    cfg = common.settings()
    return alerting.deliver(common.store(cfg), cfg)


@task(name="verify", timeout_seconds=900, persist_result=True)
def verify_task(now: str) -> dict[str, Any]:
    from smmdn import alerting
    from smmdn.cycle import record_drift

    cfg = common.settings()
    db = common.store(cfg)
    result = alerting.verify(db, pd.Timestamp(now), cfg)
    if result.get("retrain", result["drift"]):
        record_drift(db, pd.Timestamp(now))
    publish_verification(db, pd.Timestamp(now), cfg, result)
    return result


def publish_verification(db: Any, now: pd.Timestamp, cfg: Any, result: dict[str, Any]) -> None:
    """Skill per site and lead (keyed tables: their history in the UI is the skill over time) and the
    reliability view. Artifacts are for people: failing to publish them never fails the cycle."""
    from flows.report import skill_rows, verification_markdown
    from smmdn.verification import skill_report

    try:
        skill = skill_report(db, now, cfg)
        day = now.date().isoformat()
        common.table("verification-skill", skill_rows(skill["by_site_lead"]), f"CRPS and coverage per site and lead, "
                     f"last {cfg.drift_window_days} days to {day}")
        common.table("verification-by-lead", skill_rows(skill["by_lead"]), f"skill per lead to {day}")
        hist = ((result.get("result") or {}).get("report") or {}).get("pit_histogram") or []
        if not hist and len(skill["pit"]):
            from smmdn.metrics import pit_histogram

            hist = pit_histogram(skill["pit"]["pit"].to_numpy())
        plots = (result.get("result") or {}).get("plots") or {}
        common.markdown("verification-reliability", verification_markdown(result, skill_rows(skill["by_lead"]), hist,
                                                                          plots), f"reliability {day}")
    except Exception as exc:
        common.logger().warning("verification artifacts not published: %s", exc)


@flow(name="daily", timeout_seconds=6 * 3600, persist_result=True)
def daily(day: str | None = None, history_days: int = 365, train_overrides: dict | None = None,
          replay: bool = False, skip_ingest: bool = False, skip_training: bool = False) -> dict[str, Any]:
    """One daily cycle for issue ``day`` (default: yesterday in ``SMMDN_TIMEZONE``)."""
    from smmdn.cycle import last_validation_id, resolve_day, training_plan

    log = common.logger()
    cfg = common.settings()
    db = common.store(cfg)
    cycle = resolve_day(day, cfg, replay=replay)
    issue = cycle.issue.date().isoformat()
    cold = db.champion() is None
    summary: dict[str, Any] = {"issue": issue, "now": cycle.now.isoformat(), "cold_start": cold, "replay": replay}

    after = last_validation_id(db)
    if not skip_ingest:
        since = (cycle.data_end - pd.Timedelta(days=history_days)).isoformat() if cold else None
        if cold:
            log.info("cold start: back-filling %d days of history before training", history_days)
        summary["ingest"] = ingest(now=cycle.now.isoformat(), since=since)
    summary["validation"] = validate(after_id=after)

    kind, why = training_plan(db, cfg, cycle)
    if skip_training:
        summary["training"] = {"status": "skipped", "reason": "skip_training"}
    else:
        log.info("training: %s (%s)", kind, why)
        summary["training"] = run_train({"day": issue, "kind": kind, "history_days": history_days,
                                         "train_overrides": train_overrides, "replay": replay})
        summary["training"]["why"] = why

    summary["forecast"] = forecast(day=issue, history_days=history_days, validation=summary["validation"],
                                   replay=replay)
    summary["alerts"] = detect_task(cycle.now.isoformat())
    summary["verification"] = verify_task(cycle.now.isoformat())  # may queue the operators' drift alert
    summary["delivery"] = deliver_task()  # one delivery for both: nothing waits a day in the outbox
    publish(summary)
    return summary


def publish(summary: dict[str, Any]) -> None:
    """The run's markdown summary and the keyed tables whose history the UI shows."""
    from flows.report import cycle_markdown, cycle_row

    common.markdown("daily-summary", cycle_markdown(summary), f"daily cycle {summary['issue']}")
    common.table("daily-cycle", [cycle_row(summary)], f"daily cycle {summary['issue']}")
