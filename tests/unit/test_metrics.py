"""Verification metrics and baselines."""

from __future__ import annotations

import math

import numpy as np
import pytest

from smmdn.verify.metrics import (
    bias,
    climatology,
    gaussian_scores,
    kge,
    kge_2012,
    persistence_sd,
    pit_histogram,
    rmse,
    series_scores,
    spearman,
    summarise_scores,
)


def test_kge_perfect_and_known_value() -> None:
    obs = np.array([0.1, 0.2, 0.3, 0.25, 0.15])
    assert kge(obs, obs) == pytest.approx(1.0)
    sim = 1.1 * obs  # r = 1, alpha = 1.1, beta = 1.1
    assert kge(sim, obs) == pytest.approx(1 - math.sqrt(0.1**2 + 0.1**2))
    assert kge_2012(sim, obs) == pytest.approx(1 - 0.1)  # gamma = 1 (CV unchanged), beta = 1.1


def test_spearman_rmse_bias() -> None:
    obs = np.array([1.0, 2.0, 3.0, 4.0])
    assert spearman(obs**3, obs) == pytest.approx(1.0)
    assert rmse(obs + 0.5, obs) == pytest.approx(0.5)
    assert bias(obs - 0.2, obs) == pytest.approx(-0.2)


def test_series_scores_calibrated_gaussian_coverage() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    truth = 0.25 + 0.05 * np.sin(np.arange(n) / 50)
    obs = truth + rng.normal(0, 0.02, n)
    ones = np.ones((n, 1))
    s = series_scores(obs, ones, truth[:, None], 0.02 * ones, crps_reference=0.05)
    assert s["coverage_90"] == pytest.approx(0.9, abs=0.02)
    assert s["coverage_50"] == pytest.approx(0.5, abs=0.03)
    assert s["width_90"] == pytest.approx(2 * 1.6449 * 0.02, rel=1e-3)
    assert s["crps_skill"] == pytest.approx(1 - s["crps"] / 0.05)
    assert max(s["pit_histogram"]) < 0.13


def test_series_scores_ignores_missing() -> None:
    obs = np.array([0.2, np.nan, 0.3])
    ones = np.ones((3, 1))
    assert series_scores(obs, ones, np.full((3, 1), 0.25), 0.01 * ones)["n"] == 2


def test_climatology_and_gaussian_scores() -> None:
    mean, sd = climatology(np.array([0.1, 0.2, np.nan, 0.3]))
    assert mean == pytest.approx(0.2) and sd == pytest.approx(0.1)
    g = gaussian_scores(np.array([0.2, 0.2]), np.array(0.2), np.array(0.1))
    assert g["crps"] == pytest.approx(0.1 * (2 / math.sqrt(2 * math.pi) - 1 / math.sqrt(math.pi)))


def test_persistence_sd_grows_with_lead_for_a_random_walk() -> None:
    rng = np.random.default_rng(1)
    walk = np.cumsum(rng.normal(0, 0.01, 3000))
    sd = persistence_sd(walk, 9)
    assert sd[0] == pytest.approx(0.01, rel=0.1)
    assert sd[8] == pytest.approx(0.03, rel=0.15)  # sqrt(9) * 0.01


def test_pit_histogram_and_summary() -> None:
    assert pit_histogram(np.linspace(0.01, 0.99, 100), bins=4) == [0.25, 0.25, 0.25, 0.25]
    out = summarise_scores([{"crps": 1.0}, {"crps": 3.0}, {"crps": float("nan")}], ("crps",))
    assert out["median"]["crps"] == 2.0 and out["mean"]["crps"] == 2.0
