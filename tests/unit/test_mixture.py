"""Mixture math against scipy and numerical integration (numpy and torch paths)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import integrate, optimize, stats

from smmdn.model import mixture as mx

W = np.array([0.2, 0.5, 0.3])
MU = np.array([0.10, 0.25, 0.32])
SIG = np.array([0.02, 0.03, 0.01])


def scipy_cdf(x: float) -> float:
    return float(sum(w * stats.norm.cdf(x, m, s) for w, m, s in zip(W, MU, SIG, strict=True)))


def test_cdf_and_pdf_match_scipy() -> None:
    xs = np.linspace(0.0, 0.45, 37)
    assert np.allclose(mx.mixture_cdf(xs, W, MU, SIG), [scipy_cdf(x) for x in xs], atol=1e-12)
    pdf = sum(w * stats.norm.pdf(xs, m, s) for w, m, s in zip(W, MU, SIG, strict=True))
    assert np.allclose(mx.mixture_pdf(xs, W, MU, SIG), pdf, rtol=1e-10)


def test_quantiles_invert_cdf_to_1e6() -> None:
    p = np.array([0.001, 0.05, 0.25, 0.5, 0.75, 0.95, 0.999])
    q = mx.mixture_quantile(p, W, MU, SIG)
    for qi, pi in zip(q, p, strict=True):
        exact = optimize.brentq(lambda x, pi=pi: scipy_cdf(x) - pi, -1, 2, xtol=1e-12)
        assert abs(qi - exact) < 1e-6, (pi, qi, exact)


def test_quantile_vectorised_batch_shape() -> None:
    w = np.tile(W, (4, 5, 1))
    q = mx.mixture_quantile(0.5, w, np.tile(MU, (4, 5, 1)), np.tile(SIG, (4, 5, 1)))
    assert q.shape == (4, 5)
    assert np.allclose(q, q[0, 0])


def test_crps_matches_numerical_integration() -> None:
    for y in (0.05, 0.2, 0.31, 0.6):
        num, _ = integrate.quad(lambda x, y=y: (scipy_cdf(x) - (x >= y)) ** 2, -1, 2, points=[y, *MU], limit=400)
        assert mx.mixture_crps(y, W, MU, SIG) == pytest.approx(num, rel=1e-6, abs=1e-9)


def test_gaussian_crps_is_single_component_mixture() -> None:
    y = np.array([0.1, 0.2, 0.5])
    one = mx.mixture_crps(y, np.ones((3, 1)), np.full((3, 1), 0.2), np.full((3, 1), 0.05))
    assert np.allclose(one, mx.gaussian_crps(y, 0.2, 0.05))


def test_mean_sd_law_of_total_variance() -> None:
    rng = np.random.default_rng(0)
    draws = mx.sample(W, MU, SIG, 200_000, rng)
    mean, sd = mx.mixture_mean_sd(W, MU, SIG)
    assert draws.mean() == pytest.approx(mean, abs=5e-4)
    assert draws.std() == pytest.approx(sd, rel=1e-2)


def test_logpdf_finite_far_in_tails() -> None:
    lp = mx.mixture_logpdf(np.array([-50.0, 50.0]), W, MU, SIG)
    assert np.all(np.isfinite(lp)) and np.all(lp < -1e5)
    y = torch.tensor([-50.0, 0.2, 50.0])
    lw = torch.log(torch.tensor(W, dtype=torch.float32)).expand(3, 3)
    tp = mx.torch_log_prob(y, lw, torch.tensor(MU).float().expand(3, 3), torch.tensor(SIG).float().expand(3, 3))
    assert torch.isfinite(tp).all()


def test_torch_matches_numpy() -> None:
    y = torch.tensor([0.12, 0.27, 0.4], dtype=torch.float64)
    lw = torch.log(torch.tensor(W)).expand(3, 3)
    mu, sg = torch.tensor(MU).expand(3, 3), torch.tensor(SIG).expand(3, 3)
    assert np.allclose(mx.torch_log_prob(y, lw, mu, sg).numpy(), mx.mixture_logpdf(y.numpy(), W, MU, SIG))
    assert np.allclose(mx.torch_cdf(y, lw, mu, sg).numpy(), mx.mixture_cdf(y.numpy(), W, MU, SIG))
    assert np.allclose(mx.torch_crps(y, lw, mu, sg).numpy(), mx.mixture_crps(y.numpy(), W, MU, SIG))
    dist = mx.torch_distribution(lw, mu, sg)
    assert np.allclose(dist.log_prob(y).numpy(), mx.mixture_logpdf(y.numpy(), W, MU, SIG))


def test_torch_nll_masks_per_entry_and_replicates() -> None:
    lw = torch.log(torch.tensor(W)).expand(2, 4, 3)
    mu, sg = torch.tensor(MU).expand(2, 4, 3), torch.tensor(SIG).expand(2, 4, 3)
    y = torch.full((2, 4, 2), 0.2, dtype=torch.float64)
    y[0, 1, 0] = float("nan")
    mask = ~torch.isnan(y)
    total, n = mx.torch_nll(y, mask, lw, mu, sg)
    assert int(n) == 15
    single = -mx.torch_log_prob(torch.tensor(0.2, dtype=torch.float64), lw[0, 0], mu[0, 0], sg[0, 0])
    assert float(total) == pytest.approx(15 * float(single))
    assert torch.isfinite(total)


def test_torch_sample_shape_and_moments() -> None:
    lw = torch.log(torch.tensor(W)).expand(2, 3).float()
    mu, sg = torch.tensor(MU).expand(2, 3).float(), torch.tensor(SIG).expand(2, 3).float()
    s = mx.torch_sample(lw, mu, sg, 50_000, generator=torch.Generator().manual_seed(0))
    assert s.shape == (50_000, 2)
    mean, _ = mx.mixture_mean_sd(W, MU, SIG)
    assert float(s.mean()) == pytest.approx(mean, abs=1e-3)


def test_hdr_unimodal_equals_central_interval() -> None:
    (lo, hi), = mx.hdr_intervals(np.array([1.0]), np.array([0.3]), np.array([0.05]), 0.9)
    z = stats.norm.ppf(0.95)
    assert lo == pytest.approx(0.3 - z * 0.05, abs=1e-5)
    assert hi == pytest.approx(0.3 + z * 0.05, abs=1e-5)


def test_hdr_bimodal_two_intervals_with_right_mass() -> None:
    w, mu, sg = np.array([0.5, 0.5]), np.array([0.1, 0.4]), np.array([0.02, 0.02])
    ivs = mx.hdr_intervals(w, mu, sg, 0.9)
    assert len(ivs) == 2
    mass = sum(mx.mixture_cdf(b, w, mu, sg) - mx.mixture_cdf(a, w, mu, sg) for a, b in ivs)
    assert mass == pytest.approx(0.9, abs=1e-4)
    inside = mx.in_hdr(np.array([0.1, 0.25, 0.4]), w, mu, sg, 0.9)
    assert inside.tolist() == [True, False, True]  # the trough between modes is outside the HDR


def test_in_hdr_batch_agrees_with_intervals() -> None:
    rng = np.random.default_rng(1)
    w = rng.dirichlet(np.ones(3), size=6)
    mu, sg = rng.uniform(0.1, 0.4, (6, 3)), rng.uniform(0.01, 0.05, (6, 3))
    x = rng.uniform(0.0, 0.5, 6)
    flags = mx.in_hdr(x, w, mu, sg, 0.8)
    for i, ivs in enumerate(mx.hdr_intervals(w, mu, sg, 0.8)):
        assert flags[i] == any(a - 1e-6 <= x[i] <= b + 1e-6 for a, b in ivs)


def test_summarise_and_affine() -> None:
    out = mx.summarise(W, MU, SIG)
    assert set(out) == {"mean", "sd", "q05", "q25", "q50", "q75", "q95"}
    assert out["q05"] < out["q25"] < out["q50"] < out["q75"] < out["q95"]
    w2, mu2, s2 = mx.affine(W, MU, SIG, np.array(0.1), np.array(2.0))
    assert mx.mixture_cdf(0.1 + 2 * 0.2, w2, mu2, s2) == pytest.approx(mx.mixture_cdf(0.2, W, MU, SIG))


def test_pit_nan_passthrough() -> None:
    pit = mx.mixture_pit(np.array([np.nan, 0.25]), W, MU, SIG)
    assert np.isnan(pit[0]) and 0 < pit[1] < 1
