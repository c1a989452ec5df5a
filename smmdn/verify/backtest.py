"""Backtest: train before a test start, predict the test period with the forcing given ("observed
weather"), score every series against the mixture and against climatology and persistence baselines.

This is a stable contract (``smmdn backtest``): outside checks run it on data we never see. Outputs:
``metrics.json`` (overall median/mean, per_series, baselines, per_lead in forecast mode) and
``predictions.csv`` (time, site, depth_cm, sensor, observed, mean, sd, q05..q95, weight_k, mean_k,
sigma_k, plus issue_time and lead in forecast mode). Nothing from the test period is used for fitting,
early stopping or calibration; test sites (``test_sites``) are predicted ungauged.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from smmdn.errors import InputError
from smmdn.model.mixture import central_interval
from smmdn.schema import QUANTILE_LEVELS, format_times, mixture_columns, normalise_observations
from smmdn.verify.metrics import (
    METRIC_KEYS,
    climatology,
    gaussian_scores,
    kge_tail,
    persistence_sd,
    series_scores,
    skill_vs_persistence,
    summarise_scores,
)

log = logging.getLogger(__name__)
FORCING_LABEL = "observed weather"


@dataclass
class BacktestOptions:
    test_start: str
    test_end: str | None = None
    test_sites: list[str] = field(default_factory=list)
    mode: str = "simulation"
    horizon: int = 7
    seed: int = 0
    max_epochs: int | None = None
    init_model: str | None = None
    min_test_obs: int | None = None
    progress: bool = False
    save_model: str | None = None
    config_overrides: dict = field(default_factory=dict)  # TrainConfig fields (benchmarks, experiments)
    preset: str | None = None  # a named preset (smmdn.model.presets) instead of the task preset


def read_csv(path: str | Path, what: str) -> pd.DataFrame:
    """Read one input CSV with ids as strings (leading zeros kept); clear error if unreadable."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} file not found", where=str(p), fix=f"give the path of an existing {what} CSV")
    try:
        return pd.read_csv(p, dtype={"site": str, "sensor": str}, keep_default_na=True)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"cannot parse {what} CSV: {exc}", where=str(p), fix="give a comma-separated file") from exc


def run_backtest_files(
    observations: str | Path, forcing: str | Path, sites: str | Path | None, out: str | Path,
    options: BacktestOptions,
) -> dict:
    """The CLI's entry: read the CSVs, run, write ``out``; returns the metrics dict."""
    obs = read_csv(observations, "observations")
    frc = read_csv(forcing, "forcing")
    sts = read_csv(sites, "sites") if sites else None
    return run_backtest(obs, frc, sts, out, options, names=(str(observations), str(forcing), str(sites or "sites")))


def _config(options: BacktestOptions, daily: bool):
    from smmdn.model.presets import load_preset, preset_config
    from smmdn.model.train import recommended_config

    settings: dict = {"seed": options.seed, "horizon": options.horizon, "progress": options.progress}
    if options.max_epochs is not None:
        settings["max_epochs"] = options.max_epochs
    settings.update(options.config_overrides)
    try:
        if options.preset is None:
            return recommended_config(options.mode, daily, **settings)
        preset = load_preset(options.preset)
    except ValueError as exc:
        raise InputError(str(exc), where="--preset" if options.preset else "config overrides") from exc
    if preset["settings"].get("mode") != options.mode:
        raise InputError(f"preset {options.preset!r} is a {preset['settings'].get('mode')}-mode preset, not "
                         f"{options.mode}", where="--mode",
                         fix="leave --mode out with --preset (it follows the preset)")
    if preset.get("resolution") == "daily" and not daily:
        raise InputError(f"preset {options.preset!r} is for daily data; these observations are sub-daily",
                         where="--preset", fix="give daily observations, or leave --preset out")
    try:
        return preset_config(options.preset, **settings)
    except ValueError as exc:
        raise InputError(str(exc), where="config overrides") from exc


