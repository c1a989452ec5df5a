"""Training on a synthetic network with a known mixture; checkpoints; fine-tuning; failure handling."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from smmdn.errors import InputError, ModelError
from smmdn.model import TrainConfig, fine_tune, fit, load_model, predict_forecast, score_window
from smmdn.model.api import predict_simulation, validation_steps
from smmdn.model.calibrate import distance_factors
from smmdn.model.data import build_panel, fit_scalers
from smmdn.model.mixture import central_interval, mixture_pit
from smmdn.model.train import recommended_config
from smmdn.verify.metrics import pit_histogram
from tests.unit.synthetic import NOISE_SD, make_frames

SMALL = dict(hidden=16, seq_len=60, warmup=20, batch_size=32, chunks_per_location=8, max_epochs=10,
             valid_steps=60, refit=False, dropout=0.0, lr=1e-2, patience=6, sigma_floor=0.002)
TRAIN_END = "2021-11-01"  # day 304 of 420


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, ...]:
    return make_frames()


@pytest.fixture(scope="module")
def model(frames: tuple[pd.DataFrame, ...]):
    obs, frc, sites = frames
    return fit(obs, frc, sites, TrainConfig(**SMALL), train_end=TRAIN_END, seed=3)


def _test_period(frames: tuple[pd.DataFrame, ...], model) -> tuple[pd.DataFrame, pd.DataFrame]:
    obs, frc, sites = frames
    pred = predict_simulation(model, obs, frc, sites, TRAIN_END, "2021-12-31")
    truth = obs.assign(time=pd.to_datetime(obs["time"], utc=True), depth_cm=obs["depth_cm"].astype(float))
    return pred.merge(truth, on=["site", "depth_cm", "time"]), pred


def test_recovers_calibrated_intervals_on_held_out_period(frames, model) -> None:
    joined, pred = _test_period(frames, model)
    k = model.components
    w = joined[[f"weight_{i}" for i in range(k)]].to_numpy()
    mu = joined[[f"mean_{i}" for i in range(k)]].to_numpy()
    sg = joined[[f"sigma_{i}" for i in range(k)]].to_numpy()
    y = joined["vwc"].to_numpy()
    lo, hi = central_interval(0.9, w, mu, sg)
    coverage = np.mean((y >= lo) & (y <= hi))
    assert 0.8 <= coverage <= 0.97, coverage
    hist = np.array(pit_histogram(mixture_pit(y, w, mu, sg), bins=5))
    assert np.all(np.abs(hist - 0.2) < 0.08), hist  # near-uniform PIT
    # the spread learnt is the replicates' spread (signal is predictable), not the series' variability
    assert 0.5 * NOISE_SD < pred["sd"].median() < 2.0 * NOISE_SD


def test_save_load_roundtrip_and_fine_tune(frames, model, tmp_path) -> None:
    obs, frc, sites = frames
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    a = predict_simulation(model, obs, frc, sites, TRAIN_END, "2021-11-10")
    b = predict_simulation(loaded, obs, frc, sites, TRAIN_END, "2021-11-10")
    pd.testing.assert_frame_equal(a, b)
    assert loaded.scalers.to_dict() == model.scalers.to_dict()
    tuned = fine_tune(loaded, obs, frc, sites, train_end="2021-12-01", epochs=2)
    assert tuned.scalers is loaded.scalers  # frozen scalers
    before = {k: v.clone() for k, v in loaded.network.state_dict().items()}
    changed = any(not torch.equal(before[k], v) for k, v in tuned.network.state_dict().items())
    assert changed
    assert all(torch.equal(before[k], v) for k, v in loaded.network.state_dict().items())  # original untouched
    s = score_window(tuned, obs, frc, sites, "2021-12-01", "2021-12-20")
    assert s["n"] > 0 and 0 < s["crps"] < 0.05


def test_malicious_checkpoint_is_refused(frames, model, tmp_path) -> None:
    target = tmp_path / "m"
    model.save(target)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple:
            return (open, (str(marker), "w"))

    with open(target / "weights.pt", "wb") as fh:
        pickle.dump({"lstm.weight_ih_l0": Evil()}, fh)
    with pytest.raises(ModelError, match="refusing"):
        load_model(target)
    assert not marker.exists()


def test_nan_loss_raises_model_error(frames, monkeypatch) -> None:
    """A diverging run (here: a poisoned likelihood) stops with ModelError instead of saving NaN weights."""
    import smmdn.model.train as train_mod

    real = train_mod.torch_nll

    def poisoned(*args: object) -> tuple[torch.Tensor, torch.Tensor]:
        total, n = real(*args)
        return total * float("nan"), n

    monkeypatch.setattr(train_mod, "torch_nll", poisoned)
    obs, frc, sites = frames
    with pytest.raises(ModelError, match="non-finite"):
        fit(obs, frc, sites, TrainConfig(**{**SMALL, "max_epochs": 1}), train_end=TRAIN_END)


def test_scalers_fitted_on_training_window_only(frames) -> None:
    obs, frc, sites = frames
    panel = build_panel(obs, frc, sites)
    t_end = 200
    sc = fit_scalers(panel, t_end, np.arange(len(panel.locations)))
    key = panel.keys[0]
    expected = np.nanmean(panel.targets[0, :t_end])
    assert sc.location_stats[key][0] == pytest.approx(expected)
    assert sc.forcing_mean[0] == pytest.approx(np.nanmean(panel.forcing[:, :t_end, 0]))


def test_forcing_gaps_imputed_flagged_and_reported(frames) -> None:
    obs, frc, sites = frames
    gappy = frc.drop(index=frc.index[10:15])
    panel = build_panel(obs, gappy, sites)
    assert panel.report["forcing_missing_imputed"]["precipitation_sum"] == 5
    site0 = panel.locations["site"].tolist().index(frc["site"].iloc[10])
    assert panel.forcing_missing[site0, 10:15, 0].sum() == 5
    site = gappy[gappy["site"] == frc["site"].iloc[10]]
    month = pd.to_datetime(site["time"], utc=True).dt.month
    gap_month = pd.Timestamp(frc["time"].iloc[10]).month
    expected = site.loc[(month == gap_month).to_numpy(), "precipitation_sum"].mean()
    assert panel.forcing[site0, 10:15, 0] == pytest.approx(np.full(5, expected))  # the month's climatology


def test_seeded_training_is_deterministic(frames) -> None:
    obs, frc, sites = frames
    cfg = TrainConfig(**{**SMALL, "max_epochs": 2, "calibrate": False})
    a = fit(obs, frc, sites, cfg, train_end=TRAIN_END, seed=7)
    b = fit(obs, frc, sites, cfg, train_end=TRAIN_END, seed=7)
    for k, v in a.network.state_dict().items():
        assert torch.equal(v, b.network.state_dict()[k])


def test_forecast_mode_frame_and_state_use(frames) -> None:
    obs, frc, sites = frames
    cfg = TrainConfig(**{**SMALL, "mode": "forecast", "max_epochs": 6, "horizon": 3})
    m = fit(obs, frc, sites, cfg, train_end=TRAIN_END, seed=1)
    fc = predict_forecast(m, obs, frc, sites, "2021-11-10", horizon=3)
    assert len(fc) == 4 * 3  # one row per (site, depth) and lead: replicates share one mixture
    assert fc["lead"].tolist()[:3] == [1, 2, 3]
    assert {"issue_time", "valid_time", "weight_0", "mean_2", "sigma_1", "q95"} <= set(fc.columns)
    assert (fc["valid_time"] - fc["issue_time"]).dt.days.tolist()[:3] == [1, 2, 3]
    with pytest.raises(InputError, match="forcing ends"):
        predict_forecast(m, obs, frc, sites, "2022-02-23", horizon=3)


def test_nothing_after_the_training_end_reaches_the_model_or_its_calibration(frames) -> None:
    """Observations from the test period are poisoned: weights and every spread factor stay the same."""
    obs, frc, sites = frames
    cfg = TrainConfig(**{**SMALL, "max_epochs": 2, "spread_prior_steps": 30.0})
    a = fit(obs, frc, sites, cfg, train_end=TRAIN_END, seed=5)
    after = (pd.to_datetime(obs["time"]) >= pd.Timestamp(TRAIN_END)).to_numpy()
    poisoned = obs.assign(vwc=np.where(after, obs["vwc"] + 0.3, obs["vwc"]))
    b = fit(poisoned, frc, sites, cfg, train_end=TRAIN_END, seed=5)
    assert a.spread_per_location and a.spread_per_location == b.spread_per_location
    assert (a.spread, a.spread_per_lead) == (b.spread, b.spread_per_lead)
    for k, v in a.network.state_dict().items():
        assert torch.equal(v, b.network.state_dict()[k])


def test_ensemble_members_pool_into_one_mixture_and_roundtrip(frames, tmp_path) -> None:
    obs, frc, sites = frames
    cfg = TrainConfig(**{**SMALL, "max_epochs": 2, "members": 2, "components": 2})
    m = fit(obs, frc, sites, cfg, train_end=TRAIN_END, seed=2)
    assert m.components == 4
    pred = predict_simulation(m, obs, frc, sites, TRAIN_END, "2021-11-05")
    w = pred[[f"weight_{i}" for i in range(4)]].to_numpy()
    np.testing.assert_allclose(w[:, :2].sum(1), 0.5, atol=1e-4)  # each member holds half the mass
    m.save(tmp_path / "ens")
    again = predict_simulation(load_model(tmp_path / "ens"), obs, frc, sites, TRAIN_END, "2021-11-05")
    pd.testing.assert_frame_equal(pred, again)
    tuned = fine_tune(m, obs, frc, sites, train_end="2021-12-01", epochs=1)
    assert tuned.components == 4


def test_simulation_spread_follows_the_distance_from_the_training_end(frames, model) -> None:
    """Each simulated step is widened by its distance block's factor (relative to the overall one)."""
    obs, frc, sites = frames
    assert model.spread_distance_block == 7 and len(model.spread_by_distance) > 1
    assert np.all(np.diff(model.spread_by_distance) >= 0)
    flat = dataclasses.replace(model, spread_by_distance=[], spread_distance_block=0)
    a = predict_simulation(model, obs, frc, sites, TRAIN_END, "2021-12-31")
    b = predict_simulation(flat, obs, frc, sites, TRAIN_END, "2021-12-31")
    days = (a["time"] - pd.Timestamp(TRAIN_END, tz="UTC")).dt.days.to_numpy() + 1
    expected = distance_factors(model.spread_by_distance, 7, days) / model.spread
    np.testing.assert_allclose(a["sigma_0"] / b["sigma_0"], expected, rtol=1e-5)
    pd.testing.assert_series_equal(a["mean"], b["mean"])  # the spread map keeps each mixture's mean


