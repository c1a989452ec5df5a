"""Spread calibration: recovers a known dispersion error, per lead, per distance and per location, with
shrinkage."""

from __future__ import annotations

import numpy as np
import pytest

from smmdn.model.calibrate import (
    DISTANCE_EXTEND,
    MAX_GROWTH,
    SPREAD_GRID,
    distance_factors,
    fit_calibration,
    growth_curve,
    location_factors,
    per_group_factors,
)


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


def test_distance_factors_follow_a_growth_curve_and_extrapolate() -> None:
    rng = np.random.default_rng(5)
    block, n_blocks = 7, 8
    d = np.arange(1, block * n_blocks + 1)
    true = (0.6 * d**0.3)[None, :]  # spread needed grows with the distance from the training end
    lw, mu, sg, y = _gaussian_rows(rng, 300, len(d), true)
    cal = fit_calibration(lw, mu, sg, y, [f"s{i}" for i in range(300)], per_lead=False, prior_steps=None,
                          distance_block=block)
    assert cal.distance_block == block and len(cal.by_distance) == n_blocks * DISTANCE_EXTEND
    mid = (np.arange(len(cal.by_distance)) + 0.5) * block + 0.5
    np.testing.assert_allclose(cal.by_distance[:n_blocks], 0.6 * mid[:n_blocks] ** 0.3, rtol=0.08)
    assert cal.by_distance[-1] == pytest.approx(0.6 * mid[-1] ** 0.3, rel=0.15)  # extrapolated past the window
    assert np.all(np.diff(cal.by_distance) >= 0)
    steps = np.array([-5, 1, 7, 8, 10_000])  # in-sample, first block, second, past the curve's end
    f = distance_factors(cal.by_distance, block, steps)
    assert f.tolist() == [cal.by_distance[0]] * 3 + [cal.by_distance[1], cal.by_distance[-1]]


def test_growth_curve_never_shrinks_and_caps_its_slope() -> None:
    shrinking = [(b, 2.0 - 0.1 * b) for b in range(6)]
    geometric_mean = np.exp(np.mean(np.log([f for _, f in shrinking])))
    assert growth_curve(shrinking, 7, 12, 1.0) == pytest.approx([geometric_mean] * 12)  # flat, not shrinking
    steep = [(b, float((b + 1) ** 3)) for b in range(4)]
    out = np.array(growth_curve(steep, 1, 8, 1.0))
    mid = np.arange(8) + 1.0
    assert np.allclose(np.diff(np.log(out)) / np.diff(np.log(mid)), MAX_GROWTH)
    assert growth_curve([], 7, 3, 1.3) == [1.3, 1.3, 1.3]

