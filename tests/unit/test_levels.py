"""Per-series mean corrections of a simulation (issue 20, the KGE tail): fitting, applying, storing, wiring."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smmdn.model import TrainConfig, fit, load_model, presets
from smmdn.model.api import predict_simulation
from smmdn.model.levels import (
    MIN_VALID,
    SeriesCorrection,
    apply_correction,
    correction_from_stats,
    validation_stats,
)
from smmdn.model.presets import config_hash, preset_config
from tests.unit.synthetic import make_frames

SMALL = dict(hidden=8, seq_len=60, warmup=20, batch_size=32, chunks_per_location=4, max_epochs=2, min_epochs=1,
             valid_steps=60, refit=False, dropout=0.0, lr=1e-2, sigma_floor=0.002)
TRAIN_END = "2021-11-01"


def test_offset_is_the_shrunk_mean_error_and_the_anomaly_scale_only_shrinks() -> None:
    t = np.arange(60, dtype=float)
    wiggle = 0.02 * np.sin(t / 5)
    mean = np.stack([0.20 + wiggle, 0.30 + wiggle, 0.10 + wiggle])  # (3, 60) predicted means
    y = np.stack([0.25 + wiggle, 0.30 + 0.1 * wiggle, 0.10 + 3 * wiggle])[..., None]  # biased, flat, lively
    y[2, 5:] = np.nan  # too few validation observations: left alone
    c = correction_from_stats(validation_stats(mean, y, ["a", "b", "c"]), prior_steps=60.0, cap_floor=0.2)
    assert c.offset["a"] == pytest.approx(0.05 * 60 / 120)
    assert c.anomaly_scale["a"] == pytest.approx(1.0)
    assert c.anomaly_scale["b"] == pytest.approx(0.2)  # ratio 0.1, floored
    assert "c" not in c.offset and "c" not in c.anomaly_scale
    off = correction_from_stats(validation_stats(mean, y, ["a", "b", "c"]))
    assert not off and set(off.stats) == {"a", "b"}  # both off: nothing applied, the statistics kept
    again = correction_from_stats(off.stats, prior_steps=60.0, cap_floor=0.2)  # other knobs, no refit
    assert again.offset == c.offset and again.anomaly_scale == c.anomaly_scale
    assert correction_from_stats(off.stats, prior_steps=0.0).offset["a"] == pytest.approx(0.05)
    assert SeriesCorrection.from_dict(c.to_dict()) == c
    assert MIN_VALID > 5


def test_apply_shifts_every_component_by_the_mean_change() -> None:
    w = np.full((2, 4, 2), 0.5)
    mu = np.stack([np.full((4, 2), 0.3), np.full((4, 2), 0.2)])
    mu[..., 0] -= 0.01
    mu[..., 1] += 0.01  # mean 0.3 / 0.2, components +-0.01
    level = np.array([0.25, 0.2])
    corr = SeriesCorrection(offset={"x": 0.02}, anomaly_scale={"x": 0.5})
    out = apply_correction(w, mu, ["x", "y"], level, corr)
    assert np.allclose(np.sum(w * out, -1)[0], 0.25 + 0.5 * 0.05 + 0.02)
    assert np.allclose(out[0, :, 1] - out[0, :, 0], 0.02)  # the mixture keeps its shape
    assert np.array_equal(out[1], mu[1])  # an uncorrected location is untouched
    assert apply_correction(w, mu, ["x", "y"], level, SeriesCorrection()) is mu
    bounded = correction_from_stats({}, location_stats={"y": [0.15, 0.01, 0.14, 0.17]}, range_margin=1.0)
    assert bounded.bounds == {"y": pytest.approx([0.13, 0.18])}
    out = apply_correction(w, mu, ["x", "y"], level, bounded)
    assert np.allclose(np.sum(w * out, -1)[1], 0.18) and np.array_equal(out[0], mu[0])  # 0.2 clipped to 0.18


def test_new_settings_leave_old_hashes_alone_and_change_them_when_set() -> None:
    prod = preset_config("production")
    recorded = json.loads((Path(presets.__file__).parent / "preset_files" / "production.json").read_text())
    assert config_hash(prod) == recorded["backtest"]["config_hash"]  # the hash its recorded figures belong to
    assert config_hash(preset_config("production", level_prior_steps=30.0)) != config_hash(prod)
    assert config_hash(preset_config("production", anomaly_cap_floor=0.25)) != config_hash(prod)
    assert config_hash(preset_config("production", range_margin=1.0)) != config_hash(prod)


def test_fit_learns_a_correction_on_the_validation_window_that_moves_predictions_and_roundtrips(tmp_path) -> None:
    obs, frc, sites = make_frames(n_sites=3, days=400)
    late = pd.to_datetime(obs["time"]) >= "2021-09-02"  # the validation window (60 days before TRAIN_END)
    obs.loc[late & (obs["site"] == "S01"), "vwc"] += 0.08  # a level shift the training part never saw
    plain = fit(obs, frc, sites, TrainConfig(**SMALL), train_end=TRAIN_END, seed=0)
    corrected = fit(obs, frc, sites, TrainConfig(**SMALL, level_prior_steps=10.0, anomaly_cap_floor=0.25,
                                                 range_margin=1.0), train_end=TRAIN_END, seed=0)
    assert not plain.correction
    assert corrected.correction.offset["S01|10"] > 0.04  # learnt from the validation window
    assert set(corrected.metrics["training"]["correction"]) == {"offset", "anomaly_scale", "bounds_width"}
    assert set(corrected.correction.bounds) == set(corrected.scalers.location_stats)
    a = predict_simulation(plain, obs, frc, sites, TRAIN_END, "2021-12-01")
    b = predict_simulation(corrected, obs, frc, sites, TRAIN_END, "2021-12-01")
    s01 = (a["site"] == "S01").to_numpy()
    assert (b["mean"] - a["mean"])[s01].mean() > 0.03
    corrected.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert again.correction.to_dict() == corrected.correction.to_dict()
    c = predict_simulation(again, obs, frc, sites, TRAIN_END, "2021-12-01")
    assert np.allclose(c["mean"], b["mean"])


def _bench():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks/bench_backtest.py"
    spec = importlib.util.spec_from_file_location("bench_backtest", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_fold_cuts_before_the_test_start_and_rescores_variants_without_retraining(tmp_path) -> None:
    bench = _bench()
    obs, frc, sites = make_frames(n_sites=3, days=400)
    cut, start, end = bench.fold_window(obs, "2021-12-01", "2021-11-01")
    assert (start, end) == ("2021-11-01", "2021-11-30")
    assert pd.to_datetime(cut["time"]).max() < pd.Timestamp("2021-12-01") < pd.to_datetime(obs["time"]).max()
    with pytest.raises(SystemExit):
        bench.fold_window(obs, "2021-11-01", "2021-12-01")
    model = fit(cut, frc, sites, TrainConfig(**SMALL, level_prior_steps=10.0), train_end=start, seed=0)
    model.save(tmp_path / "m")
    rows = bench.rescore_variants(tmp_path / "m", cut, frc, sites, start, end,
                                  [{}, {"level_prior_steps": 0.0}, {"range_margin": -1.0}])
    assert [r["n"] for r in rows] == [9, 9, 9]  # 3 sites x 3 replicates
    assert rows[0]["rmse_median"] != rows[1]["rmse_median"]  # the offsets move the predictions
    model.correction = SeriesCorrection()
    free = predict_simulation(model, cut, frc, sites, start, end)
    stats = {k: [m, sd, m + 0.1, m + 0.11] for k, (m, sd, _, _) in model.scalers.location_stats.items()}
    tight = correction_from_stats({}, location_stats=stats, range_margin=0.0)  # a band above the simulation
    model.correction = tight
    pred = predict_simulation(model, cut, frc, sites, start, end)
    assert (pred["mean"] > free["mean"] + 0.05).all()
    lo = pred["site"].map(lambda s: tight.bounds[f"{s}|10"][0])
    hi = pred["site"].map(lambda s: tight.bounds[f"{s}|10"][1])
    assert ((pred["mean"] >= lo - 1e-9) & (pred["mean"] <= hi + 1e-9)).all()  # clipped into the bounds
