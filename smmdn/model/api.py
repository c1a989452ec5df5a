"""High-level model API for flows and the CLI: frames in, a ``TrainedModel`` or frames out.

```python
from smmdn.model import fit, fine_tune, load_model, predict_forecast, predict_simulation, score_window

model = fit(obs, forcing, sites, TrainConfig(mode="forecast"), train_end="2024-06-01", seed=1)
model.save("models/2024-06-01")                       # weights.pt + JSON config/scalers/metrics
model = load_model("models/2024-06-01")                # torch.load(weights_only=True)
tuned = fine_tune(model, obs, forcing, sites, train_end="2024-06-08")  # frozen scalers, low LR
fc = predict_forecast(tuned, obs, forcing, sites, issue_time="2024-06-08", horizon=7)
champion_crps = score_window(model, obs, forcing, sites, start="2024-05-25", end="2024-06-08")["crps"]
```

Frames are the canonical ones (``smmdn.schema``): observations (time, site, depth_cm, sensor, vwc),
forcing (time, site, numeric variables), sites (site, latitude, longitude, elevation_m, ...).
``predict_forecast`` returns one row per (site, depth_cm, lead) — replicate sensors share one mixture —
with columns site, depth_cm, issue_time, valid_time, lead, weight_k, mean_k, sigma_k, mean, sd,
q05, q25, q50, q75, q95 (m3/m3). Training raises ``smmdn.errors.ModelError`` on a NaN loss: the caller
keeps its previous model.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterable

import numpy as np
import pandas as pd

from smmdn.errors import InputError, ModelError
from smmdn.model.calibrate import Calibration, distance_factors, location_factors
from smmdn.model.checkpoint import TrainedModel, fingerprint
from smmdn.model.data import (
    Panel,
    Prepared,
    build_panel,
    fit_scalers,
    gather,
    n_steps_per_day,
    prepare,
    without_derived,
)
from smmdn.model.levels import SeriesCorrection, apply_correction, correction_from_stats, validation_stats
from smmdn.model.mixture import mixture_crps, summarise
from smmdn.model.network import MixtureEnsemble
from smmdn.model.predict import forecast_issues, simulate
from smmdn.model.train import (
    TrainConfig,
    calibrate_spread,
    pick_device,
    train_members,
    train_network,
    validation_score,
)
from smmdn.schema import mixture_columns

log = logging.getLogger(__name__)
TimeLike = str | pd.Timestamp


def to_utc(value: TimeLike) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _before(frame: pd.DataFrame, end: pd.Timestamp, where: str) -> pd.DataFrame:
    from smmdn.schema import parse_times

    times = parse_times(frame["time"], where)
    return frame.loc[(times < end).to_numpy()]


def fit(
    observations: pd.DataFrame,
    forcing: pd.DataFrame,
    sites: pd.DataFrame | None = None,
    config: TrainConfig | None = None,
    *,
    train_end: TimeLike,
    test_sites: Iterable[str] = (),
    seed: int | None = None,
) -> TrainedModel:
    """Train on everything strictly before ``train_end`` (validation: its last ``validation_steps``).

    Steps: scalers on the fitting window -> train with early stopping on the validation window ->
    spread factor fitted on the validation window -> (``refit``) retrain on fitting + validation window
    for the chosen number of epochs with scalers refitted on it. ``test_sites`` are left out entirely.
    """
    cfg = copy.copy(config or TrainConfig())
    if seed is not None:
        cfg.seed = seed
    end = to_utc(train_end)
    started = time.perf_counter()
    obs = _before(observations, end, "observations")
    if obs.empty:
        raise InputError("no observations before the training end", where="observations", column="time",
                         fix=f"give observations before {end.date()}")
    panel = build_panel(obs, forcing, sites)
    panel = without_derived(panel, cfg.feature_groups if cfg.features else ())
    t_end = panel.index_of(end)
    excluded = {str(s) for s in test_sites}
    train_locs = np.array([i for i, s in enumerate(panel.locations["site"]) if str(s) not in excluded], dtype=int)
    if len(train_locs) == 0:
        raise InputError("every site is a test site: nothing to train on", where="--test-sites")
    v1 = t_end
    n_valid = validation_steps(cfg, panel, train_locs, t_end)
    v0 = v1 - n_valid
    use_valid = n_valid > 0 and v0 >= cfg.warmup + max(10, n_valid // 2)
    history: dict = {}
    cal = Calibration()
    correction = SeriesCorrection()
    device = pick_device(cfg.device)
    if use_valid:
        scalers = fit_scalers(panel, v0, train_locs, min_obs=cfg.min_train_obs, sd_floor=cfg.sd_floor)
        prep = prepare(panel, scalers)
        net, history = train_members(prep, train_locs, 0, v0, cfg, valid=(v0, v1),
                                     n_locations=len(scalers.location_index))
        history["valid_steps"] = n_valid
        if cfg.calibrate:
            cal = calibrate_spread(net, prep, train_locs, v0, v1, cfg, device, keys=panel.keys,
                                   steps_per_day=n_steps_per_day(panel))
            history["valid_crps_calibrated"] = validation_score(
                net, prep, train_locs, v0, v1, cfg, device, _valid_factors(cal, v1 - v0))
        if _corrects(cfg):
            correction = SeriesCorrection(stats=_validation_stats(net, prep, panel, train_locs, v0, v1, cfg, device))
    if not use_valid or cfg.refit:
        epochs = history.get("member_best_epochs") or [cfg.max_epochs] * cfg.members
        scalers = fit_scalers(panel, v1, train_locs, min_obs=cfg.min_train_obs, sd_floor=cfg.sd_floor)
        prep = prepare(panel, scalers)
        net, refit_hist = train_members(prep, train_locs, 0, v1, cfg, epochs=[max(e or 1, 1) for e in epochs],
                                        n_locations=len(scalers.location_index))
        history["refit"] = {k: refit_hist[k] for k in ("epochs_run", "sequences_per_s")}
        history["refit_train_loss"] = refit_hist["train_loss"][-1]
        if not use_valid:
            history.update({k: refit_hist[k] for k in ("sequences_per_s", "epochs_run", "train_loss")})
    if _corrects(cfg):
        correction = correction_from_stats(correction.stats, prior_steps=cfg.level_prior_steps,
                                           cap_floor=cfg.anomaly_cap_floor, location_stats=scalers.location_stats,
                                           range_margin=cfg.range_margin)
        history["correction"] = _correction_summary(correction)
    history["spread"] = cal.overall
    history["spread_per_lead"] = cal.per_lead
    history["spread_by_distance"] = cal.by_distance
    if cal.per_location:
        f = np.array(list(cal.per_location.values()))
        history["spread_per_location_quantiles"] = np.quantile(f, [0.1, 0.5, 0.9]).tolist()
    history["train_seconds"] = time.perf_counter() - started
    history["forcing_report"] = panel.report
    return TrainedModel(
        network=net.cpu(), config=cfg, scalers=scalers, spread=cal.overall, spread_per_lead=cal.per_lead,
        spread_per_location=cal.per_location, spread_by_distance=cal.by_distance,
        spread_distance_block=cal.distance_block, correction=correction, metrics={"training": history},
        fingerprint={**fingerprint(obs, forcing, sites), "train_end": str(end)},
    )


def _corrects(cfg: TrainConfig) -> bool:
    """Whether the per-series mean corrections of ``model.levels`` are on (simulation mode only)."""
    knobs = (cfg.level_prior_steps, cfg.anomaly_cap_floor, cfg.range_margin)
    return not cfg.with_state and any(k is not None for k in knobs)


def _validation_stats(net, prep: Prepared, panel: Panel, locs: np.ndarray, v0: int, v1: int, cfg: TrainConfig,
                      device) -> dict[str, list[float]]:
    """Per-series validation statistics (``model.levels.validation_stats``) of the simulation of the
    validation window by the network trained before it: out of sample, as the test period will be."""
    w, mu, _ = simulate(net, prep, locs, v0, v1, cfg.seq_len, cfg.sigma_floor, device, False)
    return validation_stats(np.sum(w * mu, axis=-1), panel.targets[locs, v0:v1], [panel.keys[i] for i in locs])


def _correction_summary(correction: SeriesCorrection) -> dict:
    """Quantiles (10, 50, 90 %) of the fitted corrections, for metrics.json."""
    out: dict = {}
    parts = (("offset", correction.offset), ("anomaly_scale", correction.anomaly_scale),
             ("bounds_width", {k: hi - lo for k, (lo, hi) in correction.bounds.items()}))
    for name, values in parts:
        if values:
            out[name] = {"n": len(values), "quantiles": np.quantile(list(values.values()), [0.1, 0.5, 0.9]).tolist()}
    return out


def validation_steps(cfg: TrainConfig, panel: Panel, train_locs: np.ndarray, t_end: int) -> int:
    """Length of the validation window: ``valid_steps``, or ``valid_fraction`` of the span from the first
    training observation to ``t_end`` when that is longer (capped at ``valid_max_steps``)."""
    if cfg.valid_steps <= 0 or cfg.valid_fraction <= 0:
        return max(cfg.valid_steps, 0)
    observed = np.isfinite(panel.targets[train_locs, :t_end]).any(axis=(0, 2))
    first = int(np.argmax(observed)) if observed.any() else t_end
    share = min(round(cfg.valid_fraction * (t_end - first)), cfg.valid_max_steps)
    return max(cfg.valid_steps, share)


def _valid_factors(cal: Calibration, n_steps: int) -> float | np.ndarray:
    """The calibration's factors over a validation window of ``n_steps`` (per lead or per distance)."""
    if cal.per_lead:
        return np.array(cal.per_lead)
    if cal.by_distance:
        return distance_factors(cal.by_distance, cal.distance_block, np.arange(1, n_steps + 1))
    return cal.overall


