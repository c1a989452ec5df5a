"""The replicate consensus detector on synthetic clusters: each fault type named on its sensor, on time, the
healthy siblings never blamed, a clean cluster quiet, two sensors resolved by the mixture (weakly)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from smmdn.alerts.consensus import consensus

DAYS = 60
START = 30  # fault start (day index)


def world(seed: int, fault: str | None, sensors: tuple[str, ...] = ("a", "b", "c"), culprit: str = "c",
          end: int | None = None) -> pd.DataFrame:
    """Daily rows of one cluster: a shared wet/dry signal, a per-sensor offset, daily-mean noise; the fault
    planted in ``culprit`` from ``START`` (to ``end``)."""
    rng = np.random.default_rng(seed)
    t = np.arange(DAYS)
    signal = 0.25 + 0.05 * np.sin(t / 9.0) + np.where((t > 10) & (t < 14), 0.08, 0.0)
    rows = []
    for s in sensors:
        offset = rng.normal(0, 0.006)
        for d in t:
            level = signal[d] + offset + rng.normal(0, 0.0015)
            span, rough, n_spike = 0.012 + rng.uniform(0, 0.004), 0.002, 0
            on = s == culprit and d >= START and (end is None or d < end)
            if on and fault == "step":
                level += 0.03
            elif on and fault == "drift":
                level += 0.002 * (d - START + 1)
            elif on and fault == "stuck":
                level, span, rough = signal[START] + offset, 0.0, 0.0
            elif on and fault == "zero":
                level = 0.004
            elif on and fault == "spikes":
                rough, n_spike = 0.03, 5
            rows.append({"time": pd.Timestamp("2024-01-01") + pd.Timedelta(days=int(d)), "site": "S", "depth_cm": 5.0,
                         "sensor": s, "level": level, "span": span, "rough": rough, "n": 24, "n_spike": n_spike,
                         "q50": signal[d]})
    return pd.DataFrame(rows)


def first_out(result: pd.DataFrame, sensor: str) -> int | None:
    out = result.loc[(result["sensor"] == sensor) & (result["state"] == "out"), "time"]
    return None if out.empty else int((out.min() - pd.Timestamp("2024-01-01")).days)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_cluster_is_quiet(seed: int) -> None:
    result = consensus(world(seed, None))
    assert not (result["state"] == "out").any()
    assert (result["state"] == "clear").sum() > 0.8 * len(result)


@pytest.mark.parametrize("fault,expected,within", [
    ("step", "offset", 0), ("stuck", "stuck", 0), ("zero", "dropout", 0), ("spikes", "spikes/noise", 0),
    ("drift", "drift", 14),
])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fault_named_on_its_sensor_only(seed: int, fault: str, expected: str, within: int) -> None:
    result = consensus(world(seed, fault))
    day = first_out(result, "c")
    assert day is not None and START <= day <= START + within, day
    assert result.loc[(result["sensor"] == "c") & (result["time"] == result.loc[result["sensor"] == "c", "time"].min()
                                                   + pd.Timedelta(days=day)), "fault"].iloc[0] == expected
    assert first_out(result, "a") is None and first_out(result, "b") is None  # no healthy sibling blamed
    if fault == "drift":  # caught before the drift reaches 0.03 m3/m3
        assert 0.002 * (day - START + 1) < 0.03


def test_fault_that_ends_clears_and_is_readmitted() -> None:
    result = consensus(world(3, "step", end=START + 10))
    c = result.loc[result["sensor"] == "c"].set_index("time")
    after = c.iloc[START + 10 + 3:]
    assert (after["state"] == "clear").all()
    assert not after["excluded"].iloc[-1]
    assert c.iloc[START + 5]["excluded"]  # left out of its siblings' reference while faulty


def test_two_sensors_mixture_breaks_the_tie_weakly() -> None:
    result = consensus(world(4, "step", sensors=("a", "b"), culprit="b"))
    assert first_out(result, "b") == START
    assert first_out(result, "a") is None
    assert result.loc[(result["sensor"] == "b") & (result["state"] == "out"), "weak"].all()


def test_two_sensors_without_forecast_blame_nobody() -> None:
    days = world(5, "step", sensors=("a", "b"), culprit="b").assign(q50=np.nan)
    result = consensus(days)
    assert first_out(result, "a") is None and first_out(result, "b") is None


def test_held_sensor_starts_excluded() -> None:
    days = world(6, "step")
    late = days.loc[days["time"] >= pd.Timestamp("2024-01-01") + pd.Timedelta(days=START + 2)]
    result = consensus(late, held={("S", 5.0, "c")})
    assert first_out(result, "c") == START + 2
    assert first_out(result, "a") is None and first_out(result, "b") is None


def test_lone_sensors_are_not_judged() -> None:
    days = world(7, "step", sensors=("a",), culprit="a")
    assert consensus(days).empty


def test_window_starting_inside_a_past_fault_does_not_blame_the_healed_sensor() -> None:
    """The detect step recomputes the state over a trailing window; one that starts inside a resolved fault
    must not learn the faulty level as the sensor's offset (and name it once it is healthy again)."""
    end = START + 10
    days = world(8, "step", end=end)
    late = days.loc[days["time"] >= pd.Timestamp("2024-01-01") + pd.Timedelta(days=START + 3)]
    blind = consensus(late)  # no record of the fault: the healed sensor looks like a new step
    assert first_out(blind, "c") is not None and first_out(blind, "c") >= end
    since = pd.Timestamp("2024-01-01") + pd.Timedelta(days=START)
    until = pd.Timestamp("2024-01-01") + pd.Timedelta(days=end)
    result = consensus(late, held={("S", 5.0, "c"): [(since, until)]})
    assert first_out(result, "c") is None
    c = result.loc[result["sensor"] == "c"].set_index("time")
    assert c.loc[c.index < until, "excluded"].all() and (c.loc[c.index < until, "state"] == "none").all()
    assert not c.loc[c.index >= until, "excluded"].any()  # re-admitted the day its alert's period ends
    assert first_out(result, "a") is None and first_out(result, "b") is None


