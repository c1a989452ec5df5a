"""Champion / challenger: train (full or fine-tune), judge on the held-out window, promote or keep.

Rules (every training run, cold start included):
- the last ``Settings.holdout_days`` days before the cycle's data end are never trained on;
- a challenger is promoted only if training finished without NaNs (no ``ModelError``, finite weights,
  finite held-out CRPS) and its CRPS on the held-out window is no worse than the champion's on the
  same window, within ``Settings.promotion_tolerance`` (relative);
- otherwise it is registered as ``rejected`` with the reason, the champion keeps forecasting, and the
  outcome says why (the flows log it at WARNING and put it in the run's summary artifact).

Versions are deterministic per day and kind (``full-20240601``), so rerunning a day does not train
twice: an existing version is reported, not retrained.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from smmdn.config import Settings
from smmdn.cycle.day import CycleDay
from smmdn.cycle.inputs import CycleInputs
from smmdn.cycle.plan import record_full_retrain
from smmdn.errors import InputError, ModelError

if TYPE_CHECKING:
    from smmdn.store import Store

log = logging.getLogger(__name__)

DEFAULT_TRAIN = {"progress": False}  # on top of the production preset (smmdn/model/preset_files/production.json)


@dataclass
class Judgement:
    promote: bool
    reason: str


def judge(challenger_crps: float | None, champion_crps: float | None, tolerance: float,
          training_error: str | None = None) -> Judgement:
    """The promotion rule, pure (no I/O) so every branch is unit-tested."""
    if training_error:
        return Judgement(False, f"training failed: {training_error}")
    if challenger_crps is None or not math.isfinite(challenger_crps):
        return Judgement(False, f"challenger held-out CRPS is {challenger_crps} (NaN or missing)")
    if champion_crps is None or not math.isfinite(champion_crps):
        return Judgement(True, "no comparable champion: first model")
    limit = champion_crps * (1.0 + tolerance)
    if challenger_crps <= limit:
        return Judgement(True, f"held-out CRPS {challenger_crps:.5f} <= champion {champion_crps:.5f}"
                               f" (tolerance {tolerance:.1%})")
    change = challenger_crps / champion_crps - 1.0 if champion_crps else float("inf")
    return Judgement(False, f"held-out CRPS {challenger_crps:.5f} worse than champion {champion_crps:.5f}"
                            f" ({change:+.2%}, tolerance {tolerance:.1%}); champion kept")


@dataclass
class TrainOutcome:
    """What a training run did (JSON-able: it is the ``train`` flow's persisted result)."""

    version: str
    kind: str
    status: str  # promoted | rejected | exists | skipped
    reason: str
    champion: str | None
    challenger_crps: float | None = None
    champion_crps: float | None = None
    holdout: list[str] = field(default_factory=list)
    train_seconds: float | None = None
    artifact_uri: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def version_name(kind: str, cycle: CycleDay) -> str:
    return f"{kind}-{cycle.issue:%Y%m%d}"


def train_config(settings: Settings, overrides: dict | None = None) -> Any:
    from smmdn.model.presets import PRODUCTION, preset_config

    values = {**DEFAULT_TRAIN, "components": settings.mixture_components, "sigma_floor": settings.sigma_floor,
              "horizon": settings.forecast_horizon, **(overrides or {})}
    return preset_config(PRODUCTION, **values)


def has_nan_weights(model: Any) -> bool:
    import torch

    return any(not bool(torch.isfinite(p).all()) for p in model.network.state_dict().values())


def _score(model: Any, inputs: CycleInputs, start: pd.Timestamp, end: pd.Timestamp, horizon: int) -> float | None:
    from smmdn.model import score_window

    try:
        return float(score_window(model, inputs.observations, inputs.forcing, inputs.sites, start, end,
                                  horizon=horizon)["crps"])
    except (InputError, ModelError) as exc:
        log.warning("cannot score on the held-out window: %s", exc)
        return None


def _fit(kind: str, champion_model: Any, inputs: CycleInputs, train_end: pd.Timestamp, config: Any) -> Any:
    """Training itself, isolated so tests can substitute a diverging run."""
    from smmdn.model import fine_tune, fit

    if kind == "fine-tune":
        return fine_tune(champion_model, inputs.observations, inputs.forcing, inputs.sites, train_end=train_end,
                         epochs=config.fine_tune_epochs, lr=config.fine_tune_lr)
    return fit(inputs.observations, inputs.forcing, inputs.sites, config, train_end=train_end, seed=config.seed)


def _provenance(model: Any, config: Any) -> dict:
    """Preset, config hash and the preset's backtest figures of what was trained (a fine-tune keeps its
    champion's config)."""
    from smmdn.model.presets import provenance

    return provenance(model.config if model is not None else config)


def train_and_judge(store: Store, settings: Settings, inputs: CycleInputs, cycle: CycleDay, kind: str,
                    overrides: dict | None = None) -> TrainOutcome:
    """Train a challenger of ``kind`` for ``cycle``, judge it against the champion, register the outcome."""
    from smmdn.cycle.serving import serving_model
    from smmdn.modelfiles import save_model

    version = version_name(kind, cycle)
    champion = store.champion()
    champion_name = champion["version"] if champion else None
    holdout_start, holdout_end = cycle.holdout_start(settings), cycle.data_end
    window = [holdout_start.isoformat(), holdout_end.isoformat()]
    known = store.model_versions()
    same_day = known.loc[known["version"].str.endswith(f"-{cycle.issue:%Y%m%d}")] if not known.empty else known
    if not same_day.empty:  # this day already trained (any kind): a rerun reports it, does not retrain
        row = same_day.iloc[-1]
        version, kind = row["version"], row["kind"]
        if row["status"] == "challenger":  # judged promotable, then the run died before promote(): finish it
            store.promote(version, note=f"{row['note']} (promotion completed by a rerun)")
            champion_name = version
        return TrainOutcome(version, kind, "exists", f"already trained ({row['status']}); not retrained",
                            champion_name, holdout=window, artifact_uri=row["artifact_uri"])
    champion_model = serving_model(store, settings, champion).model if champion else None  # previous good if need be
    if kind == "fine-tune" and champion_model is None:
        kind, version = "full", version_name("full", cycle)
    config = train_config(settings, overrides)
    horizon = settings.forecast_horizon
    started = time.perf_counter()
    error: str | None = None
    model = None
    try:
        model = _fit(kind, champion_model, inputs, holdout_start, config)
        if has_nan_weights(model):
            error = "NaN in the trained weights"
    except ModelError as exc:
        error = str(exc) or "NaN loss"
    seconds = time.perf_counter() - started
    challenger_crps = _score(model, inputs, holdout_start, holdout_end, horizon) if error is None else None
    champion_crps = (_score(champion_model, inputs, holdout_start, holdout_end, horizon)
                     if champion_model is not None else None)
    verdict = judge(challenger_crps, champion_crps, settings.promotion_tolerance, error)
    metrics = {"holdout_crps": challenger_crps, "champion_holdout_crps": champion_crps, "holdout": window,
               "train_seconds": seconds, "decision": verdict.reason, **_provenance(model, config),
               # which sensors and periods this version never saw (under a fault alert; smmdn.cycle.inputs)
               "excluded_sensors": list(inputs.freshness.get("excluded_sensors") or [])}
    uri = save_model(model, settings, version) if model is not None and error is None else ""
    store.register_model_version(
        version, kind=kind, artifact_uri=uri, parent=champion_name if kind == "fine-tune" else None,
        train_start=inputs.observations["time"].min() if not inputs.observations.empty else None,
        train_end=holdout_start, metrics=metrics, status="challenger" if verdict.promote else "rejected",
        note=verdict.reason)
    if verdict.promote:
        store.promote(version, note=verdict.reason)
        status = "promoted"
    else:
        status = "rejected"  # routine, not a warning: most fine-tunes change little
    log.info("challenger %s %s: %s", version, status, verdict.reason)
    if kind == "full":
        record_full_retrain(store, cycle.now)
    return TrainOutcome(version, kind, status, verdict.reason, store.champion()["version"] if store.champion()
                        else None, challenger_crps, champion_crps, window, seconds, uri or None)