def fine_tune(
    model: TrainedModel,
    observations: pd.DataFrame,
    forcing: pd.DataFrame,
    sites: pd.DataFrame | None = None,
    *,
    train_end: TimeLike | None = None,
    recent_steps: int | None = None,
    epochs: int | None = None,
    lr: float | None = None,
    exclude_sites: Iterable[str] = (),
) -> TrainedModel:
    """Warm start from ``model``: frozen scalers, lower LR, few epochs on the most recent data.

    Returns a new model; ``model`` is left untouched (the caller decides which one to promote).
    """
    cfg = copy.copy(model.config)
    obs = observations if train_end is None else _before(observations, to_utc(train_end), "observations")
    panel = build_panel(obs, forcing, sites)
    t_end = len(panel.times) if train_end is None else panel.index_of(to_utc(train_end))
    recent = recent_steps or max(cfg.seq_len * 2, cfg.valid_steps)
    t_lo = max(0, t_end - recent)
    prep = prepare(panel, model.scalers)
    net = copy.deepcopy(model.network)
    excluded = {str(s) for s in exclude_sites}
    locs = np.array([i for i, s in enumerate(panel.locations["site"]) if str(s) not in excluded], dtype=int)
    members = list(net.members) if isinstance(net, MixtureEnsemble) else [net]
    tuned_members, history = [], {}
    for member in members:  # each member on its own likelihood, as it was trained
        tuned, history = train_network(
            prep, locs, t_lo, t_end, cfg, net=member, lr=lr or cfg.fine_tune_lr,
            epochs=epochs or cfg.fine_tune_epochs,
        )
        tuned_members.append(tuned)
    tuned_net = MixtureEnsemble(tuned_members) if isinstance(net, MixtureEnsemble) else tuned_members[0]
    metrics = {**model.metrics, "fine_tune": {k: history[k] for k in ("train_loss", "epochs_run")}}
    return TrainedModel(
        network=tuned_net.cpu(), config=cfg, scalers=model.scalers, spread=model.spread,
        spread_per_lead=list(model.spread_per_lead), spread_per_location=dict(model.spread_per_location),
        spread_by_distance=list(model.spread_by_distance), spread_distance_block=model.spread_distance_block,
        correction=model.correction, metrics=metrics,
        fingerprint={**fingerprint(obs, forcing, sites), "fine_tuned_from": model.fingerprint.get("sha256"),
                     "train_end": str(to_utc(train_end)) if train_end is not None else _after_last(panel)},
    )


