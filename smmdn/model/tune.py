"""``smmdn tune``: search a preset's settings with Optuna on rolling-origin folds inside the training period.

Why folds, not the test period: every choice must be made on windows before the training end (the test
period is read only for scoring, docs/results.md). Here the observations are cut at ``train_end`` before
anything else happens; fold ``i`` trains on everything before its origin and is scored (forecast mode:
daily issues, leads 1..horizon, the state seen up to each issue; simulation mode: a free run) on the
``fold_days`` after it; the last fold ends at ``train_end``. A trial's value is the mean CRPS over its
folds, reported fold by fold so the median pruner stops a trial that is already worse than the median of
earlier trials at the same fold. TPE samples the preset's ``search_space``; the preset's own settings are
the first trial, so the study always says how the preset itself scored.

Outputs in ``out``: ``study.jsonl`` (Optuna's journal storage: reload it with ``optuna.load_study``),
``summary.json`` (folds, every trial with its state, fold scores and settings, the best one), and
``preset.json``: the preset file with the best settings and the study's summary, ready to be committed
under ``smmdn/model/preset_files/`` (its ``backtest`` is null until the backtest is run on it).

Optuna is imported here only (an optional extra: ``pip install -c constraints.txt -e .[tune]``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from smmdn.errors import InputError, ModelError
from smmdn.model.presets import PRODUCTION, config_hash, load_preset, preset_config

log = logging.getLogger(__name__)


@dataclass
class TuneOptions:
    train_end: str  # nothing at or after it is read (for a backtest: its --test-start)
    out: str
    preset: str = PRODUCTION
    trials: int = 20
    folds: int = 3
    fold_days: int = 28
    seed: int = 0
    timeout_s: float | None = None
    fixed: dict = field(default_factory=dict)  # settings held fixed on top of the preset (e.g. max_epochs)


def fold_windows(train_end: pd.Timestamp, folds: int, fold_days: int) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Rolling origins: ``folds`` back-to-back windows of ``fold_days`` ending at ``train_end``, oldest first."""
    if folds < 1 or fold_days < 1:
        raise InputError("folds and fold days must be at least 1", where="--folds/--fold-days")
    step = pd.Timedelta(days=fold_days)
    return [(train_end - (folds - i) * step, train_end - (folds - i - 1) * step) for i in range(folds)]


