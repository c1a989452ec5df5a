"""Verification scores against a hand computation (numerical integration, not the closed form under test),
and the PIT-uniformity test with its effective sample size."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.integrate import quad
from scipy.stats import norm

from smmdn.verify.verification import independent_count, pit_uniformity, score_pairs


def crps_by_integration(x: float, cdf) -> float:  # type: ignore[no-untyped-def]
    """CRPS = ∫ (F(y) − 1{y ≥ x})² dy, integrated numerically on both sides of x."""
    left = quad(lambda y: cdf(y) ** 2, -1.0, x, limit=200)[0]
    right = quad(lambda y: (1 - cdf(y)) ** 2, x, 2.0, limit=200)[0]
    return left + right


def _pair(x: float, w: list[float], mu: list[float], sigma: list[float], q: dict[str, float]) -> dict:
    row = {"observed": x, **q}
    for i, (a, b, c) in enumerate(zip(w, mu, sigma, strict=True)):
        row |= {f"weight_{i}": a, f"mean_{i}": b, f"sigma_{i}": c}
    return row


def test_scores_match_a_hand_computation() -> None:
    mu, sd, x = 0.25, 0.02, 0.27
    quantiles = {name: mu + sd * norm.ppf(p) for name, p in
                 (("q05", 0.05), ("q25", 0.25), ("q50", 0.5), ("q75", 0.75), ("q95", 0.95))}
    # a two-component mixture, to check the mixture path too
    w2, m2, s2 = [0.3, 0.7], [0.20, 0.26], [0.015, 0.01]

    def cdf2(y: float) -> float:
        return sum(a * norm.cdf(y, b, c) for a, b, c in zip(w2, m2, s2, strict=True))

    pairs = pd.DataFrame([_pair(x, [1.0], [mu], [sd], quantiles),
                          _pair(0.215, w2, m2, s2, quantiles)]).fillna({"weight_1": 0.0, "mean_1": 0.0, "sigma_1": 1.0})
    scored = score_pairs(pairs)
    assert np.isclose(scored["crps"][0], crps_by_integration(x, lambda y: norm.cdf(y, mu, sd)), rtol=1e-6)
    assert np.isclose(scored["crps"][1], crps_by_integration(0.215, cdf2), rtol=1e-6)
    assert np.isclose(scored["pit"][0], norm.cdf(1.0)) and np.isclose(scored["pit"][1], cdf2(0.215))
    # x = 0.27 is one sd above the mean: outside the 50 % interval (±0.674 sd), inside the 90 % (±1.645 sd)
    assert not scored["in_50"][0] and scored["in_90"][0]
    assert np.isclose(scored["width_50"][0], 2 * 0.6744897501960817 * sd)
    assert np.isclose(scored["width_90"][0], 2 * 1.6448536269514722 * sd)


def test_pit_uniformity_passes_uniform_and_fails_overconfident_forecasts() -> None:
    rng = np.random.default_rng(1)
    calibrated = rng.random(3000)
    overconfident = norm.cdf(rng.normal(0, 2.5, 3000))  # observations spread 2.5x the predicted sd: U-shaped PIT
    _, p_ok, hist_ok = pit_uniformity(calibrated, 300)
    stat, p_bad, hist_bad = pit_uniformity(overconfident, 300)
    assert p_ok > 0.05 and max(hist_ok) < 0.13
    assert p_bad < 1e-6 and hist_bad[0] > 0.25 and hist_bad[-1] > 0.25
    full, _, _ = pit_uniformity(overconfident, 3000)
    assert np.isclose(full, stat * 10)  # the statistic scales with the effective sample size


def test_independent_count_is_one_per_site_depth_and_day() -> None:
    v = pd.DataFrame({"site": ["A"] * 6 + ["B"], "depth_cm": [10.0] * 7, "sensor": list("abcabca"),
                      "valid_time": pd.to_datetime(["2024-05-01"] * 3 + ["2024-05-02"] * 3 + ["2024-05-01"])})
    assert independent_count(v) == 3
