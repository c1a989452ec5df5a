"""The detector state in the store (``smmdn.alerts.daycache``, revision 0010) on SQLite and TimescaleDB: the
cached daily values equal what the raw readings give, a rerun changes nothing, day by day equals a replay from
scratch, and late readings, missing or damaged state and a sensor replacement are all caught; detection for a
subset of sites (a shard) raises the same alerts as one run for all."""

from __future__ import annotations

from typing import Any

import pandas as pd

from smmdn.alerts import step as anomalies
from smmdn.alerts.daycache import daily_context
from smmdn.alerts.detect import daily_readings, within_periods
from smmdn.config import Settings
from smmdn.demo.receiver import AlertReceiver
from smmdn.store import Store
from smmdn.store import alerts as db
from smmdn.store import tables as T
from smmdn.store.sites import site_offsets
from tests.helpers import alert_world as W

DAY = pd.Timedelta(days=1)
STATE = ["site", "first_day", "fingerprint", "row_count", "digest"]


def _bend(site: str, depth: float, sensor: str, day: pd.Timestamp, values: Any) -> Any:
    """A drifting sensor (S1 c from day 8) and a flatlining one (S2 b, day 10)."""
    if site == "S1" and sensor == "c" and day >= W.START + 8 * DAY:
        return values + 0.004 * ((day - W.START).days - 7)
    if site == "S2" and sensor == "b" and day == W.START + 10 * DAY:
        return values * 0 + 0.25
    return values


def _world(store: Any, days: int = 16) -> W.World:
    world = W.build(store, sites=("S1", "S2", "S3"), depths=(10.0, 30.0), days=days + 2, horizon=3)
    W.write_forecasts(world, range(days + 1))
    return world


def _from_raw(store: Any, start: pd.Timestamp, now: pd.Timestamp) -> pd.DataFrame:
    """What detection computed before the state existed: the raw window, aggregated."""
    offsets = site_offsets(store)
    raw = store.read_observations(start=start - DAY, end=now + DAY)
    days = daily_readings(within_periods(raw, db.sensor_periods(store)), offsets)
    return days.loc[days["time"] >= start].reset_index(drop=True)


def _context(store: Any, start: pd.Timestamp, now: pd.Timestamp, sites: Any = None) -> pd.DataFrame:
    got = daily_context(store, start, now, site_offsets(store), db.sensor_periods(store), sites)
    return got.loc[got["time"] <= now].reset_index(drop=True)


def _same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    want = want.loc[want["time"] <= got["time"].max()] if len(got) else want
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True), check_dtype=False)