def test_open_period_starts_excluded_on_its_first_day_and_agreeing_days_readmit() -> None:
    days = world(9, "step", end=START + 10)
    since = pd.Timestamp("2024-01-01") + pd.Timedelta(days=START)
    result = consensus(days, held={("S", 5.0, "c"): [(since, None)]})
    c = result.loc[result["sensor"] == "c"].set_index("time")
    assert not c.loc[c.index < since, "excluded"].any()  # learnt from before its fault
    assert c.loc[since, "excluded"]
    assert not c["excluded"].iloc[-1]  # agreed again after the fault: back in


def test_readmit_days_setting_sets_how_long_a_healed_sensor_must_agree() -> None:
    from smmdn.alerts.consensus import Consensus

    days = world(10, "step", end=START + 10)

    def back_in(n: int) -> int:
        c = consensus(days, rules=Consensus(readmit_days=n)).query("sensor == 'c'").reset_index(drop=True)
        return int(c.index[(c.index >= START + 10) & ~c["excluded"]].min())

    assert back_in(5) - back_in(2) == 3


def _network(seed: int) -> pd.DataFrame:
    """Many clusters at once: every fault type, two to four sensors, days missing here and there (a sensor's
    day, or a whole cluster's day), daily records (n < 6) on one cluster."""
    rng = np.random.default_rng(seed)
    faults = [None, "step", "drift", "stuck", "zero", "spikes"]
    frames = []
    for j in range(12):
        sensors = ("a", "b", "c", "d")[:2 + j % 3]
        f = world(seed * 100 + j, faults[j % len(faults)], sensors=sensors, culprit=sensors[-1])
        f["site"], f["depth_cm"] = f"S{j // 2}", 5.0 + 10 * (j % 2)
        if j == 5:
            f["n"] = 1
        frames.append(f)
    d = pd.concat(frames, ignore_index=True)
    gone = rng.random(len(d)) < 0.04
    gone |= (d["site"] == "S3") & (d["depth_cm"] == 5.0) & d["time"].isin(d["time"].unique()[[7, 31]])
    return d.loc[~gone].reset_index(drop=True)


