"""``ingest`` flow: sensors (per-site fan-out: network-bound) and Open-Meteo forcing for one cycle.

Retries with backoff only here, where the network is touched. A source still failing after its retries
does not fail the cycle: its summary says ``failed`` and the forecast step degrades explicitly
(stale-forcing flag) instead of forecasting from nothing.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import flow, task, unmapped
from prefect.tasks import exponential_backoff

from flows import common
from smmdn.errors import SourceError

NETWORK_TIMEOUT_S = 900


def _summaries(items: list[Any]) -> list[dict[str, Any]]:
    return [{"source": s.source, "key": s.key, "status": s.status, "fetched": s.fetched, "inserted": s.inserted,
             "updated": s.updated, "quarantined": s.quarantined, "flagged": s.flagged,
             "forcing_inserted": s.forcing_inserted, "error": s.error, "data_docs": s.data_docs} for s in items]


@task(name="ingest-sensors", retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=30),
      retry_jitter_factor=0.5, timeout_seconds=NETWORK_TIMEOUT_S, persist_result=True)
def ingest_sensors_task(site: str | None, now: str, since: str | None = None) -> list[dict[str, Any]]:
    """One site's sensor sources (``site=None``: the landing directory and every site)."""
    from smmdn.ingest import ingest_sensors

    cfg = common.settings()
    db = common.store(cfg)
    out = ingest_sensors(db, cfg, common.registry(cfg), sites=[site] if site else None, now=pd.Timestamp(now),
                         since=pd.Timestamp(since) if since else None)
    failed = [s for s in out if s.status == "failed" and s.retryable]
    if failed:  # a network or database failure: let Prefect retry with backoff (bad data would not heal)
        raise SourceError("; ".join(s.line() for s in failed))
    return _summaries(out)


@task(name="ingest-forcing", retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=30),
      retry_jitter_factor=0.5, timeout_seconds=NETWORK_TIMEOUT_S, persist_result=True)
def ingest_forcing_task(api: str, now: str, since: str | None = None) -> list[dict[str, Any]]:
    """Open-Meteo forcing for every site, batched (one request per 50 sites and timezone)."""
    from smmdn.ingest import ingest_forcing

    cfg = common.settings()
    out = ingest_forcing(common.store(cfg), cfg, common.registry(cfg), api=api, now=pd.Timestamp(now),
                         since=pd.Timestamp(since) if since else None)
    failed = [s for s in out if s.status == "failed"]
    if failed:
        raise SourceError("; ".join(s.line() for s in failed))
    return _summaries(out)


def _retry_policy(task_fn: Any) -> Any:
    """Retries from Settings (count and base delay), so tests and slow networks tune them without code."""
    cfg = common.settings()
    delays = [cfg.http_backoff_s * 60 * 4**i for i in range(max(cfg.http_retries, 0))]
    return task_fn.with_options(retries=len(delays), retry_delay_seconds=delays or 0)


@flow(name="ingest", flow_run_name=common.run_name("ingest", "now"), timeout_seconds=3600, persist_result=True)
def ingest(now: str | None = None, since: str | None = None, per_site: bool = True) -> dict[str, Any]:
    """Fetch sensors and forcing; per-site fan-out for network sensor sources."""
    from smmdn.ingest import ingest_landing, load_sites

    cfg = common.settings()
    db = common.store(cfg)
    reg = common.registry(cfg)
    load_sites(db, reg)
    now = now or pd.Timestamp.now(tz="UTC").isoformat()
    sensors: list[dict[str, Any]] = []
    landing = _summaries(ingest_landing(db, cfg, reg, now=pd.Timestamp(now)))
    networked = [s.id for s in reg.sites if s.sources.uscrn or s.sources.sensorthings or s.sources.cosmos]
    sensor_task = _retry_policy(ingest_sensors_task)
    if networked:
        if per_site:
            futures = sensor_task.map(networked, now=unmapped(now), since=unmapped(since))
            futures.wait()
            states = [f.state for f in futures]
        else:
            states = [sensor_task(None, now, since, return_state=True)]
        for state in states:
            sensors += _outcome(state, "sensors")
    forcing: list[dict[str, Any]] = []
    forcing_task = _retry_policy(ingest_forcing_task)
    for api, start in (("forecast", None), ("historical-forecast", since)):
        state = forcing_task(api, now, start, return_state=True)
        forcing += _outcome(state, f"forcing {api}")
    rows = landing + sensors + forcing
    common.table("ingest-summary", rows, f"ingest at {now}")
    return {"now": now, "summaries": rows, "failed": [r for r in rows if r["status"] == "failed"]}


# The daily cycle's ingest step: the same function as a task run (``ingest-<day>``, its source tasks nested in it)
# instead of a subflow, which costs a flow run's bookkeeping (about a second) every day.
ingest_task = task(name="ingest", task_run_name=common.run_name("ingest", "now", task=True), timeout_seconds=3600,
                   persist_result=True)(ingest.fn)


def _outcome(state: Any, what: str) -> list[dict[str, Any]]:
    """A source's summaries, or one failed row when it still failed after its retries."""
    step = common.outcome(state, what)
    if step["status"] == "ok":
        return step["result"]
    return [{"source": what, "key": "", "status": "failed", "error": step["detail"]}]
