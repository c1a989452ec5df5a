"""``shard`` flow (deployment ``daily-shard``): one shard's part of the daily cycle (forecast, detection,
scoring for its sites), and the parent's side that fans the shards out with ``run_deployment`` and waits.

Why this split (``docs/operations-guide.md``, "Sharding the daily cycle"): training is one network-wide model,
so it runs once before the fan-out; ingest and validation stay in the parent too (one landing directory, one
forcing request per 50 sites, already a per-site task fan-out); what grows with the number of series — the
forecast, detection and scoring of each site — runs in the shards. The network-wide verdicts (calibration
drift, the share of excluded sensors, the clocks of network alerts, the model-fallback alert) and the one
delivery of the day are the parent's, after every shard finished.

A shard records its issue day in the store's watermarks only when all its steps succeeded
(``smmdn.cycle.shards``), so the parent resubmits a failed shard alone, and a rerun of the day submits none.
Each shard's forecasts are one run (id ``<issue>-<version>-s<shard id>``) made visible when that shard's
forecast completes: a half-finished shard is never visible, and a failed shard does not hide the others'.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from prefect import flow, task

from flows import alerts, common, verify

SHARD_TIMEOUT_S = 2 * 3600
SHARD_DEPLOYMENT = "shard/daily-shard"
POLL_S = 1.0
WAIT_S = SHARD_TIMEOUT_S + 1800  # a submitted shard not final by then (no worker picked it up) counts as failed


class ShardFailed(RuntimeError):
    """A shard step failed: the shard is not recorded as done, so the parent resubmits it."""


@task(name="shard-forecast", timeout_seconds=1800, persist_result=True)
def forecast_task(day: str, history_days: int, validation: dict | None, replay: bool, sites: list[str],
                  run_suffix: str) -> dict[str, Any]:
    from flows.forecast import issue

    return issue(day, history_days, validation, replay, sites=sites, run_suffix=run_suffix)


@flow(name="shard", flow_run_name=common.run_name("daily-shard", "day", "shard_id", "attempt"),
      timeout_seconds=SHARD_TIMEOUT_S, persist_result=True)
def shard(day: str, shard_id: str, sites: list[str], history_days: int = 365, validation: dict | None = None,
                replay: bool = False, attempt: int = 1) -> dict[str, Any]:
    """Forecast, detect and score issue ``day`` for ``sites``; recorded as done only if every step succeeded."""
    from smmdn.cycle.day import resolve_day
    from smmdn.cycle.shards import forecast_run_suffix, mark_shard_done, shard_done, take_drill

    cfg = common.settings()
    db = common.store(cfg)
    cycle = resolve_day(day, cfg, replay=replay)
    issue = cycle.issue.date().isoformat()
    summary: dict[str, Any] = {"shard": shard_id, "sites": len(sites), "attempt": attempt}
    if shard_done(db, issue, shard_id) is not None:
        return summary | {"status": "exists"}
    take_drill(cfg, shard_id)  # a rehearsed failure (a drill file), before any work
    fc = common.outcome(forecast_task(issue, history_days, validation, replay, list(sites),
                                      forecast_run_suffix(shard_id), return_state=True), "forecast")
    summary["forecast"] = fc.get("result") if fc["status"] == "ok" else {"status": "failed", "detail": fc["detail"]}
    summary["alerts"] = alerts.detect(cycle.now, sites)
    summary["verification"] = verify.score_sites(cycle.now, sites)
    failed = [k for k in ("alerts", "verification") if summary[k]["status"] != "ok"]
    failed += ["forecast"] if fc["status"] != "ok" else []
    if failed:
        raise ShardFailed(f"shard {shard_id} ({len(sites)} sites) failed at {', '.join(failed)}: "
                          + "; ".join(str((summary[k] or {}).get("detail", ""))[:300] for k in failed))
    mark_shard_done(db, issue, shard_id, cycle.now)
    return summary | {"status": "done"}


# --- the parent's side ------------------------------------------------------------------------------------------
def run_shards(day: str, shards: Sequence[Any], parameters: dict[str, Any], *, remote: bool, attempts: int = 2,
               deployment: str = SHARD_DEPLOYMENT) -> dict[str, Any]:
    """Run every pending shard of ``day`` (``smmdn.cycle.shards.Shard``); a failed one is resubmitted alone as
    soon as it failed, up to ``attempts`` attempts in all. Returns ``{"shards", "pending", "results", "failed",
    "submitted"}``."""
    from smmdn.cycle.shards import pending

    log = common.logger()
    db = common.store()
    todo = pending(db, day, shards)
    log.info("%d shard(s) for %s, %d pending (%d site(s) each at most)", len(shards), day, len(todo),
             max((len(s.sites) for s in shards), default=0))
    results: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    submitted: list[dict[str, Any]] = []
    running: list[tuple[Any, int, Any, float]] = []

    def submit(part: Any, attempt: int) -> None:
        submitted.append({"shard": part.id, "attempt": attempt})
        started = _start(part, day, parameters, attempt, remote, deployment)
        running.append((part, attempt, started, time.monotonic() + WAIT_S))

    for part in todo:
        submit(part, 1)
    while running:
        part, attempt, handle, deadline = running.pop(0)
        state = handle if not remote else _state(handle.id)
        if state is not None and not state.is_final() and time.monotonic() < deadline:
            running.append((part, attempt, handle, deadline))
            time.sleep(POLL_S / max(len(running), 1))
            continue
        ok, value = _outcome(state)
        if state is not None and not state.is_final():
            value = (f"{value}: not finished {WAIT_S / 3600:g} h after it was submitted (is a worker polling the "
                     f"cpu pool, and is its concurrency limit above 1?)")
        if ok:
            results[part.id] = value
            failed.pop(part.id, None)
            continue
        failed[part.id] = value
        log.warning("shard %s attempt %d failed: %s", part.id, attempt, value)
        if attempt < max(attempts, 1):
            submit(part, attempt + 1)
    return {"shards": len(shards), "pending": len(pending(db, day, shards)), "results": results,
            "failed": failed, "submitted": submitted}


def _start(part: Any, day: str, parameters: dict[str, Any], attempt: int, remote: bool, deployment: str) -> Any:
    """Submit one shard (a flow run of the deployment) or, run locally, run it now as a subflow."""
    params = parameters | {"day": day, "shard_id": part.id, "sites": list(part.sites), "attempt": attempt}
    if not remote:
        return shard(**params, return_state=True)
    from prefect.deployments import run_deployment
    from prefect.runtime import flow_run

    key = f"{flow_run.id or 'local'}/{day}/{part.id}/{attempt}"
    return run_deployment(name=deployment, parameters=params, timeout=0, idempotency_key=key)


def _outcome(state: Any) -> tuple[bool, Any]:
    """(True, the shard's summary) or (False, why it failed)."""
    if state is not None and state.is_completed():
        return True, state.result()
    message = str(state.message if state is not None else "no state")
    return False, f"{state.type.value if state is not None else 'unknown'}: {message}"[:500]


def _state(flow_run_id: Any) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).state


