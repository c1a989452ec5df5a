"""Spread calibration: recovers a known dispersion error, per lead and per location, with shrinkage."""

from __future__ import annotations

import numpy as np
import pytest

from smmdn.model.calibrate import SPREAD_GRID, fit_calibration, location_factors, per_group_factors


def _gaussian_rows(rng: np.random.Generator, n: int, t: int, true_sd: np.ndarray) -> tuple[np.ndarray, ...]:
    """Unit-sd single-component forecasts; observations scattered with ``true_sd`` (broadcast to (n, t))."""
    lw = np.zeros((n, t, 1))
    mu = rng.normal(0, 1, (n, t, 1))
    sg = np.ones((n, t, 1))
    y = mu[..., 0] + rng.normal(0, 1, (n, t)) * true_sd
    return lw, mu, sg, y[..., None]


def test_recovers_overall_and_per_lead_dispersion() -> None:
    rng = np.random.default_rng(0)
    true = np.array([0.7, 1.4, 2.5])[None, :]  # grows with the lead
    lw, mu, sg, y = _gaussian_rows(rng, 4000, 3, true)
    cal = fit_calibration(lw, mu, sg, y, ["a"] * 4000, per_lead=True, prior_steps=None)
    assert cal.per_lead == pytest.approx([0.7, 1.4, 2.5], rel=0.08)
    assert 0.9 < cal.overall < 2.5
    assert cal.per_location == {}


def test_per_location_factors_follow_their_data_and_shrink_when_few() -> None:
    rng = np.random.default_rng(1)
    n_rows = 60
    keys = ["wide"] * 20 + ["narrow"] * 20 + ["typical"] * 19 + ["sparse"]
    true = np.array([3.0] * 20 + [0.6] * 20 + [1.2] * 20)[:, None]
    lw, mu, sg, y = _gaussian_rows(rng, n_rows, 50, true)
    y[-1, 1:] = np.nan  # "sparse" has one observation, far out
    y[-1, 0, 0] = mu[-1, 0, 0] + 10.0
    cal = fit_calibration(lw, mu, sg, y, keys, per_lead=False, prior_steps=30.0, per_series=False)
    f = cal.per_location
    assert f["wide"] > 2.2 and f["narrow"] < 0.8 and f["narrow"] < f["typical"] < f["wide"]
    assert f["sparse"] == pytest.approx(cal.overall, rel=0.15)  # one point barely moves the (pooled) prior
    np.testing.assert_array_equal(location_factors(["wide", "ungauged"], f, 9.0), [f["wide"], 9.0])


def test_group_factor_with_infinite_prior_is_the_overall_one() -> None:
    rng = np.random.default_rng(2)
    curves = rng.random((200, len(SPREAD_GRID)))
    groups = rng.integers(0, 5, 200)
    overall = SPREAD_GRID[np.argmin(curves.mean(0))]
    assert set(per_group_factors(curves, groups, prior_steps=1e12).values()) == {overall}


def test_series_balanced_factor_is_not_set_by_a_few_badly_off_series() -> None:
    rng = np.random.default_rng(3)
    true = np.array([1.0] * 40 + [6.0] * 10)[:, None]  # ten series far worse than forecast
    lw, mu, sg, y = _gaussian_rows(rng, 50, 60, true)
    keys = [f"s{i}" for i in range(50)]
    pooled = fit_calibration(lw, mu, sg, y, keys, per_lead=False, prior_steps=None, per_series=False)
    balanced = fit_calibration(lw, mu, sg, y, keys, per_lead=False, prior_steps=None, per_series=True)
    assert pooled.overall > 1.3  # the pooled CRPS widens all fifty for the ten
    assert balanced.overall < pooled.overall and 0.9 < balanced.overall < 1.15