def run_backtest(
    observations: pd.DataFrame, forcing: pd.DataFrame, sites: pd.DataFrame | None, out: str | Path,
    options: BacktestOptions, names: tuple[str, str, str] = ("observations", "forcing", "sites"),
) -> dict:
    """Train, predict and score; writes ``metrics.json`` and ``predictions.csv`` into ``out``."""
    from smmdn.model.api import fine_tune, fit, to_utc
    from smmdn.model.checkpoint import load_model
    from smmdn.model.data import build_panel, prepare
    from smmdn.model.presets import config_hash

    started = time.perf_counter()
    if options.mode not in ("simulation", "forecast"):
        raise InputError(f"unknown mode {options.mode!r}", where="--mode", fix="use simulation or forecast")
    obs = normalise_observations(observations, names[0])
    start = to_utc(options.test_start)
    end = to_utc(options.test_end) if options.test_end else None
    test_mask = (obs["time"] >= start) & ((obs["time"] <= end) if end is not None else True) & obs["vwc"].notna()
    if not test_mask.any():
        raise InputError(
            f"no observations in the test period ({options.test_start} .. {options.test_end or 'end'})",
            where=names[0], column="time", fix="choose --test-start/--test-end inside the observations' span",
        )
    if not ((obs["time"] < start) & obs["vwc"].notna()).any():
        raise InputError("no observations before --test-start: nothing to train on", where=names[0],
                         column="time", fix="choose a later --test-start")
    unknown = sorted(set(options.test_sites) - set(obs["site"].astype(str)))
    if unknown:
        raise InputError(f"test site(s) not in the observations: {', '.join(unknown)}", where="--test-sites",
                         fix="name sites that appear in the observations' site column")
    panel = build_panel(obs, forcing, sites, names=names)
    cfg = _config(options, panel.daily)
    if options.init_model:
        base = load_model(options.init_model)
        epochs = base.config.fine_tune_epochs
        if options.max_epochs is not None:  # --max-epochs caps fine-tuning too
            epochs = min(epochs, options.max_epochs)
        model = fine_tune(base, obs, forcing, sites, train_end=start, epochs=epochs,
                          exclude_sites=options.test_sites)
    else:
        model = fit(obs, forcing, sites, cfg, train_end=start, test_sites=options.test_sites, seed=options.seed)
    if options.save_model:
        model.save(options.save_model)
    prep = prepare(panel, model.scalers)
    t0 = panel.index_of(start)
    t1 = len(panel.times) if end is None else int(panel.times.searchsorted(end, side="right"))
    if t1 <= t0:
        raise InputError("the forcing does not reach the test period", where=names[1], column="time",
                         fix="give forcing through the test period")
    min_obs = options.min_test_obs or min(20, max(1, (t1 - t0) // 2))
    if options.mode == "forecast":
        result = _forecast(model, panel, prep, t0, t1, options.horizon, min_obs)
    else:
        result = _simulation(model, panel, prep, t0, t1, min_obs)
    frame, per_series, baselines, per_lead, replicates = result
    if not per_series:
        raise InputError(
            f"no series with at least {min_obs} observations in the test period", where=names[0], column="vwc",
            fix="lengthen the test period or lower --min-test-obs",
        )
    metrics = {
        "overall": summarise_scores(per_series),
        "per_series": per_series,
        "baselines": baselines,
        "n_series": len(per_series),
        "mode": options.mode,
        "forcing": FORCING_LABEL,
        "test_start": str(start.date()) if panel.daily else str(start),
        "test_end": str(panel.times[t1 - 1].date()) if panel.daily else str(panel.times[t1 - 1]),
        "test_sites": list(options.test_sites),
        "min_test_obs": min_obs,
        "components": model.components,
        "spread_factor": model.spread,
        "spread_per_lead": list(model.spread_per_lead),
        "spread_by_distance": list(model.spread_by_distance),
        "members": model.network.config.members,
        "replicates": replicates,
        "training": {k: v for k, v in model.metrics.get("training", {}).items() if k != "train_loss"},
        "fine_tune": model.metrics.get("fine_tune"),  # present only after --init-model
        "wall_time_s": time.perf_counter() - started,
        "preset": options.preset,
        "config": model.config.to_dict(),
        "config_hash": config_hash(model.config),
        "kge_tail": kge_tail(per_series),
    }
    metrics["overall"]["share_beating_climatology"] = _share(per_series, "crps_skill")
    metrics["overall"]["share_beating_persistence"] = _share(per_series, "crps_skill_persistence")
    if per_lead is not None:
        metrics["per_lead"] = per_lead
        metrics["skill_vs_persistence"] = skill_vs_persistence(per_lead)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out_dir / "predictions.csv", index=False, float_format="%.6g")
    (out_dir / "metrics.json").write_text(json.dumps(_finite(metrics), indent=2), encoding="utf-8")
    log.info("backtest: %d series, median CRPS %.4f, KGE %.3f, coverage_90 %.3f -> %s", len(per_series),
             metrics["overall"]["median"]["crps"], metrics["overall"]["median"]["kge"],
             metrics["overall"]["median"]["coverage_90"], out_dir)
    return metrics


def _share(rows: list[dict], key: str) -> float:
    vals = np.array([r.get(key, np.nan) for r in rows], dtype=float)
    vals = vals[np.isfinite(vals)]
    return float(np.mean(vals > 0)) if len(vals) else float("nan")


def _finite(value: object) -> object:
    """JSON has no NaN: write null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _summary_columns(w: np.ndarray, mu: np.ndarray, sg: np.ndarray) -> dict[str, np.ndarray]:
    from smmdn.model.mixture import summarise

    k = w.shape[-1]
    cols = summarise(w, mu, sg)
    for i in range(k):
        cols[f"weight_{i}"] = w[..., i]
    for i in range(k):
        cols[f"mean_{i}"] = mu[..., i]
    for i in range(k):
        cols[f"sigma_{i}"] = sg[..., i]
    return cols


def _column_order(k: int, forecast: bool) -> list[str]:
    cols = ["time", "site", "depth_cm", "sensor", "observed", "mean", "sd", *QUANTILE_LEVELS, *mixture_columns(k)]
    return [*cols, "issue_time", "lead"] if forecast else cols


def _both_in_90(panel, t_slice_obs: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> dict:
    """Share of steps where every replicate (>= 2 observed) lies inside the 90 % interval."""
    both, n = 0, 0
    for li, sensors in enumerate(panel.sensors):
        if len(sensors) < 2:
            continue
        y = t_slice_obs[li][..., : len(sensors)]
        full = np.all(np.isfinite(y), axis=-1)
        inside = np.all((y >= lo[li][..., None]) & (y <= hi[li][..., None]), axis=-1)
        both += int(np.sum(inside & full))
        n += int(np.sum(full))
    return {"locations_with_replicates": sum(len(s) >= 2 for s in panel.sensors), "steps": n,
            "all_replicates_in_90": both / n if n else None}


def _simulation(model, panel, prep, t0: int, t1: int, min_obs: int):
    from smmdn.model.api import simulate_panel

    w, mu, sg = simulate_panel(model, panel, prep, t0, t1)
    n_l, n_t, k = w.shape
    cols = _summary_columns(w, mu, sg)
    lo90, hi90 = central_interval(0.9, w, mu, sg)
    frames, per_series, clim_rows, pers_rows = [], [], [], []
    y_test = panel.targets[:, t0:t1]
    times = format_times(pd.Series(panel.times[t0:t1]))
    for li in range(n_l):
        site, depth = str(panel.locations["site"].iloc[li]), float(panel.locations["depth_cm"].iloc[li])
        for ri, sensor in enumerate(panel.sensors[li]):
            y = y_test[li, :, ri]
            part = {"time": times.to_numpy(), "site": site, "depth_cm": depth, "sensor": sensor, "observed": y}
            part |= {c: v[li] for c, v in cols.items()}
            frames.append(pd.DataFrame(part))
            if np.isfinite(y).sum() < min_obs:
                continue
            train = panel.targets[li, :t0, ri]
            c_mean, c_sd = climatology(train)
            last_i = np.nonzero(np.isfinite(train))[0]
            clim = gaussian_scores(y, np.full(n_t, c_mean), np.full(n_t, c_sd))
            row = {"site": site, "depth_cm": depth, "sensor": sensor, "n_train": int(np.isfinite(train).sum())}
            row |= series_scores(y, w[li], mu[li], sg[li], crps_reference=clim["crps"])
            row["crps_climatology"] = clim["crps"]
            if len(last_i):
                lead = np.arange(1, n_t + 1) + (t0 - 1 - last_i[-1])
                sd_lead = persistence_sd(train, int(lead.max()))[lead - 1]
                pers = gaussian_scores(y, np.full(n_t, train[last_i[-1]]), sd_lead)
                row["crps_persistence"] = pers["crps"]
                row["crps_skill_persistence"] = 1 - row["crps"] / pers["crps"] if pers["crps"] else float("nan")
                pers_rows.append(pers)
            clim_rows.append(clim)
            per_series.append(row)
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    frame = frame[_column_order(k, False)] if len(frame) else frame
    baselines = {
        "climatology": summarise_scores(clim_rows, ("crps", "rmse", "kge", "coverage_90", "width_90")),
        "persistence": summarise_scores(pers_rows, ("crps", "rmse", "coverage_90", "width_90")),
    }
    return frame, per_series, baselines, None, _both_in_90(panel, y_test, lo90, hi90)


def _last_obs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward-filled values and the index they came from (-1 when none yet)."""
    idx = np.where(np.isfinite(values), np.arange(len(values)), -1)
    idx = np.maximum.accumulate(idx)
    return np.where(idx >= 0, values[np.maximum(idx, 0)], np.nan), idx


def _forecast(model, panel, prep, t0: int, t1: int, horizon: int, min_obs: int):
    from smmdn.model.api import forecast_panel

    n_l = len(panel.locations)
    issues_per = np.arange(t0 - 1, t1 - 1)
    locs = np.repeat(np.arange(n_l), len(issues_per))
    issues = np.tile(issues_per, n_l)
    w, mu, sg = forecast_panel(model, prep, locs, issues, horizon, keys=panel.keys)  # (n, H, K)
    k = w.shape[-1]
    w = w.reshape(n_l, len(issues_per), horizon, k)
    mu = mu.reshape(w.shape)
    sg = sg.reshape(w.shape)
    valid_idx = issues_per[:, None] + np.arange(1, horizon + 1)[None, :]  # (I, H)
    in_test = valid_idx < t1
    cols = _summary_columns(w, mu, sg)
    lo90, hi90 = central_interval(0.9, w, mu, sg)
    fmt_times = np.asarray(format_times(pd.Series(panel.times)))
    frames, per_series, clim_rows, pers_rows = [], [], [], []
    lead_rows: dict[int, list[dict]] = {h: [] for h in range(1, horizon + 1)}
    lead_base: dict[int, list[dict]] = {h: [] for h in range(1, horizon + 1)}
    vi = np.where(in_test, valid_idx, t1 - 1)
    y_all_loc = []
    for li in range(n_l):
        site, depth = str(panel.locations["site"].iloc[li]), float(panel.locations["depth_cm"].iloc[li])
        y_loc = panel.targets[li][vi]  # (I, H, R)
        y_loc = np.where(in_test[..., None], y_loc, np.nan)
        y_all_loc.append(y_loc)
        for ri, sensor in enumerate(panel.sensors[li]):
            y = y_loc[..., ri]
            sel = in_test
            part = {
                "time": fmt_times[valid_idx[sel]], "site": site, "depth_cm": depth, "sensor": sensor,
                "observed": y[sel],
            }
            part |= {c: v[li][sel] for c, v in cols.items()}
            part |= {"issue_time": fmt_times[np.broadcast_to(issues_per[:, None], sel.shape)[sel]],
                     "lead": np.broadcast_to(np.arange(1, horizon + 1), sel.shape)[sel]}
            frames.append(pd.DataFrame(part))
            if np.isfinite(y).sum() < min_obs:
                continue
            train = panel.targets[li, :t0, ri]
            c_mean, c_sd = climatology(train)
            series = panel.targets[li, :, ri].copy()
            series[t1:] = np.nan
            filled, src = _last_obs(series)
            p_sd = persistence_sd(train, horizon + 60)
            p_mean = np.broadcast_to(filled[issues_per][:, None], y.shape)
            age = (valid_idx - src[issues_per][:, None]).clip(1, horizon + 60)
            p_sdv = p_sd[age - 1]
            clim = gaussian_scores(y[sel], np.full(sel.sum(), c_mean), np.full(sel.sum(), c_sd))
            pers = gaussian_scores(y[sel], p_mean[sel], p_sdv[sel])
            row = {"site": site, "depth_cm": depth, "sensor": sensor, "n_train": int(np.isfinite(train).sum())}
            row |= series_scores(y[sel], w[li][sel], mu[li][sel], sg[li][sel], crps_reference=clim["crps"])
            row["crps_climatology"], row["crps_persistence"] = clim["crps"], pers["crps"]
            row["crps_skill_persistence"] = 1 - row["crps"] / pers["crps"] if pers["crps"] else float("nan")
            per_series.append(row)
            clim_rows.append(clim)
            pers_rows.append(pers)
            for h in range(1, horizon + 1):
                s = in_test[:, h - 1]
                yh = y[s, h - 1]
                if np.isfinite(yh).sum() < 3:
                    continue
                c = gaussian_scores(yh, np.full(s.sum(), c_mean), np.full(s.sum(), c_sd))
                p = gaussian_scores(yh, p_mean[s, h - 1], p_sdv[s, h - 1])
                r = series_scores(yh, w[li][s, h - 1], mu[li][s, h - 1], sg[li][s, h - 1], crps_reference=c["crps"])
                r["crps_skill_persistence"] = 1 - r["crps"] / p["crps"] if p["crps"] else float("nan")
                lead_rows[h].append(r)
                lead_base[h].append(p)
    per_lead = {}
    for h in range(1, horizon + 1):
        summary = summarise_scores(lead_rows[h], (*METRIC_KEYS, "crps_skill_persistence"))
        base = summarise_scores(lead_base[h], ("crps",))
        per_lead[str(h)] = {
            **summary["median"],
            "mean": summary["mean"],
            "crps_persistence": base["median"]["crps"],
            "mean_crps_persistence": base["mean"]["crps"],
            "share_beating_persistence": _share(lead_rows[h], "crps_skill_persistence"),
            "n_series": len(lead_rows[h]),
        }
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    frame = frame[_column_order(k, True)] if len(frame) else frame
    baselines = {
        "climatology": summarise_scores(clim_rows, ("crps", "rmse", "kge", "coverage_90", "width_90")),
        "persistence": summarise_scores(pers_rows, ("crps", "rmse", "coverage_90", "width_90")),
    }
    y_stack = [y[:, 0] for y in y_all_loc]  # lead 1 for the replicate check
    replicates = _both_in_90(panel, y_stack, lo90[:, :, 0], hi90[:, :, 0])
    replicates["lead"] = 1
    return frame, per_series, baselines, per_lead, replicates


__all__ = ["FORCING_LABEL", "BacktestOptions", "run_backtest", "run_backtest_files"]
