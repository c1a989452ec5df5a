"""A faulty sensor stops teaching and steering (its readings leave the model's inputs from the fault's first
day), the classification takes its cluster vote away, and its message names the fault with the evidence."""

from __future__ import annotations

import numpy as np
import pandas as pd

from smmdn.alerts import message
from smmdn.alerts.consensus import consensus
from smmdn.alerts.detect import classify
from smmdn.cycle.inputs import drop_faulty
from tests.unit.test_consensus import START, world


def test_readings_of_a_faulty_sensor_leave_the_inputs_from_its_fault() -> None:
    days = pd.date_range("2024-05-01", periods=6, freq="D", tz="UTC")
    obs = pd.DataFrame([{"time": t, "site": "S", "depth_cm": 5.0, "sensor": s, "vwc": 0.2} for t in days
                        for s in "abc"])
    faulty = pd.DataFrame({"site": ["S"], "depth_cm": [5.0], "sensor": ["c"], "since": [days[3]], "until": [pd.NaT]})
    kept, excluded = drop_faulty(obs, faulty)
    assert len(kept) == len(obs) - 3
    assert not ((kept["sensor"] == "c") & (kept["time"] >= days[3])).any()
    assert ((kept["sensor"] == "c") & (kept["time"] < days[3])).sum() == 3  # before the fault: still taught
    assert excluded == [{"site": "S", "depth_cm": 5.0, "sensor": "c", "since": days[3].isoformat(), "until": None,
                         "rows": 3}]
    same, none = drop_faulty(obs, faulty.iloc[:0])
    assert len(same) == len(obs) and none == []


def _scored(days: pd.DataFrame, outside: set[str]) -> pd.DataFrame:
    """The forecast view of the consensus world: ``outside`` sensors outside, high, on the fault's first two
    days (the forecast followed the faulty sensor until its readings left the model's inputs)."""
    s = days.rename(columns={"level": "vwc"}).copy()
    s["has_forecast"] = True
    first = s["time"].min() + pd.Timedelta(days=START)
    s["outside"] = s["sensor"].isin(outside) & (s["time"] >= first) & (s["time"] < first + pd.Timedelta(days=2))
    s["severe"] = False
    s["pit"] = np.where(s["outside"], 0.999, 0.5)
    s["direction"] = np.where(s["outside"], 1, 0)
    s["n_flatline"] = s["n_gap"] = 0
    return s


def test_steered_siblings_are_not_blamed_and_make_no_cluster() -> None:
    days = world(11, "step")
    agreement = consensus(days)
    # the forecast followed the faulty sensor: the two healthy siblings fall outside it (a majority)
    scored = _scored(days, {"a", "b"})
    out = classify(scored, agreement)
    fresh = out.loc[(out["time"] >= days["time"].min() + pd.Timedelta(days=START)) & (out["state"] == "out")]
    faults = fresh.loc[fresh["kind"] == "sensor_fault"]
    assert set(faults["sensor"]) == {"c"} and set(faults["fault"]) == {"offset"}
    assert fresh.loc[fresh["kind"] == "cluster"].empty  # the steered siblings make no cluster event...
    without = classify(scored)  # ...while judged on the forecast alone the healthy siblings are blamed
    blamed = without.loc[(without["kind"] == "sensor_fault") & (without["state"] == "out"), "sensor"]
    assert {"a", "b"} & set(blamed) or not without.loc[(without["kind"] == "cluster")
                                                        & (without["state"] == "out")].empty


def test_message_names_the_fault_and_shows_the_residuals() -> None:
    alert = {"id": 3, "kind": "sensor_fault", "site": "S", "depth_cm": 5.0, "sensor": "c", "revision": 1,
             "window_start": "2024-05-01", "window_end": "2024-05-03", "observed": 0.31,
             "details": {"fault": "drift", "weak_attribution": True, "reference": 0.27,
                         "recent_residuals": [["05-02", 0.021], ["05-03", 0.034]], "basis": "replicates"}}
    title, body = message.render(alert, "opened", None, ["t"])
    assert "sensor fault (drift)" in title
    assert "05-03 +0.034" in body and "Attribution: weak" in body
    assert "drifts steadily away from its siblings" in body
    lone = alert | {"details": {"basis": "one sensor per depth"}}
    _, body = message.render(lone, "opened", None, ["t"])
    assert "comparison sensors agree" not in body and "weak" in body


def test_lone_sensor_verdicts_say_their_evidence_is_weak() -> None:
    """One sensor per depth: no siblings, so the verdict rests on the other depths and the model (weak)."""
    day = pd.Timestamp("2024-05-01", tz="UTC")
    rows = [{"time": day, "site": "U", "depth_cm": d, "sensor": "avg", "vwc": v, "has_forecast": True,
             "outside": d == 20.0, "severe": False, "pit": 0.999 if d == 20.0 else 0.5,
             "direction": 1 if d == 20.0 else 0, "n": 1, "n_spike": 0, "n_flatline": 0, "n_gap": 0}
            for d, v in ((5.0, 0.2), (20.0, 0.4), (50.0, 0.3))]
    out = classify(pd.DataFrame(rows), consensus(pd.DataFrame(columns=["time", "site", "depth_cm", "sensor"])))
    fault = out.loc[(out["kind"] == "sensor_fault") & (out["depth_cm"] == 20.0)].iloc[0]
    assert fault["state"] == "out" and bool(fault["weak"])
    assert "one sensor per depth" in fault["basis"] and "2 other depth(s) agree" in fault["basis"]
    assert out.loc[out["kind"] == "sensor_fault", "weak"].map(bool).all()