def _after_last(panel: Panel) -> str:
    """The step after the panel's last one: the training end of a model trained on all of it."""
    step = panel.times[1] - panel.times[0] if len(panel.times) > 1 else pd.Timedelta(days=1)
    return str(panel.times[-1] + step)


def mixture_frame(w: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> pd.DataFrame:
    """Rows of mixtures (N, K) -> weight_k/mean_k/sigma_k + mean, sd, q05..q95 columns."""
    k = w.shape[-1]
    data = np.concatenate([w, mu, sigma], axis=1)
    frame = pd.DataFrame(data, columns=mixture_columns(k))
    for name, values in summarise(w, mu, sigma).items():
        frame[name] = values
    return frame


def prepared_for(model: TrainedModel, observations: pd.DataFrame, forcing: pd.DataFrame,
                 sites: pd.DataFrame | None) -> tuple[Panel, Prepared]:
    panel = build_panel(observations, forcing, sites)
    return panel, prepare(panel, model.scalers)


def simulate_panel(model: TrainedModel, panel: Panel, prep: Prepared, t0: int, t1: int) -> tuple[np.ndarray, ...]:
    """Physical mixtures (L, t1 - t0, K) for every location of ``panel`` over steps ``[t0, t1)``."""
    cfg = model.config
    locs = np.arange(len(panel.locations))
    factors = spread_factors(model, panel.keys)[:, None] * simulation_distance_factors(model, panel, t0, t1)[None, :]
    w, mu, sg = simulate(model.network, prep, locs, t0, t1, cfg.seq_len, cfg.sigma_floor, pick_device("cpu"),
                         cfg.with_state, factors, residual=cfg.residual)
    if model.correction and not cfg.with_state:
        mu = apply_correction(w, mu, panel.keys, prep.loc, model.correction)
    return w, mu, sg


def simulation_distance_factors(model: TrainedModel, panel: Panel, t0: int, t1: int) -> np.ndarray:
    """``(t1 - t0,)`` multipliers of the overall spread for steps after the model's training end (1 when
    the model has no per-distance factors or no recorded training end)."""
    end = model.fingerprint.get("train_end")
    if not model.spread_by_distance or not end or model.spread <= 0:
        return np.ones(t1 - t0)
    first_after = panel.index_of(to_utc(end))  # first step at or after the training end
    steps_after = np.arange(t0, t1) - first_after + 1
    by = distance_factors(model.spread_by_distance, model.spread_distance_block, steps_after)
    return by / model.spread


def spread_factors(model: TrainedModel, keys: list[str]) -> np.ndarray:
    """Network-wide spread factor, or each location's own where one was fitted; ``(L,)``."""
    return location_factors(keys, model.spread_per_location, model.spread)


def forecast_panel(
    model: TrainedModel, prep: Prepared, locations: np.ndarray, issues: np.ndarray, horizon: int,
    keys: list[str] | None = None,
) -> tuple[np.ndarray, ...]:
    """Physical mixtures (n, horizon, K) for (location, issue index) pairs (``keys``: the panel's
    location keys, for per-location spread factors)."""
    cfg = model.config
    if not cfg.with_state:
        # a simulation model ignores observations: run windows without the state channel
        start = issues + 1
        out = [simulate(model.network, prep, np.array([loc]), s, s + horizon, cfg.seq_len, cfg.sigma_floor,
                        pick_device("cpu"), False, model.spread) for loc, s in zip(locations, start, strict=True)]
        if not out:
            empty = np.zeros((0, horizon, model.components))
            return empty, empty, empty
        return tuple(np.concatenate([o[j] for o in out]) for j in range(3))
    lead = np.array(model.spread_per_lead or [model.spread], dtype=np.float64)
    lead = np.concatenate([lead, np.repeat(lead[-1:], max(horizon - len(lead), 0))])[:horizon]
    spread = lead[None, :]
    if keys is not None and model.spread_per_location:  # per-location factor relative to the overall one
        spread = spread * (spread_factors(model, keys)[locations] / model.spread)[:, None]
    return forecast_issues(model.network, prep, locations, issues, horizon, cfg.seq_len, cfg.sigma_floor,
                           pick_device("cpu"), spread, residual=cfg.residual)


def predict_simulation(
    model: TrainedModel, observations: pd.DataFrame, forcing: pd.DataFrame, sites: pd.DataFrame | None,
    start: TimeLike, end: TimeLike,
) -> pd.DataFrame:
    """Simulation-mode mixtures per (site, depth_cm, time) for ``start <= time < end`` (forcing only)."""
    panel, prep = prepared_for(model, observations, forcing, sites)
    t0, t1 = panel.index_of(to_utc(start)), panel.index_of(to_utc(end))
    w, mu, sg = simulate_panel(model, panel, prep, t0, t1)
    n_l, n_t, k = w.shape
    frame = mixture_frame(w.reshape(-1, k), mu.reshape(-1, k), sg.reshape(-1, k))
    frame.insert(0, "time", np.tile(panel.times[t0:t1], n_l))
    frame.insert(0, "depth_cm", np.repeat(panel.locations["depth_cm"].to_numpy(), n_t))
    frame.insert(0, "site", np.repeat(panel.locations["site"].astype(str).to_numpy(), n_t))
    return frame


def predict_forecast(
    model: TrainedModel, observations: pd.DataFrame, forcing: pd.DataFrame, sites: pd.DataFrame | None,
    issue_time: TimeLike, horizon: int,
) -> pd.DataFrame:
    """Forecast issued at ``issue_time`` (observations up to it, forcing through ``issue + horizon``)."""
    issue = to_utc(issue_time)
    obs = observations.loc[(pd.to_datetime(observations["time"], utc=True, format="ISO8601") <= issue).to_numpy()]
    panel, prep = prepared_for(model, obs, forcing, sites)
    if issue not in panel.times:
        raise InputError(f"issue time {issue} is not on the forcing's time grid", where="forcing", column="time",
                         fix="give forcing covering the issue time")
    i = panel.times.get_loc(issue)
    if i + horizon >= len(panel.times):
        raise InputError(
            f"forcing ends at {panel.times[-1]}, before issue time + {horizon} steps", where="forcing",
            column="time", fix="extend the forecast forcing through the horizon",
        )
    locs = np.arange(len(panel.locations))
    w, mu, sg = forecast_panel(model, prep, locs, np.full(len(locs), i), horizon, keys=panel.keys)
    k = w.shape[-1]
    frame = mixture_frame(w.reshape(-1, k), mu.reshape(-1, k), sg.reshape(-1, k))
    leads = np.tile(np.arange(1, horizon + 1), len(locs))
    frame.insert(0, "lead", leads)
    frame.insert(0, "valid_time", panel.times[i + leads])
    frame.insert(0, "issue_time", issue)
    frame.insert(0, "depth_cm", np.repeat(panel.locations["depth_cm"].to_numpy(), horizon))
    frame.insert(0, "site", np.repeat(panel.locations["site"].astype(str).to_numpy(), horizon))
    return frame


def score_window(
    model: TrainedModel, observations: pd.DataFrame, forcing: pd.DataFrame, sites: pd.DataFrame | None,
    start: TimeLike, end: TimeLike, *, horizon: int | None = None,
) -> dict:
    """Mean CRPS (m3/m3) over observations in ``[start, end)``: the champion/challenger criterion.

    Forecast-mode models are scored on forecasts issued every step of the window (leads 1..horizon,
    observations seen up to each issue); simulation models on a simulation of the window.
    """
    panel, prep = prepared_for(model, observations, forcing, sites)
    t0, t1 = panel.index_of(to_utc(start)), panel.index_of(to_utc(end))
    if t1 <= t0:
        raise InputError("empty scoring window", where="score_window", fix="give start < end inside the forcing")
    if model.config.with_state:
        h = horizon or model.config.horizon
        issues_per = np.arange(t0 - 1, t1 - h)
        if len(issues_per) == 0:
            raise InputError("scoring window shorter than the horizon", where="score_window")
        locs = np.repeat(np.arange(len(panel.locations)), len(issues_per))
        issues = np.tile(issues_per, len(panel.locations))
        w, mu, sg = forecast_panel(model, prep, locs, issues, h, keys=panel.keys)
        y = gather(panel.targets, locs, issues + 1, h)
    else:
        w, mu, sg = simulate_panel(model, panel, prep, t0, t1)
        y = panel.targets[:, t0:t1]
    ok = ~np.isnan(y)
    if not ok.any():
        raise ModelError("no observations in the scoring window")
    idx = np.nonzero(ok)
    crps = mixture_crps(y[ok], w[idx[:-1]], mu[idx[:-1]], sg[idx[:-1]])
    return {"crps": float(np.mean(crps)), "n": int(ok.sum())}
