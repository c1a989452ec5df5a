"""Fault periods on the real store: an open fault alert keeps its sensor out of the model's inputs, an
operator's resolve re-admits its new readings while the faulty period stays out of training, and a depth
whose every sensor is excluded runs free (said so)."""

from __future__ import annotations

import pandas as pd

from smmdn.alerts import operator
from smmdn.alerts.routing import Routes
from smmdn.cycle.inputs import drop_faulty, faulty_sensors, runs_free
from smmdn.store import alerts as db

DAYS = pd.date_range("2024-05-01", periods=8, freq="D", tz="UTC")


def _obs(sensors: str = "abc") -> pd.DataFrame:
    return pd.DataFrame([{"time": t, "site": "S", "depth_cm": 5.0, "sensor": s, "vwc": 0.2} for t in DAYS
                         for s in sensors])


def _fault(store, sensor: str, start: pd.Timestamp, end: pd.Timestamp) -> int:  # type: ignore[no-untyped-def]
    return db.insert_alert(store, dict(dedup_key=f"k{sensor}", kind="sensor_fault", site="S", depth_cm=5.0,
                                       sensor=sensor, window_start=start, window_end=end, status="open",
                                       details={"fault": "offset"}, created_at=end + pd.Timedelta(hours=6)))


def test_resolve_readmits_new_readings_and_keeps_the_faulty_period_out(store) -> None:  # type: ignore[no-untyped-def]
    alert = _fault(store, "c", DAYS[2] + pd.Timedelta(hours=3), DAYS[4])
    periods = faulty_sensors(store)
    assert len(periods) == 1 and pd.isna(periods.iloc[0]["until"])
    kept, excluded = drop_faulty(_obs(), periods)
    assert not ((kept["sensor"] == "c") & (kept["time"] >= DAYS[2])).any()  # open: every reading since
    assert excluded[0]["until"] is None and excluded[0]["rows"] == 6

    operator.resolve(store, alert, "al", DAYS[6], Routes(teams={}, escalate_to={}), note="probe re-seated")
    periods = faulty_sensors(store)
    assert periods.iloc[0]["until"] == DAYS[5]  # the day after its last faulty day
    kept, excluded = drop_faulty(_obs(), periods)
    c_days = set(kept.loc[kept["sensor"] == "c", "time"])
    assert c_days == set(DAYS[:2]) | set(DAYS[5:])  # re-admitted after; the faulty days never teach
    assert excluded == [{"site": "S", "depth_cm": 5.0, "sensor": "c", "since": DAYS[2].isoformat(),
                         "until": DAYS[5].isoformat(), "rows": 3}]


def test_a_depth_with_every_sensor_excluded_runs_free(store) -> None:  # type: ignore[no-untyped-def]
    _fault(store, "a", DAYS[3], DAYS[5])
    periods = faulty_sensors(store)
    assert runs_free(_obs("ab"), periods, DAYS[6]) == []  # b is left: the state comes from it
    _fault(store, "b", DAYS[4], DAYS[5])
    free = runs_free(_obs("ab"), faulty_sensors(store), DAYS[6])
    assert free == [{"site": "S", "depth_cm": 5.0, "since": DAYS[4].isoformat(), "sensors": ["a", "b"]}]
    assert runs_free(_obs("ab"), faulty_sensors(store), DAYS[2]) == []  # before the faults: observed