def suggest(trial: Any, space: dict[str, dict]) -> dict[str, Any]:
    """One value per setting of the search space: ``choices`` (categorical) or ``low``/``high`` (``log``)."""
    values: dict[str, Any] = {}
    for name, spec in space.items():
        if "choices" in spec:
            values[name] = trial.suggest_categorical(name, list(spec["choices"]))
        elif isinstance(spec["low"], int) and isinstance(spec["high"], int) and not spec.get("log"):
            values[name] = trial.suggest_int(name, spec["low"], spec["high"])
        else:
            values[name] = trial.suggest_float(name, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log")))
    return values


def _before(frame: pd.DataFrame, end: pd.Timestamp) -> pd.DataFrame:
    times = pd.to_datetime(frame["time"], utc=True, format="ISO8601")
    return frame.loc[(times < end).to_numpy()].reset_index(drop=True)


def run_study(observations: pd.DataFrame, forcing: pd.DataFrame, sites: pd.DataFrame | None,
              options: TuneOptions) -> dict[str, Any]:
    """Run the study; writes ``study.jsonl``, ``summary.json`` and ``preset.json`` into ``options.out``."""
    try:
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
    except ImportError as exc:  # an optional extra
        raise InputError("smmdn tune needs Optuna", where="smmdn tune",
                         fix="pip install -c constraints.txt -e '.[tune]'") from exc
    from smmdn.model.api import fit, score_window, to_utc

    try:
        preset = load_preset(options.preset)
        base = preset_config(options.preset, **options.fixed, seed=options.seed)
    except ValueError as exc:
        raise InputError(str(exc), where="--preset/--set") from exc
    space = {k: v for k, v in (preset.get("search_space") or {}).items() if k not in options.fixed}
    if not space:
        raise InputError(f"preset {options.preset!r} has no search_space", where="preset file",
                         fix="add a search_space to the preset file")
    end = to_utc(options.train_end)
    obs, frc = _before(observations, end), forcing  # forcing after train_end: inputs of the last fold's issues
    windows = fold_windows(end, options.folds, options.fold_days)
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    journal = out / "study.jsonl"
    journal.unlink(missing_ok=True)  # one study per directory: a rerun starts afresh
    storage = JournalStorage(JournalFileBackend(str(journal)))
    study = optuna.create_study(
        study_name=f"{options.preset}-{end.date()}", storage=storage, direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=options.seed, n_startup_trials=min(5, max(options.trials - 1, 1))),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0))
    study.enqueue_trial({k: base.to_dict()[k] for k in space})  # the preset as it is: trial 0

    def objective(trial: Any) -> float:
        params = suggest(trial, space)
        cfg = preset_config(options.preset, **{**params, **options.fixed, "seed": options.seed})
        scores: list[float] = []
        for i, (origin, fold_end) in enumerate(windows):
            try:
                model = fit(obs, frc, sites, cfg, train_end=origin, seed=options.seed)
                crps = float(score_window(model, _before(obs, fold_end), frc, sites, origin, fold_end,
                                          horizon=cfg.horizon)["crps"])
            except ModelError as exc:  # a diverging setting is a bad setting, not a failed study
                trial.set_user_attr("error", str(exc))
                return math.inf
            scores.append(crps)
            trial.set_user_attr("fold_crps", scores)
            trial.report(float(np.mean(scores)), i)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(np.mean(scores))

    started = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=options.trials, timeout=options.timeout_s)
    summary = _summary(study, options, windows, base, space, time.perf_counter() - started)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
    chosen = {**preset, "settings": {**preset["settings"], **summary["best"]["settings"]},
              "chosen_by": f"smmdn tune ({summary['study']}, {summary['n_complete']} complete trials)",
              "study": summary, "backtest": None}
    (out / "preset.json").write_text(json.dumps(chosen, indent=2, default=str) + "\n", encoding="utf-8")
    return summary


def _summary(study: Any, options: TuneOptions, windows: list, base: Any, space: dict, seconds: float) -> dict:
    import optuna

    trials = []
    for t in study.trials:
        trials.append({"number": t.number, "state": t.state.name, "value": t.value, "settings": t.params,
                       "fold_crps": t.user_attrs.get("fold_crps"), "error": t.user_attrs.get("error")})
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and math.isfinite(t.value)]
    if not complete:
        raise ModelError("no trial completed: nothing to choose (see summary trials for the errors)")
    best = min(complete, key=lambda t: t.value)
    first = study.trials[0]
    best_cfg = preset_config(options.preset, **{**best.params, **options.fixed})
    return {
        "study": study.study_name, "sampler": "TPE", "pruner": "median (per fold)",
        "train_end": options.train_end, "folds": [[str(a.date()), str(b.date())] for a, b in windows],
        "fold_days": options.fold_days, "score": "mean CRPS (m3/m3) over folds", "fixed": options.fixed,
        "search_space": space, "seed": options.seed, "seconds": seconds,
        "n_trials": len(trials), "n_complete": len(complete),
        "n_pruned": sum(t["state"] == "PRUNED" for t in trials),
        "preset_value": first.value if first.state == optuna.trial.TrialState.COMPLETE else None,
        "best": {"number": best.number, "value": best.value, "settings": best.params,
                 "config_hash": config_hash(best_cfg), "preset_hash": config_hash(base)},
        "trials": trials,
    }


__all__ = ["TuneOptions", "fold_windows", "run_study", "suggest"]
