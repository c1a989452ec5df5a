"""The detection benchmark's ground truth and scorer on hand-made readings and alerts (seconds, in CI).

The benchmark itself (tests/benchmarks/bench_detection.py) is on demand; these keep its planting and its
arithmetic honest: a culprit alert counts, a sibling is blamed, an alert outside the window does not count.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.helpers import detection_score as S
from tests.helpers import detection_truth as T

START = pd.Timestamp("2024-05-01", tz="UTC")
DAY = T.DAY


def hourly(days: int = 30, sensors: tuple[str, ...] = ("a", "b", "c"), level: float = 0.25) -> pd.DataFrame:
    t = pd.date_range(START - 5 * DAY, periods=24 * days, freq="h", tz="UTC")
    return pd.concat([pd.DataFrame({"time": t, "site": "S1", "depth_cm": 5.0, "sensor": s, "vwc": level})
                      for s in sensors], ignore_index=True)


def series(frame: pd.DataFrame, sensor: str) -> pd.Series:
    return frame.loc[frame["sensor"] == sensor].set_index("time")["vwc"]


def plan(faults: list[T.Fault], events: list[T.Event] | None = None, days: int = 20) -> T.RunPlan:
    return T.RunPlan("r0", 1, START, START + days * DAY, faults, events or [], [("S2", 5.0)],
                     {("S1", 5.0): ["a", "b", "c"], ("S2", 5.0): ["a", "b", "c"], ("S3", 5.0): ["a", "b", "c"]})


def alerts(*rows: tuple) -> pd.DataFrame:
    """(id, site, sensor, kind, created day offset [, resolved day offset]) → an alerts-table frame."""
    out = []
    for r in rows:
        resolved = START + r[5] * DAY + pd.Timedelta(hours=6) if len(r) > 5 and r[5] is not None else pd.NaT
        out.append({"id": r[0], "site": r[1], "depth_cm": 5.0, "sensor": r[2], "kind": r[3],
                    "created_at": START + r[4] * DAY + pd.Timedelta(hours=6), "resolved_at": resolved})
    return pd.DataFrame(out)


STEP = T.Fault("step", 0.03, days=10, site="S1", depth_cm=5.0, sensor="b", start=START + 2 * DAY)


# --- the grid and the plans -----------------------------------------------------------------------------------
def test_grid_has_every_pinned_cell_once() -> None:
    cells = [f.cell for f in T.grid()]
    assert len(cells) == 26 == len(set(cells))
    assert {"step 0.06 10d", "drift 0.0005/d never", "spikes 0.2/3h 10d", "stuck never", "disconnected 10d"} <= set(
        cells)
    assert len(T.grid(kinds=["spikes"])) == 8


def test_plans_put_at_most_one_fault_per_cluster_and_keep_controls_and_event_sites_clean() -> None:
    sites = ["A", "B", "C", "D"]
    plans = T.plan_runs(5, [sites] * 3, (5.0, 20.0, 50.0), ("a", "b", "c"), START, 60, faults=T.grid())
    again = T.plan_runs(5, [sites] * 3, (5.0, 20.0, 50.0), ("a", "b", "c"), START, 60, faults=T.grid())
    assert [p.to_dict() for p in plans] == [p.to_dict() for p in again]  # a seed fixes everything
    assert sorted(f.cell for p in plans for f in p.faults) == sorted(f.cell for f in T.grid())
    assert sorted(e.kind for p in plans for e in p.events) == ["irrigation", "rain"]
    for p in plans:
        clusters = [(f.site, f.depth_cm) for f in p.faults]
        assert len(clusters) == len(set(clusters))
        event_sites = {e.site for e in p.events}
        assert not event_sites & {s for s, _ in clusters}
        assert p.controls and not set(p.controls) & set(clusters)
        assert all(START + 8 * DAY <= f.start <= START + 25 * DAY for f in p.faults)
        assert T.RunPlan.from_dict(p.to_dict()).to_dict() == p.to_dict()
    with pytest.raises(ValueError, match="did not fit"):
        T.plan_runs(5, [sites], (5.0,), ("a", "b"), START, 60, faults=T.grid())


# --- planting ---------------------------------------------------------------------------------------------------
def test_step_and_drift_change_only_the_culprit_during_the_fault() -> None:
    base = hourly()
    end = START + 20 * DAY
    drift = T.Fault("drift", 0.01, days=None, site="S1", depth_cm=5.0, sensor="c", start=START + 4 * DAY)
    out = T.plant(base, [STEP, drift], end)
    b, c, a = series(out, "b"), series(out, "c"), series(out, "a")
    assert (a == 0.25).all()
    assert (b.loc[: STEP.start - pd.Timedelta(hours=1)] == 0.25).all()
    assert np.allclose(b.loc[STEP.start: STEP.start + 10 * DAY - pd.Timedelta(hours=1)], 0.28)
    assert (b.loc[STEP.start + 10 * DAY:] == 0.25).all()  # the 10-day fault ended
    assert c.loc[drift.start] == pytest.approx(0.25)
    assert c.loc[drift.start + 5 * DAY] == pytest.approx(0.30, abs=1e-4)
    assert c.loc[end - pd.Timedelta(hours=1)] == pytest.approx(0.25 + 0.01 * (16 - 1 / 24), abs=1e-4)


def test_stuck_drop_spikes_and_disconnected_look_as_intended() -> None:
    base = hourly()
    base.loc[base["sensor"] == "a", "vwc"] = 0.2 + 0.001 * np.arange(24 * 30)
    start = START + 3 * DAY
    faults = [T.Fault("stuck", days=5, site="S1", depth_cm=5.0, sensor="a", start=start),
              T.Fault("drop", days=None, site="S1", depth_cm=5.0, sensor="b", start=start),
              T.Fault("spikes", 0.2, 12, days=None, site="S1", depth_cm=5.0, sensor="c", start=start)]
    out = T.plant(base, faults, START + 20 * DAY, seed=3)
    a = series(out, "a")
    before = a.loc[start - pd.Timedelta(hours=1)]
    assert (a.loc[start: start + 5 * DAY - pd.Timedelta(hours=1)] == before).all()
    assert a.loc[start + 5 * DAY] > before  # resumes
    b = series(out, "b").loc[start: START + 20 * DAY - pd.Timedelta(hours=1)]  # never ends: up to the run's end
    assert b.max() < 0.01 and b.min() >= 0.0
    c = series(out, "c").loc[start: start + 2 * DAY - pd.Timedelta(hours=1)] - 0.25
    big = c.abs() > 0.12
    assert big.sum() == 4 and all(t.hour in (0, 12) for t in c.index[big])  # one spike every 12 h
    assert c[~big].std() == pytest.approx(T.SPIKE_NOISE, rel=0.5)

    gone = T.plant(base, [T.Fault("disconnected", days=4, site="S1", depth_cm=5.0, sensor="b", start=start)],
                   START + 20 * DAY)
    b = series(gone, "b")
    assert b.loc[start: start + 4 * DAY - pd.Timedelta(hours=1)].empty
    assert len(b.loc[start + 4 * DAY: start + 5 * DAY - pd.Timedelta(hours=1)]) == 24  # reports again


# --- scoring ----------------------------------------------------------------------------------------------------
def test_a_culprit_alert_counts_a_sibling_is_blamed_and_late_alerts_do_not_count() -> None:
    p = plan([STEP])
    det = S.detections_from_alerts(alerts(
        (1, "S1", "b", "sensor_fault", 3, 13),  # the culprit, the morning after the first faulty day
        (2, "S1", "a", "sensor_fault", 4),  # a healthy sibling blamed
        (3, "S1", "c", "sensor_fault", 16),  # after the fault + 3 days: not this fault's
        (4, "S1", "*", "cluster", 4),  # the fault read as a whole-cluster event
    ))
    score = S.score_run(det, p)
    roles = dict(zip(score.roles["id"], score.roles["role"], strict=True))
    assert roles == {1: "culprit", 2: "sibling", 3: "other", 4: "fault_as_event"}
    row = score.faults.iloc[0]
    assert row["detected"] and row["days_to_detect"] == 1
    assert row["siblings_blamed"] == 1 and row["as_event"] == 1 and row["alerts"] == 3
    assert row["closed_after_end"] == 1.0 and row["days_to_close"] == pytest.approx(1.25)
    total = S.summary([score])
    assert total["precision"] == pytest.approx(1 / 4)
    assert total["event_vs_fault_accuracy"] == pytest.approx(2 / 3)
    assert total["recall"] == 1.0


def test_wrong_sensor_or_kind_or_before_the_fault_is_not_a_detection() -> None:
    p = plan([STEP])
    det = S.detections_from_alerts(alerts(
        (1, "S1", "b", "sensor_fault", 1),  # raised before the fault began
        (2, "S1", "b", "deviation", 3),  # not a fault kind
        (3, "S3", "b", "sensor_fault", 3),  # another cluster
    ))
    score = S.score_run(det, p)
    assert not score.faults.iloc[0]["detected"]
    assert S.summary([score])["precision"] == 0.0
    assert S.summary([score])["recall"] == 0.0


def test_events_controls_system_alerts_and_the_false_alert_rate() -> None:
    rain = T.Event("rain", "S3", START + 5 * DAY, 50.0)
    p = plan([STEP], [rain], days=61)
    det = S.detections_from_alerts(alerts(
        (1, "S3", "*", "cluster", 6),  # the event, read as one
        (2, "S3", "a", "sensor_fault", 6),  # the event, read as a fault
        (3, "S2", "c", "sensor_fault", 20),  # a clean control
        (4, "*", "*", "calibration_drift", 30),  # system: apart
    ))
    score = S.score_run(det, p)
    assert list(score.roles["role"]) == ["event", "event_as_fault", "clean", "system"]
    ev = score.events.iloc[0]
    assert ev["as_event"] == 1 and ev["as_fault"] == 1
    total = S.summary([score])
    assert total["alerts"] == 3 and total["system_alerts"] == 1
    assert total["precision"] == pytest.approx(1 / 3)
    # 3 control sensors x 61 days = 6.01 sensor-months; one false alert
    assert total["false_per_100_clean_sensor_months"] == pytest.approx(100 / (3 * 61 / S.MONTH_DAYS))


def test_messages_are_attributed_by_idempotency_key_and_counted_per_route() -> None:
    lines = [{"path": "/field-1", "key": "alert:1:r1:opened:field-1#0"},
             {"path": "/field-1", "key": "alert:1:r2:reminder:field-1#0"},
             {"path": "/ops", "key": "alert:1:r3:escalated:ops#0"},
             {"path": "/field-1", "key": "alert:2:r1:opened:field-1#0"},
             {"path": "/ops", "key": None}]
    msgs = S.messages_from_receiver(lines)
    assert list(msgs["alert_id"].iloc[:4]) == [1, 1, 1, 2] and pd.isna(msgs["alert_id"].iloc[4])
    det = S.detections_from_alerts(alerts((1, "S1", "b", "sensor_fault", 3), (2, "S1", "a", "sensor_fault", 4)))
    score = S.score_run(det, plan([STEP]), msgs)
    row = score.faults.iloc[0]
    assert row["messages"] == 4 and row["reminders"] == 1 and row["incidents_notified"] == 2
    total = S.summary([score])
    assert total["messages"] == 5 and total["messages_per_route"] == {"field-1": 3, "ops": 2}
    assert total["reminders_share"] == pytest.approx(1 / 5)


def test_incident_keyed_messages_count_for_the_faults_of_their_incident() -> None:
    # issue 17 keys messages by incident; before, these were read as alert keys and every fault showed 0
    lines = [{"path": "/field-1", "key": "incident:7:field-1:n1:opened:field-1#0"},
             {"path": "/ops", "key": "incident:7:ops:n1:escalated:ops#0"},
             {"path": "/field-1", "key": "incident:7:field-1:n2:reminder:field-1#0"},
             {"path": "/field-1", "key": "digest:field-1:2024-05-03:field-1#0"}]
    msgs = S.messages_from_receiver(lines)
    assert list(msgs["incident"].iloc[:3]) == [7, 7, 7] and list(msgs["event"]) == [
        "opened", "escalated", "reminder", "digest"]
    frame = alerts((1, "S1", "b", "sensor_fault", 3), (2, "S1", "a", "deviation", 4)).assign(incident=[7, 7])
    score = S.score_run(S.detections_from_alerts(frame), plan([STEP]), msgs)
    row = score.faults.iloc[0]
    assert row["messages"] == 3 and row["reminders"] == 1 and row["incidents_notified"] == 1
    assert S.summary([score])["faults_one_incident_notified"] == 1.0


def test_peer_flags_become_episodes_raised_at_the_end_of_their_first_day() -> None:
    days = [START + d * DAY for d in (2, 3, 4, 9)]
    flags = pd.DataFrame({"time": days, "site": "S1", "depth_cm": 5.0, "sensor": "b"})
    det = S.detections_from_flags(flags)
    assert len(det) == 2
    assert det["raised"].iloc[0] == START + 3 * DAY and det["resolved"].iloc[0] == START + 5 * DAY
    score = S.score_run(det, plan([STEP]))
    assert score.faults.iloc[0]["days_to_detect"] == 1
    assert list(score.roles["role"]) == ["culprit", "culprit"]


def test_cosmos_world_plants_into_one_of_the_two_real_sensors() -> None:
    from tests.helpers import detection_worlds as W

    if not W.cosmos_available():
        pytest.skip("../shared/data (the COSMOS-UK export) is not here")
    names = W.cosmos_site_names(3)
    obs, _ = W.cosmos_record()
    calendar, shifts = W.cosmos_windows(1, 3, 40, obs)
    assert len({s.days for s in shifts}) == 3 and all(abs((s.days + 35) % 364) <= 70 for s in shifts)
    start = calendar + 20 * DAY
    step = T.Fault("step", 0.06, days=None, site=names[1], depth_cm=10.0, sensor="TDT2", start=start + 3 * DAY)
    p = T.RunPlan("c0", 1, start, start + 10 * DAY, [step], [T.Event("rain", names[2], start + 2 * DAY, 50.0)],
                  [(names[0], 10.0)], {(n, 10.0): ["TDT1", "TDT2"] for n in names})
    world = W.cosmos_world(p, 1, names, history=20, cycles=10)
    r = world.readings.set_index(["site", "sensor", "time"])["vwc"]
    clean = W.cosmos_world(T.RunPlan("c0", 1, start, start + 10 * DAY, [], [], [], {}), 1, names, history=20,
                           cycles=10).readings.set_index(["site", "sensor", "time"])["vwc"]
    diff = (r - clean.reindex(r.index)).round(4)
    planted = diff.loc[names[1], "TDT2"]
    assert (planted.loc[step.start: p.end - DAY] == 0.06).all() and (planted.loc[: step.start - DAY] == 0).all()
    assert (diff.loc[names[1], "TDT1"] == 0).all() and (diff.loc[names[0]] == 0).all()
    wet = diff.loc[names[2]]
    assert (wet.loc[:, start + 2 * DAY] == 0.1).all()  # both sensors of the event site wetted
    w = world.weather.set_index(["site", "time"])["precipitation_sum"]
    w0 = W.cosmos_world(T.RunPlan("c0", 1, start, start + 10 * DAY, [], [], [], {}), 1, names, history=20,
                        cycles=10).weather.set_index(["site", "time"])["precipitation_sum"]
    assert (w - w0).loc[names[2], start + 2 * DAY] == pytest.approx(50.0)
    assert set(world.readings["depth_cm"]) == {10.0} and world.cadence == "daily"


def test_issue_16_targets_from_fault_rows() -> None:
    drift = T.Fault("drift", 0.01, days=10, site="S1", depth_cm=5.0, sensor="a", start=START + 2 * DAY)
    slow = T.Fault("drift", 0.0005, days=10, site="S1", depth_cm=20.0, sensor="a", start=START + 2 * DAY)
    p = T.RunPlan("r0", 1, START, START + 20 * DAY, [STEP, drift, slow], [], [("S2", 5.0)],
                  {("S1", 5.0): ["a", "b", "c"], ("S1", 20.0): ["a", "b", "c"], ("S2", 5.0): ["a", "b", "c"]})
    det = S.detections_from_alerts(alerts((1, "S1", "b", "sensor_fault", 4), (2, "S1", "a", "sensor_fault", 6)))
    score = S.score_run(det, p)
    rows = {r["target"]: r for r in S.targets(score.faults, S.summary([score]))}
    step = rows["detected within 1 day: step >= 0.03, stuck, drop, disconnected"]
    assert step["value"] == 0.0 and step["met"] is False  # two cycles late
    late = rows["drift caught before it reaches 0.03 m3/m3"]  # 0.01/d found after 4 cycles: 0.04
    assert late["value"] == 0.0 and late["note"].startswith("0/1")  # 0.0005/d never reaches 0.03: not counted
    assert rows["spikes/noise detected within 3 days"]["met"] is None
    assert rows["recall of fault episodes"]["value"] == pytest.approx(1 / 3)


def test_heavy_rain_days_make_cluster_alerts_wetting_only_when_asked() -> None:
    """The simulator's own heavy rain wets whole clusters; scored with the run's weather, a cluster alert on
    such a day (or the day after) is the wetting it reports. Planted events keep their role, fault kinds
    are never wetting, light rain is not heavy, and without the weather the pinned truth is unchanged."""
    rain = T.Event("rain", "S3", START + 5 * DAY, 50.0)
    p = plan([STEP], [rain], days=61)
    days = pd.date_range(START, periods=61, freq="D", tz="UTC")
    weather = pd.concat([pd.DataFrame({"time": days, "site": s, "precipitation_sum": 0.0}) for s in ("S1", "S2", "S3")],
                        ignore_index=True)
    for site, day, mm in (("S2", 9, 12.0), ("S2", 15, 5.0), ("S1", 4, 30.0), ("S3", 5, 50.0), ("S2", 30, 10.0)):
        weather.loc[(weather["site"] == site) & (weather["time"] == START + day * DAY), "precipitation_sum"] = mm
    det = S.detections_from_alerts(alerts(
        (1, "S2", "*", "cluster", 10),  # the day after 12 mm at a control
        (2, "S2", "*", "cluster", 16),  # after 5 mm: not heavy
        (3, "S1", "*", "cluster", 5),  # 30 mm on a faulty cluster, inside the fault's window
        (4, "S2", "c", "sensor_fault", 10),  # a fault kind on a heavy-rain day: still false
        (5, "S3", "*", "cluster", 6),  # the planted event
        (6, "S2", "*", "cluster", 32),  # evaluated day 31, the day after 10 mm
        (7, "S2", "*", "cluster", 33),  # two days after: no longer
    ))
    pinned = S.score_run(det, p)
    assert list(pinned.roles["role"]) == ["clean", "clean", "fault_as_event", "clean", "event", "clean", "clean"]
    wet = S.score_run(det, p, heavy_rain=S.heavy_rain_days(weather))
    assert list(wet.roles["role"]) == ["wetting", "clean", "wetting", "clean", "event", "wetting", "clean"]
    total = S.summary([wet])
    assert total["precision"] == pytest.approx(4 / 7)
    assert total["event_vs_fault_accuracy"] == pytest.approx(1.0)  # wetting (3) and the event (1), all right
