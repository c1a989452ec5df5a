"""The detection rules without a database: PIT + HDR at one level, multimodal mixtures, classification of
replicate and averaged networks, persistence runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm

from smmdn.alerts.detect import classify, exceedance, multimodal, runs

ALPHA = 0.02


def _one(w: list[float], mu: list[float], sigma: list[float]) -> tuple[np.ndarray, ...]:
    return np.array([w]), np.array([mu]), np.array([sigma])


def test_unimodal_tails_are_outside_the_centre_is_not() -> None:
    w, mu, sigma = _one([1.0], [0.25], [0.01])
    z = norm.ppf(1 - ALPHA / 2)  # 2.326: the 98 % interval of a Gaussian, central and HDR alike
    for x, expected in ((0.25, False), (0.25 + 0.99 * z * 0.01, False), (0.25 + 1.01 * z * 0.01, True),
                        (0.25 - 1.01 * z * 0.01, True)):
        out = exceedance(np.array([x]), w, mu, sigma, ALPHA)
        assert bool(out["outside"][0]) is expected, x
    assert not multimodal(w, mu, sigma)[0]


def test_between_two_modes_the_hdr_rule_decides_and_the_pit_cannot() -> None:
    w, mu, sigma = _one([0.5, 0.5], [0.15, 0.30], [0.01, 0.01])
    assert multimodal(w, mu, sigma)[0]
    gap = exceedance(np.array([0.225]), w, mu, sigma, ALPHA)
    assert abs(gap["pit"][0] - 0.5) < 1e-9 and not gap["tail"][0]  # the PIT says "perfectly ordinary"
    assert gap["outside_hdr"][0] and gap["gap"][0] and gap["outside"][0]  # the HDR says "impossible here"
    on_mode = exceedance(np.array([0.30]), w, mu, sigma, ALPHA)
    assert not on_mode["outside"][0]  # a value on either mode is fine
    beyond = exceedance(np.array([0.36]), w, mu, sigma, ALPHA)
    assert beyond["outside"][0] and beyond["tail"][0] and not beyond["gap"][0]


def test_skewed_mixture_needs_both_rules_in_a_tail() -> None:
    # a long right tail: the 98 % HDR ends below the 99 % quantile, so a value between them is outside the
    # HDR but its PIT is not in the upper 1 % tail: not an anomaly (the conjunction)
    w, mu, sigma = _one([0.8, 0.2], [0.20, 0.24], [0.01, 0.03])
    from smmdn.model.mixture import in_hdr, mixture_pit

    xs = np.linspace(0.2, 0.4, 400)
    ws, ms, ss = (np.repeat(a, 400, 0) for a in (w, mu, sigma))
    out = exceedance(xs, ws, ms, ss, ALPHA)
    pit = mixture_pit(xs, ws, ms, ss)
    only_hdr = ~in_hdr(xs, ws, ms, ss, level=1 - ALPHA) & (pit <= 1 - ALPHA / 2)
    assert only_hdr.any() and not out["outside"][only_hdr].any()
    assert out["outside"][pit > 1 - ALPHA / 2].all()


def _scored(rows: list[tuple]) -> pd.DataFrame:
    """(site, depth, sensor, vwc, outside, direction, severe) → a scored frame for one day."""
    frame = pd.DataFrame(rows, columns=["site", "depth_cm", "sensor", "vwc", "outside", "direction", "severe"])
    frame["time"] = pd.Timestamp("2024-05-10", tz="UTC")
    frame["has_forecast"] = True
    frame["pit"] = np.where(frame["outside"], 0.999, 0.5)
    frame["q50"] = 0.2
    for c in ("n_spike", "n_flatline", "n_gap"):
        frame[c] = 0
    frame["n"] = 24
    return frame


def _states(conditions: pd.DataFrame, kind: str) -> dict[tuple, str]:
    c = conditions.loc[conditions["kind"] == kind]
    return {(r.site, r.depth_cm, r.sensor): r.state for r in c.itertuples()}


def test_one_replicate_deviating_is_a_sensor_fault_all_of_them_a_cluster() -> None:
    one = classify(_scored([("A", 10.0, "a", 0.2, False, 0, False), ("A", 10.0, "b", 0.21, False, 0, False),
                            ("A", 10.0, "c", 0.3, True, 1, False)]))
    assert _states(one, "sensor_fault") == {("A", 10.0, "a"): "clear", ("A", 10.0, "b"): "clear",
                                            ("A", 10.0, "c"): "out"}
    assert _states(one, "cluster") == {("A", 10.0, "*"): "clear"}
    allof = classify(_scored([("A", 10.0, s, 0.3, True, 1, False) for s in "abc"]))
    assert _states(allof, "cluster") == {("A", 10.0, "*"): "out"}
    assert set(_states(allof, "sensor_fault").values()) == {"none"}  # not evidence either way
    split = classify(_scored([("A", 10.0, "a", 0.3, True, 1, False), ("A", 10.0, "b", 0.1, True, -1, False),
                              ("A", 10.0, "c", 0.2, False, 0, False)]))
    assert _states(split, "cluster") == {("A", 10.0, "*"): "none"}  # majority outside, opposite sides
    assert _states(split, "sensor_fault")[("A", 10.0, "a")] == "out"


def test_one_sensor_per_depth_uses_the_other_depths() -> None:
    lone_deep = classify(_scored([("A", 5.0, "avg", 0.2, False, 0, False), ("A", 20.0, "avg", 0.2, False, 0, False),
                                  ("A", 50.0, "avg", 0.1, True, -1, False)]))
    assert _states(lone_deep, "sensor_fault")[("A", 50.0, "avg")] == "out"
    basis = lone_deep.loc[(lone_deep["kind"] == "sensor_fault") & (lone_deep["depth_cm"] == 50.0), "basis"].iloc[0]
    assert basis.startswith("one sensor per depth") and "2 other depth(s) agree" in basis
    together = classify(_scored([("A", 5.0, "avg", 0.3, True, 1, False), ("A", 20.0, "avg", 0.3, True, 1, False),
                                 ("A", 50.0, "avg", 0.2, False, 0, False)]))
    assert _states(together, "cluster") == {("A", 5.0, "*"): "out", ("A", 20.0, "*"): "out",
                                            ("A", 50.0, "*"): "clear"}
    top_wet = classify(_scored([("A", 5.0, "avg", 0.3, True, 1, False), ("A", 20.0, "avg", 0.2, False, 0, False)]))
    assert _states(top_wet, "deviation")[("A", 5.0, "avg")] == "out"  # rain or a probe: said so, not guessed
    assert _states(top_wet, "sensor_fault")[("A", 5.0, "avg")] == "none"
    alone = classify(_scored([("B", 10.0, "avg", 0.3, True, 1, False)]))
    assert _states(alone, "deviation")[("B", 10.0, "avg")] == "out"


def test_runs_count_consecutive_days_and_ignore_days_without_evidence() -> None:
    days = pd.date_range("2024-05-01", periods=6, tz="UTC")
    c = pd.DataFrame({"time": days, "site": "A", "depth_cm": 10.0, "sensor": "c", "kind": "sensor_fault",
                      "state": ["clear", "out", "none", "out", "clear", "clear"]})
    r = runs(c)
    assert list(r["state"]) == ["clear", "out", "out", "clear", "clear"]  # the "none" day is dropped
    assert list(r["out_run"]) == [0, 1, 2, 0, 0] and list(r["clear_run"]) == [1, 0, 0, 1, 2]
    assert r.iloc[2]["run_start"] == days[1]
