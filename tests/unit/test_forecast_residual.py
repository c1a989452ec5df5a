"""Residual forecast mode: persistence as the zero-change starting point, branching inference equal to a
plain windowed pass, per-lead spread, and the training cut near the forecast leads."""

from __future__ import annotations

import numpy as np
import torch

from smmdn.model.data import build_panel, fit_scalers, prepare
from smmdn.model.network import MixtureEnsemble, MixtureLSTM, NetworkConfig
from smmdn.model.predict import forecast_issues, last_visible, state_inputs
from smmdn.model.train import TrainConfig, _batch, _cuts
from tests.unit.synthetic import make_frames


def _prep():
    obs, frc, sites = make_frames(n_sites=2, days=160)
    panel = build_panel(obs, frc, sites)
    return panel, prepare(panel, fit_scalers(panel, 120, np.arange(len(panel.locations))))


def _net(prep, residual: bool = True, seed: int = 0, zero: bool = True) -> MixtureLSTM:
    torch.manual_seed(seed)
    n_dyn = prep.dynamic.shape[-1] + (5 if residual else 2)
    return MixtureLSTM(NetworkConfig(n_dynamic=n_dyn, n_static=prep.static.shape[-1], hidden=8, components=2,
                                     dropout=0.0, zero_mean_init=zero))


def test_zero_change_head_reproduces_persistence() -> None:
    panel, prep = _prep()
    net = _net(prep)
    locs, issues = np.array([0, 1, 0]), np.array([100, 110, 130])
    w, mu, sg = forecast_issues(net, prep, locs, issues, 5, 40, 0.002, torch.device("cpu"), residual=True)
    mean = np.sum(w * mu, -1)
    last_obs = np.nanmean(panel.targets[locs, issues], axis=-1)  # replicate mean at the issue time
    np.testing.assert_allclose(mean, np.repeat(last_obs[:, None], 5, 1), atol=1e-5)
    assert (sg > 0).all()


def test_branching_equals_one_window_per_issue() -> None:
    """The fast path (one visible pass, then a branch per issue) gives what a window per issue gives."""
    _, prep = _prep()
    net = _net(prep, zero=False).eval()
    warmup, horizon = 30, 4
    locs, issues = np.array([0, 1, 1, 0]), np.array([60, 60, 75, 90])
    lw, mu, sg = forecast_issues(net, prep, locs, issues, horizon, warmup, 0.002, torch.device("cpu"),
                                 model_units=True, residual=True)
    s0 = issues.min() + 1 - warmup
    for j, (loc, issue) in enumerate(zip(locs, issues, strict=True)):
        steps = np.arange(s0, issue + horizon + 1)
        st = prep.state[loc, steps][None]
        visible = ~np.isnan(st) & (steps <= issue + 1)[None]
        channels, offset = state_inputs(st, visible, True)
        x = np.concatenate([prep.dynamic[loc, steps][None], channels], -1)
        with torch.no_grad():
            out = net(torch.from_numpy(x), torch.from_numpy(prep.static[[loc]]),
                      torch.tensor([0.002 / prep.scale[loc]], dtype=torch.float32), offset=torch.from_numpy(offset))
        np.testing.assert_allclose(mu[j], out["means"][0, -horizon:].numpy(), atol=1e-5)
        np.testing.assert_allclose(sg[j], out["sigmas"][0, -horizon:].numpy(), atol=1e-5)
        np.testing.assert_allclose(lw[j], out["log_weights"][0, -horizon:].numpy(), atol=1e-5)


def test_branching_works_for_ensembles_and_per_lead_spread() -> None:
    _, prep = _prep()
    ens = MixtureEnsemble([_net(prep, seed=1, zero=False), _net(prep, seed=2, zero=False)]).eval()
    assert ens.n_components == 4
    locs, issues = np.array([0, 1]), np.array([80, 81])
    dev = torch.device("cpu")
    lw, _mu, sg = forecast_issues(ens, prep, locs, issues, 3, 30, 0.002, dev, model_units=True, residual=True)
    assert lw.shape == (2, 3, 4)
    np.testing.assert_allclose(np.exp(lw).sum(-1), 1.0, atol=1e-5)
    factors = np.array([0.5, 1.0, 2.0])
    _, _, sg2 = forecast_issues(ens, prep, locs, issues, 3, 30, 0.002, dev, spread=factors, model_units=True,
                                residual=True)
    np.testing.assert_allclose(sg2, sg * factors[None, :, None], rtol=1e-5)


def test_last_visible_value_and_age() -> None:
    values = np.array([[1.0, 2.0, np.nan, 4.0, 5.0]])
    visible = np.array([[False, True, False, True, False]])
    last, has, age = last_visible(values, visible)
    np.testing.assert_array_equal(last, [[0.0, 2.0, 2.0, 4.0, 4.0]])
    np.testing.assert_array_equal(has, [[False, True, True, True, True]])
    np.testing.assert_array_equal(age, [[0, 0, 1, 0, 1]])


def test_training_cuts_sit_near_the_leads_and_hide_the_future() -> None:
    cfg = TrainConfig(mode="forecast", horizon=5, p_long_cut=0.0, p_hidden=0.0, obs_dropout=0.0)
    cuts = _cuts(np.random.default_rng(0), 1000, 100, cfg)
    assert cuts.min() >= 100 - 10 and cuts.max() <= 99
    _, prep = _prep()
    cfg.seq_len, cfg.warmup = 40, 10
    b = _batch(prep, np.array([0, 1]), np.array([20, 50]), cfg, np.random.default_rng(1))
    visible = b.dynamic[..., -4] > 0  # the mask channel of the residual state block
    assert not (visible & b.free).any()  # nothing after the cut is ever shown
    assert b.offset is not None and np.isfinite(b.offset).all()
