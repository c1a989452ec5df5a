"""Verification task of the daily cycle: score what became verifiable, judge calibration drift (the
operators' drift alert is queued by the library), record drift for the next cycle's training plan, and
publish the skill tables and reliability view as artifacts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd
from prefect import task

from flows import common
from flows.secrets import prefect_secret

if TYPE_CHECKING:
    from smmdn.store import Store


@task(name="verify", timeout_seconds=900, persist_result=True)
def verify_task(now: str, sites: list[str] | None = None) -> Any:
    """Score ``sites`` (None: every site; ``[]``: none, the shards scored theirs), then the network's verdict."""
    from smmdn.alerts.routing import load_routes
    from smmdn.verify.verification import verify

    cfg = common.settings()
    routes = load_routes(cfg, secrets=prefect_secret)
    return common.summarise(verify(common.store(cfg), pd.Timestamp(now), cfg, routes=routes, sites=sites))


@task(name="score-forecasts", timeout_seconds=900, persist_result=True)
def score_task(now: str, sites: list[str]) -> dict[str, Any]:
    """A shard's part of verification: score its sites' forecasts (the verdict is the parent's, once)."""
    from smmdn.verify.verification import score

    cfg = common.settings()
    scored, inserted = score(common.store(cfg), pd.Timestamp(now), cfg, sites=sites)
    days = sorted({t.date().isoformat() for t in scored["valid_time"]}) if not scored.empty else []
    return {"now": now, "scored": len(scored), "new_rows": inserted, "valid_days": days}


def score_sites(now: pd.Timestamp, sites: Sequence[str]) -> dict[str, Any]:
    """The shard's scoring step summary (``status`` ok | failed)."""
    return common.outcome(score_task(now.isoformat(), list(sites), return_state=True), "scoring")


def verify(now: pd.Timestamp, sites: Sequence[str] | None = None) -> dict[str, Any]:
    """The verification step's summary plus ``drift`` (calibration drift seen) and ``retrain`` (drift that
    asks for a full retrain: once per champion lineage, see ``smmdn.cycle.plan.request_retrain``).
    ``sites``: as in ``verify_task``."""
    from smmdn.cycle.plan import record_drift

    cfg = common.settings()
    db = common.store(cfg)
    subset = None if sites is None else list(sites)
    out = common.outcome(verify_task(now.isoformat(), subset, return_state=True), "verification")
    result = out.get("result") if isinstance(out.get("result"), dict) else {}
    out["drift"] = bool(result.get("drift", False))
    out["retrain"] = bool(result.get("retrain", out["drift"]))
    if out["retrain"]:
        record_drift(db, now)
    if result.get("notified"):  # the drift alert opened or resolved today
        from flows.alerts import alert_event

        alert_event({"event": result["notified"], "alert": "calibration-drift", "kind": "calibration_drift",
                     "site": "*", "depth_cm": 0.0, "sensor": "*",
                     "coverage_90": (result.get("report") or {}).get("coverage_90")})
    publish_verification(db, now, cfg, out)
    return out


def publish_verification(db: Store, now: pd.Timestamp, cfg: Any, result: dict[str, Any]) -> None:
    """Skill per site and lead (keyed tables: their history in the UI is the skill over time) and the
    reliability view. Artifacts are for people: failing to publish them never fails the cycle."""
    from flows.report import skill_rows, verification_markdown
    from smmdn.verify.verification import skill_report

    try:
        skill = skill_report(db, now, cfg)
        day = now.date().isoformat()
        common.table("verification-skill", skill_rows(skill["by_site_lead"]), f"CRPS and coverage per site and lead, "
                     f"last {cfg.drift_window_days} days to {day}")
        common.table("verification-by-lead", skill_rows(skill["by_lead"]), f"skill per lead to {day}")
        hist = ((result.get("result") or {}).get("report") or {}).get("pit_histogram") or []
        if not hist and len(skill["pit"]):
            from smmdn.verify.metrics import pit_histogram

            hist = pit_histogram(skill["pit"]["pit"].to_numpy())
        plots = (result.get("result") or {}).get("plots") or {}
        common.markdown("verification-reliability", verification_markdown(result, skill_rows(skill["by_lead"]), hist,
                                                                          plots), f"reliability {day}")
    except Exception as exc:
        common.logger().warning("verification artifacts not published: %s", exc)