@pytest.mark.parametrize("seed", [0, 1])
def test_vectorised_detector_equals_the_one_cluster_reference(seed: int) -> None:
    """The detector runs every cluster at once; it must decide exactly what the one-cluster-at-a-time
    reference (the detector as first written, ``tests/helpers/consensus_reference.py``) decides."""
    from tests.helpers.consensus_reference import consensus as reference

    d = _network(seed)
    t0 = pd.Timestamp("2024-01-01")
    held = {("S0", 15.0, "b"): [(t0 + pd.Timedelta(days=34), t0 + pd.Timedelta(days=40))],
            ("S1", 5.0, "c"): [(t0 + pd.Timedelta(days=45), None)],
            ("S2", 15.0, "d"): [(None, None)]}
    for h in (None, held):
        got, want = consensus(d, h), reference(d, h)
        assert (got["state"] == "out").sum() > 10  # the network has faults to name
        pd.testing.assert_frame_equal(got, want, check_exact=True)


@pytest.mark.parametrize("fault,magnitude", [("step", 0.06), ("drift", 0.002)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sensor_back_without_an_offset_does_not_steer_its_siblings_reference(seed: int, fault: str,
                                                                             magnitude: float) -> None:
    """A never-ending fault whose alert was resolved inside the trailing window: the sensor comes back at the
    period's end with no learnt offset and cannot be named until it has one; meanwhile it must not shift its
    healthy siblings' reference (before: a sibling was named 'offset' the day the period ended)."""
    days = world(seed, fault)
    culprit = days["sensor"] == "c"
    if fault == "step":
        days.loc[culprit & (days["time"] >= pd.Timestamp("2024-01-01") + pd.Timedelta(days=START)), "level"] += (
            magnitude - 0.03)
    since = pd.Timestamp("2024-01-01") + pd.Timedelta(days=START)
    until = since + pd.Timedelta(days=15)
    late = days.loc[days["time"] >= since + pd.Timedelta(days=10)]
    result = consensus(late, held={("S", 5.0, "c"): [(since, until)]})
    assert first_out(result, "a") is None and first_out(result, "b") is None
    c = result.loc[result["sensor"] == "c"].set_index("time")
    assert not c.loc[c.index >= until, "excluded"].iloc[0]  # back in at the period's end, as before


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_healthy_sensors_left_at_a_depth_do_not_blame_each_other(seed: int) -> None:
    """Three sensors, one under an open fault alert for the whole window (a never-ending fault more than a
    window old): the two healthy ones are each other's only reference. Their gains differ, so a wetting pulls
    them apart; mirror-image residuals cannot say which moved (before: both were named in turn)."""
    rng = np.random.default_rng(seed)
    t = np.arange(40)
    signal = 0.25 + 0.03 * np.sin(t / 7) + np.where((t >= 30) & (t < 34), 0.15, 0.0)
    rows = []
    for sensor, gain in (("a", 1.12), ("b", 0.92), ("c", 1.0)):
        offset = rng.normal(0, 0.006) + (0.05 if sensor == "c" else 0.0)  # c: stepped long before the window
        for d in t:
            rows.append({"time": pd.Timestamp("2024-03-01") + pd.Timedelta(days=int(d)), "site": "S", "depth_cm": 5.0,
                         "sensor": sensor, "level": 0.25 + (signal[d] - 0.25) * gain + offset + rng.normal(0, 0.0015),
                         "span": 0.012, "rough": 0.002, "n": 24, "n_spike": 0, "q50": signal[d]})
    result = consensus(pd.DataFrame(rows), held={("S", 5.0, "c"): [(pd.Timestamp("2024-01-01"), None)]})
    assert first_out(result, "a") is None and first_out(result, "b") is None
    assert (result.loc[result["sensor"] == "c", "state"] == "out").all()  # the known culprit stays named