def test_recommended_config_per_task() -> None:
    daily_sim = recommended_config("simulation", True, seed=4)
    assert (daily_sim.seq_len, daily_sim.warmup, daily_sim.members, daily_sim.seed) == (365, 30, 3, 4)
    assert daily_sim.embedding_dim > 0
    hourly = recommended_config("forecast", False, max_epochs=3)
    assert hourly.with_state and hourly.seq_len == 24 * 21 and hourly.max_epochs == 3
    with pytest.raises(ValueError, match="unknown training setting"):
        recommended_config("simulation", True, hiddn=3)
    with pytest.raises(ValueError, match="unknown mode"):
        recommended_config("nowcast", True)


def test_validation_window_is_a_share_of_a_long_record(frames) -> None:
    obs, frc, sites = frames
    panel = build_panel(obs, frc, sites)
    locs = np.arange(len(panel.locations))
    t_end = panel.index_of(pd.Timestamp(TRAIN_END, tz="UTC"))
    first = int(np.argmax(np.isfinite(panel.targets).any(axis=(0, 2))))
    fixed = TrainConfig(valid_steps=40)
    assert validation_steps(fixed, panel, locs, t_end) == 40
    share = TrainConfig(valid_steps=40, valid_fraction=0.25, valid_max_steps=365)
    assert validation_steps(share, panel, locs, t_end) == max(40, round(0.25 * (t_end - first)))
    capped = TrainConfig(valid_steps=40, valid_fraction=0.9, valid_max_steps=50)
    assert validation_steps(capped, panel, locs, t_end) == 50