def combine(run: dict[str, Any]) -> dict[str, Any]:
    """The parent summary's ``forecast``, ``alerts`` and ``verification`` parts from its shards' summaries
    (same shapes as an unsharded cycle's, so the report and the UI read them alike), plus ``shards``."""
    from smmdn.cycle.shards import combine_counts

    parts = list(run["results"].values())
    forecasts = [p["forecast"] for p in parts if isinstance(p.get("forecast"), dict)]
    statuses = {f.get("status") for f in forecasts}
    status = "failed" if run["failed"] else ("complete" if "complete" in statuses else next(
        iter(statuses), "exists" if run["shards"] and not run["pending"] else "none"))  # none ran: all done before
    stale = {p["shard"]: (p["forecast"].get("freshness") or {}).get("stale_forcing_reason") for p in parts
             if (p.get("forecast") or {}).get("stale_forcing")}
    fallback = next((f for f in forecasts if f.get("fallback_from")), None)
    forecast = {"status": status, "run_id": ", ".join(sorted(f["run_id"] for f in forecasts if f.get("run_id"))),
                "model_version": next((f["model_version"] for f in forecasts if f.get("model_version")), None),
                **combine_counts(forecasts, ("rows", "series")), "stale_forcing": bool(stale),
                "freshness": {"stale_forcing_reason": stale} if stale else {},
                "fallback_from": (fallback or {}).get("fallback_from"),
                "fallback_error": (fallback or {}).get("fallback_error")}
    detected = [(p.get("alerts") or {}).get("result") or {} for p in parts]
    alerts_part = {"status": "failed" if run["failed"] else "ok",
                   "result": combine_counts(detected, ("series", "observations", "outside", "opened", "reopened",
                                                       "resolved", "escalated", "messages_queued"))
                   | {"alerts": [a for d in detected for a in d.get("alerts") or []][:50]}}
    if run["failed"]:
        alerts_part["detail"] = f"{len(run['failed'])} shard(s) failed: " + "; ".join(
            f"{k}: {v}" for k, v in sorted(run["failed"].items()))[:500]
    scored = combine_counts([(p.get("verification") or {}).get("result") or {} for p in parts], ("scored", "new_rows"))
    shards = {k: run[k] for k in ("shards", "pending", "failed", "submitted")}
    return {"forecast": forecast, "alerts": alerts_part, "scored": scored, "shards": shards}
