"""Issue one forecast run: champion + cycle inputs → mixtures per (site, depth, lead) → store, atomically visible.

Bookkeeping: the run id is deterministic (issue time + model version), the run is registered as
``running`` first (its rows invisible to ``latest_forecasts``), rows are upserted, and only then the
run is marked ``complete``. A crash in between leaves an invisible ``running``/``failed`` run; rerunning
the day upserts the same keys (no duplicates) and completes it. A day that already has a complete run
is skipped unless ``force``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from smmdn.config import Settings
from smmdn.cycle.day import CycleDay
from smmdn.cycle.inputs import CycleInputs, check_forcing_consistency, prepare_forecast_forcing
from smmdn.errors import InputError, ModelError

if TYPE_CHECKING:
    from smmdn.store import Store

log = logging.getLogger(__name__)


@dataclass
class ForecastOutcome:
    run_id: str
    issue_time: str
    model_version: str
    status: str  # complete | skipped | exists | failed
    rows: int = 0
    series: int = 0
    stale_forcing: bool = False
    freshness: dict[str, Any] = field(default_factory=dict)
    message: str | None = None
    fallback_from: str | None = None  # the champion that could not be loaded (the run used model_version)
    fallback_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_id_for(issue: pd.Timestamp, version: str) -> str:
    return f"{issue:%Y%m%dT%H%M}-{version}"


def complete_run(store: Store, issue: pd.Timestamp, suffix: str | None = None) -> dict[str, Any] | None:
    """The day's complete run (``suffix``: the one whose run id ends with it, a shard's run)."""
    runs = store.forecast_runs()
    if runs.empty:
        return None
    done = runs.loc[(runs["issue_time"] == issue) & (runs["status"] == "complete")]
    if suffix is not None:
        done = done.loc[done["run_id"].astype(str).str.endswith(f"-{suffix}")]
    return None if done.empty else done.iloc[-1].to_dict()


def issue_forecast(store: Store, settings: Settings, inputs: CycleInputs, cycle: CycleDay, *,
                   validation: dict[str, Any] | None = None, force: bool = False,
                   run_suffix: str | None = None) -> ForecastOutcome:
    """Forecast ``cycle.issue`` with the current champion; see the module docstring for the bookkeeping.

    ``run_suffix``: a part of the day (a shard of the sites in ``inputs``) issued as its own run, whose id ends
    with it; the part is visible when its run completes, whatever the other parts do."""
    from smmdn.cycle.serving import serving_model
    from smmdn.model import predict_forecast

    champion = store.champion()
    if champion is None:
        return ForecastOutcome("", cycle.issue.isoformat(), "", "skipped", message="no champion model yet")
    done = complete_run(store, cycle.issue, run_suffix)
    if done is not None and not force:
        return ForecastOutcome(done["run_id"], cycle.issue.isoformat(), done["model_version"], "exists",
                               rows=int(done.get("n_rows") or 0), message="a complete run exists for this day")
    serving = serving_model(store, settings, champion)
    version, model = serving.version, serving.model
    horizon = settings.forecast_horizon
    variables = list(model.scalers.forcing_names)
    check_forcing_consistency(variables, inputs.forcing)
    ready, sites = prepare_forecast_forcing(inputs, cycle, horizon, variables)
    run_id = run_id_for(cycle.issue, version) + (f"-{run_suffix}" if run_suffix else "")
    store.start_forecast_run(cycle.issue, version, run_id=run_id, input_freshness=_jsonable(ready.freshness),
                             validation=_jsonable(validation or {}), stale_forcing=ready.stale_forcing)
    try:
        if not sites:
            raise ModelError("no site has both observations and forcing for this forecast")
        forcing = ready.forcing.drop(columns=["forcing_kind"], errors="ignore")
        frame = predict_forecast(model, ready.observations, forcing, ready.sites, cycle.issue, horizon)
        written = store.write_forecasts(frame, run_id=run_id, model_version=version)
    except (InputError, ModelError, ValueError) as exc:
        store.finish_forecast_run(run_id, status="failed", message=str(exc)[:2000])
        raise
    message = "stale forcing: see input_freshness.stale_forcing_reason" if ready.stale_forcing else None
    free = ready.freshness.get("runs_free") or []
    if free:  # every sensor of these depths is excluded: the forecast there has no observed state
        message = "; ".join(m for m in (message, "runs free (no observed state): " + ", ".join(
            f"{f['site']} {f['depth_cm']:g} cm since {str(f['since'])[:10]}" for f in free)) if m)
    if serving.fallback_from:
        message = "; ".join(m for m in (message, f"champion {serving.fallback_from} cannot be loaded: "
                                                 f"served by {version}") if m)
    store.finish_forecast_run(run_id, status="complete", message=message)
    log.info("forecast %s: %d rows (%s new) for %d series", run_id, len(frame), getattr(written, "inserted", "?"),
             frame[["site", "depth_cm"]].drop_duplicates().shape[0])
    return ForecastOutcome(run_id, cycle.issue.isoformat(), version, "complete", rows=len(frame),
                           series=int(frame[["site", "depth_cm"]].drop_duplicates().shape[0]),
                           stale_forcing=ready.stale_forcing, freshness=ready.freshness, message=message,
                           fallback_from=serving.fallback_from, fallback_error=serving.error)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return value
