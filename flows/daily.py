"""``daily`` flow, the runbook of one day: ingest → validate → train → forecast → detect → verify → deliver.

Training: fine-tune daily, full retrain on ``Settings.full_retrain_weekday`` or after verification
reported calibration drift (``smmdn.cycle.plan.training_plan``). Cold start (no champion yet): ingest first
back-fills ``history_days`` of sensor data and archived forcing, then a full training runs.

Steps are task runs of this flow run, each named after the issue day (``ingest-…``, ``validate-…``,
``train-…-fine-tune``, ``forecast-…``, ``detect-anomalies``, ``verify``, ``deliver-alerts``) with its own logs
and artifacts: the ingest, validate, forecast and train steps are the same functions as their standalone flows
(deployments, CLI), called as tasks because a subflow costs a flow run's bookkeeping (about a second) each.

When this flow runs as a deployment, training goes to the ``train`` deployment on the ``gpu`` pool via
``run_deployment`` (the parent waits and reads its persisted result); run locally, it is a task run.

Sharded (``SMMDN_SHARD_SITES`` > 0): after ingest, validation and the one network-wide training, the sites'
forecast, detection and scoring run as shards, flow runs of the ``daily-shard`` deployment (``flows/shard.py``;
in-process subflows when run locally); the parent then runs the network-wide checks and delivers once. A shard
still failing after ``shard_attempts`` fails the day after delivery; a rerun of the day runs only that shard.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import flow

from flows import alerts, common, verify
from flows.forecast import forecast_task, tell_operators_about_the_model
from flows.ingest import ingest_task
from flows.train import run_train
from flows.validate import validate_task


@flow(name="daily", flow_run_name=common.run_name("daily"), timeout_seconds=6 * 3600, persist_result=True)
@common.explained_errors
def daily(day: str | None = None, history_days: int = 365, train_overrides: dict | None = None,
          replay: bool = False, skip_ingest: bool = False, skip_training: bool = False,
          remote_shards: bool | None = None, shard_attempts: int = 2) -> dict[str, Any]:
    """One daily cycle for issue ``day`` (default: yesterday in ``SMMDN_TIMEZONE``). ``remote_shards``: run
    the shards on the ``daily-shard`` deployment (None: when this run is itself a deployment's)."""
    from smmdn.cycle.day import resolve_day
    from smmdn.cycle.inputs import last_validation_id
    from smmdn.cycle.plan import training_plan
    from smmdn.cycle.shards import registry_shards

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
        summary["ingest"] = ingest_task(now=cycle.now.isoformat(), since=since)
    summary["validation"] = validate_task(after_id=after, day=issue)

    kind, why = training_plan(db, cfg, cycle)
    if skip_training:
        summary["training"] = {"status": "skipped", "reason": "skip_training"}
    else:
        log.info("training: %s (%s)", kind, why)
        summary["training"] = run_train({"day": issue, "kind": kind, "history_days": history_days,
                                         "train_overrides": train_overrides, "replay": replay})
        summary["training"]["why"] = why

    shards = registry_shards(db, cfg)
    if shards:
        sharded(summary, shards, history_days, replay, remote_shards, shard_attempts)
    else:
        summary["forecast"] = forecast_task(day=issue, history_days=history_days, validation=summary["validation"],
                                       replay=replay)
        summary["alerts"] = alerts.detect(cycle.now)
        summary["verification"] = verify.verify(cycle.now)  # may queue the operators' drift alert
    summary["delivery"] = alerts.deliver(cycle.now)  # one delivery for both; the cycle's clock times incidents
    publish(summary)
    failed = (summary.get("shards") or {}).get("failed")
    if failed:  # after the delivery: the other shards' alerts went out; a rerun of the day runs only these
        raise RuntimeError(f"{len(failed)} shard(s) of {issue} failed after {shard_attempts} attempt(s): "
                           + "; ".join(f"{k}: {v}" for k, v in sorted(failed.items()))[:1500])
    return summary


def sharded(summary: dict[str, Any], shards: list[Any], history_days: int, replay: bool, remote: bool | None,
            attempts: int) -> None:
    """The per-site steps in shards, then the network-wide ones once (see the module docstring)."""
    from prefect.runtime import deployment as runtime

    from flows.shard import combine, run_shards

    now = pd.Timestamp(summary["now"])
    remote = runtime.id is not None if remote is None else remote
    run = run_shards(summary["issue"], shards, {"history_days": history_days, "validation": summary["validation"],
                                                "replay": replay}, remote=remote, attempts=attempts)
    parts = combine(run)
    summary["shards"] = parts["shards"]
    summary["forecast"] = parts["forecast"]
    tell_operators_about_the_model(common.store(), common.settings(), now, parts["forecast"])
    network = alerts.detect(now, sites=[])  # the network-wide checks alone: the shards did the sites
    summary["alerts"] = parts["alerts"]
    if network["status"] != "ok":
        summary["alerts"] = network
    else:
        for key in ("opened", "reopened", "resolved", "escalated", "messages_queued"):
            summary["alerts"]["result"][key] += int(network["result"].get(key) or 0)
        summary["alerts"]["result"]["alerts"] += network["result"].get("alerts") or []
        summary["alerts"]["result"]["active_alerts"] = network["result"].get("active_alerts", 0)
    summary["verification"] = verify.verify(now, sites=[])  # the verdict over every shard's scores
    result = summary["verification"].get("result")
    if isinstance(result, dict):
        result.update(parts["scored"])


def publish(summary: dict[str, Any]) -> None:
    """The run's markdown summary and the keyed tables whose history the UI shows, the network overview, and
    a plot for each site with an open alert (not every site: that would not scale)."""
    from flows.report import cycle_markdown, cycle_row

    common.markdown("daily-summary", cycle_markdown(summary), f"daily cycle {summary['issue']}")
    common.table("daily-cycle", [cycle_row(summary)], f"daily cycle {summary['issue']}")
    publish_views(summary["issue"], pd.Timestamp(summary["now"]))


MAX_SITE_PLOTS = 50  # a bad day with more sites alerting lists them in the overview; the CLI plots any site


def publish_views(issue: str, now: pd.Timestamp) -> None:
    """Keyed artifacts (stable keys: the UI's history; the day in the description). For people: failing to
    publish them never fails the cycle."""
    from flows.report import site_markdown
    from smmdn.views.overview import network_overview, sites_with_open_alerts

    try:
        db = common.store()
        rows = network_overview(db, now)
        common.table("network-overview", rows, f"network overview {issue}: {len(rows)} sites, "
                                               f"{sum(r['open_alerts'] for r in rows)} open alerts")
        for site in sites_with_open_alerts(db)[:MAX_SITE_PLOTS]:
            common.markdown(common.artifact_key("site", site), site_markdown(db, site, now),
                            f"{site} on {issue}: forecasts, observations and open alerts")
    except Exception as exc:
        common.logger().warning("forecast views not published: %s", exc)