def _cached(store: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = store.read_detector_days().sort_values(["site", "depth_cm", "sensor", "time"]).reset_index(drop=True)
    return rows, store.read_detector_sites().sort_values("site").reset_index(drop=True)[STATE]


def test_cached_days_equal_raw_and_a_rerun_changes_nothing(store) -> None:  # type: ignore[no-untyped-def]
    world = _world(store)
    frame = W.readings(world, range(12), bend=_bend)
    hit = frame.index[(frame["site"] == "S1") & (frame["sensor"] == "a") & (frame["depth_cm"] == 10.0)
                      & (frame["time"] >= world.day(5)) & (frame["time"] < world.day(5) + pd.Timedelta(hours=4))]
    frame["quality_flag"] = "ok"
    frame.loc[hit, "quality_flag"] = "spike"
    store.write_observations(frame, source="test")
    start, now = world.day(2), world.now_after(11)
    cold = _context(store, start, now)
    _same(cold, _from_raw(store, start, now))
    assert len(cold) == 3 * 2 * 3 * 10 and cold["n_spike"].sum() == 4
    rows, state = _cached(store)
    again = _context(store, start, now)
    pd.testing.assert_frame_equal(again, cold)
    rows2, state2 = _cached(store)
    pd.testing.assert_frame_equal(rows2, rows)
    pd.testing.assert_frame_equal(state2, state)


def test_day_by_day_equals_a_replay_from_scratch(store) -> None:  # type: ignore[no-untyped-def]
    world = _world(store)
    window = 6
    for n in range(14):  # each day's readings arrive, the window moves on, old days are pruned
        store.write_observations(W.readings(world, [n], bend=_bend, seed=n), source="test")
        start, now = world.day(max(0, n - window)), world.now_after(n)
        _same(_context(store, start, now), _from_raw(store, start, now))
    daily_rows, daily_state = _cached(store)
    assert daily_rows["time"].min() == world.day(13 - window)  # pruned to the window
    with store._begin() as conn:  # cold start: no state at all
        conn.execute(T.detector_days.delete())
        conn.execute(T.detector_sites.delete())
    _same(_context(store, start, now), _from_raw(store, start, now))
    rows, state = _cached(store)
    pd.testing.assert_frame_equal(rows, daily_rows)
    pd.testing.assert_frame_equal(state, daily_state)


def test_a_replay_over_readings_already_stored_reads_them(store) -> None:  # type: ignore[no-untyped-def]
    """A replay or backfill: every day's readings are in the store before the first run; each day's run must
    read its day from raw (it is after the days the state covers), not wait for a change that never comes."""
    world = _world(store)
    store.write_observations(W.readings(world, range(12), bend=_bend), source="test")
    for n in range(2, 12):
        start, now = world.day(max(0, n - 5)), world.now_after(n)
        _same(_context(store, start, now), _from_raw(store, start, now))


def test_late_and_corrected_readings_are_recomputed(store) -> None:  # type: ignore[no-untyped-def]
    world = _world(store)
    frame = W.readings(world, range(10))
    store.write_observations(frame, source="test")
    start, now = world.day(0), world.now_after(9)
    before = _context(store, start, now)
    fix = frame.loc[(frame["site"] == "S2") & (frame["time"] == world.day(4) + pd.Timedelta(hours=3))].copy()
    fix["vwc"] += 0.05  # a corrected value for a day long evaluated
    fix["quality_flag"] = "gap"
    store.write_observations(fix, source="test")
    after = _context(store, start, now)
    _same(after, _from_raw(store, start, now))
    changed = after.merge(before, on=["time", "site", "depth_cm", "sensor"], suffixes=("", "_0"))
    moved = changed.loc[changed["vwc"] != changed["vwc_0"]]
    assert set(moved["site"]) == {"S2"} and set(moved["time"]) == {world.day(4)} and len(moved) == 6


def test_missing_or_damaged_state_rebuilds_itself(store) -> None:  # type: ignore[no-untyped-def]
    world = _world(store)
    store.write_observations(W.readings(world, range(10), bend=_bend), source="test")
    start, now = world.day(0), world.now_after(9)
    want = _from_raw(store, start, now)
    _context(store, start, now)
    rows, state = _cached(store)
    d = T.detector_days
    damage = [
        d.update().where(d.c.site == "S1").where(d.c.sensor == "a").where(d.c.time == world.day(3)).values(level=0.9),
        d.delete().where(d.c.site == "S2").where(d.c.time == world.day(5)),
        T.detector_sites.delete().where(T.detector_sites.c.site == "S3"),
        d.update().where(d.c.site == "S3").values(n=1),
    ]
    for statement in damage:
        with store._begin() as conn:
            conn.execute(statement)
        _same(_context(store, start, now), want)
        got_rows, got_state = _cached(store)
        pd.testing.assert_frame_equal(got_rows, rows)
        pd.testing.assert_frame_equal(got_state, state)


def test_a_sensor_replacement_rebuilds_its_site(store) -> None:  # type: ignore[no-untyped-def]
    world = _world(store)
    store.write_observations(W.readings(world, range(10)), source="test")
    start, now = world.day(0), world.now_after(9)
    _context(store, start, now)
    store.end_sensor("S1", 10.0, "b", world.day(6) + pd.Timedelta(hours=12))
    got = _context(store, start, now)
    _same(got, _from_raw(store, start, now))
    b = got.loc[(got["site"] == "S1") & (got["depth_cm"] == 10.0) & (got["sensor"] == "b")]
    assert b["time"].max() == world.day(6) and b.loc[b["time"] == world.day(6), "n"].iloc[0] == 12


def _alerts(store: Any) -> list[tuple]:
    a = db.read_alerts(store)
    return sorted((r.kind, r.site, float(r.depth_cm), r.sensor, r.status, str(r.window_start), str(r.window_end))
                  for r in a.itertuples())


def test_shards_raise_the_same_alerts_as_one_run(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Two shards (S1, S2+S3) day by day, and one run for every site on a twin database, from the same
    readings: the same alerts; each shard reads and marks only its own sites."""
    twin = Store(f"sqlite:///{tmp_path / 'twin.db'}")
    twin.init()
    worlds = [_world(s) for s in (store, twin)]
    rx = AlertReceiver(tmp_path / "rx.jsonl").start()
    routes = W.routes_file(tmp_path / "routes.yaml", rx, {"ops": []}, operators="ops")
    cfg = Settings(_env_file=None, home=tmp_path, alert_routes_file=routes, alert_lookback_days=3)
    for n in range(14):
        for world in worlds:
            world.store.write_observations(W.readings(world, [n], bend=_bend, seed=n), source="test")
        now = worlds[0].now_after(n)
        first = anomalies.detect(store, now, cfg, sites=["S1"])
        anomalies.detect(store, now, cfg, sites=["S2", "S3"])
        anomalies.network_checks(store, now, cfg)  # once per cycle, after the shards
        anomalies.detect(twin, now, cfg)
        assert first.series in (0, 6)  # S1's six series only
    assert set(store.read_detector_sites()["site"]) == {"S1", "S2", "S3"}
    mine = _alerts(store)
    assert any(k == "sensor_fault" and s == "S1" for k, s, *_ in mine)  # the drift is found
    assert mine == _alerts(twin)
    twin.dispose()
    rx.stop()
