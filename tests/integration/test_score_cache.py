"""The detector's cached daily scores (``smmdn.alerts.scorecache``, revision 0011) on SQLite and TimescaleDB: day
by day, the verdicts equal a scoring from scratch, and detection raises the same alerts as a twin store that
keeps no cache — also after a corrected reading for a day long scored, a late forecast run that outranks the
one a day was judged by, and cached rows that were altered or deleted in the store."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from smmdn.alerts import step
from smmdn.alerts.daycache import daily_context
from smmdn.alerts.detect import Rules, complete, score_days
from smmdn.alerts.scorecache import VERDICT, score_window
from smmdn.config import Settings
from smmdn.demo.receiver import AlertReceiver
from smmdn.model.mixture import summarise
from smmdn.store import Store
from smmdn.store import alerts as db
from smmdn.store import tables as T
from smmdn.store.forecasts import forecasts_issued_before
from smmdn.store.sites import site_offsets
from tests.helpers import alert_world as W

DAY = pd.Timedelta(days=1)
WINDOW = 8


def _bend(site: str, depth: float, sensor: str, day: pd.Timestamp, values: Any) -> Any:
    """A drifting sensor (S1 c from day 6)."""
    if site == "S1" and sensor == "c" and day >= W.START + 6 * DAY:
        return values + 0.006 * ((day - W.START).days - 5)
    return values


def _world(store: Any) -> W.World:
    world = W.build(store, sites=("S1", "S2"), depths=(10.0, 30.0), days=16, horizon=3)
    W.write_forecasts(world, range(15))
    return world


def _late_run(world: W.World, valid: pd.Timestamp) -> None:
    """A run issued half a day before ``valid`` (it outranks the run of the day before), far wetter."""
    issue = valid - pd.Timedelta(hours=12)
    truth = world.truth.set_index(["site", "depth_cm", "time"])["vwc"]
    rows = [{"site": s, "depth_cm": d, "issue_time": issue, "valid_time": valid, "lead": 1,
             **W.mixture(float(truth.loc[(s, d, valid)]) + 0.08, world.sigma)}
            for s in world.sites for d in world.depths]
    frame = pd.DataFrame(rows)
    k = sum(1 for c in frame.columns if c.startswith("weight_"))
    w, mu, sd = (frame[[f"{p}_{i}" for i in range(k)]].to_numpy() for p in ("weight", "mean", "sigma"))
    for name, values in summarise(w, mu, sd).items():
        frame[name] = values
    run = world.store.start_forecast_run(issue, "m1", run_id="late")
    world.store.write_forecasts(frame, run_id=run, model_version="m1")
    world.store.finish_forecast_run(run)


def _window(store: Any, now: pd.Timestamp) -> tuple[pd.DataFrame, pd.Series, pd.Timestamp]:
    offsets = site_offsets(store)
    start = (now - WINDOW * DAY).floor("D")
    days = daily_context(store, start, now, offsets, db.sensor_periods(store))
    days = days.loc[complete(days, now, offsets)].reset_index(drop=True)
    return days, pd.Series(days["time"] == days["time"].max()), start


def _alerts(store: Any) -> list[tuple]:
    """The alerts and their observed values (to 1e-12: PostgreSQL's raw-reading read parses a value an ulp
    apart from SQLite's now and then, ``store.observations.read_observation_rows``)."""
    a = db.read_alerts(store)
    return sorted((r.kind, r.site, float(r.depth_cm), r.sensor, r.status, str(r.window_start), str(r.window_end),
                   round(float(r.observed), 12)) for r in a.itertuples())


def test_cached_scores_equal_scoring_from_scratch(store) -> None:  # type: ignore[no-untyped-def]
    world = _world(store)
    rules = Rules()
    scored_days, rescored = 0, {}
    for n in range(13):
        store.write_observations(W.readings(world, [n], bend=_bend, seed=n), source="test")
        now = world.now_after(n)
        if n == 8:  # a corrected reading for day 4, long scored
            fix = W.readings(world, [4], bend=_bend, seed=4)
            fix = fix.loc[fix["site"] == "S2"].assign(vwc=lambda f: f["vwc"] + 0.05)
            store.write_observations(fix, source="test")
        if n == 10:  # a late run that outranks the one day 7 was judged by
            _late_run(world, world.day(7))
        if n == 11:  # cached rows altered and deleted in the store
            s = T.detector_scores
            with store._begin() as conn:
                conn.execute(s.update().where(s.c.site == "S1").values(outside=True, pit=0.999))
                conn.execute(s.delete().where(s.c.site == "S2").where(s.c.time == world.day(6)))
        days, fresh, start = _window(store, now)
        got = score_window(store, days, fresh, rules, start)
        forecasts = forecasts_issued_before(store, days["time"].min(), days["time"].max() + DAY,
                                            sites=sorted(days.loc[fresh, "site"].unique()))
        want = score_days(days, forecasts, rules)
        pd.testing.assert_frame_equal(got[["time", "site", "depth_cm", "sensor", *VERDICT, "direction"]],
                                      want[["time", "site", "depth_cm", "sensor", *VERDICT, "direction"]])
        scored_days = max(scored_days, int(got["time"].nunique()))
        rescored[n] = got.attrs["rescored"]
    assert scored_days > 3
    fresh_rows = 2 * 2 * 3  # sites x depths x sensors of the new day
    assert rescored[12] == rescored[7] == fresh_rows  # a plain day: only the new day is scored, the rest is cached
    assert rescored[8] > fresh_rows and rescored[10] > fresh_rows and rescored[11] > fresh_rows  # the changes
    day7 = got.loc[got["time"] == world.day(7)]
    late = forecasts_issued_before(store, world.day(7), world.day(8))
    assert set(late["issue_time"]) == {world.day(7) - pd.Timedelta(hours=12)}
    assert np.allclose(np.sort(day7["q50"].unique()), np.sort(late["q50"].unique()))  # judged by the late run


def test_detection_with_the_cache_equals_a_twin_without(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    twin = Store(f"sqlite:///{tmp_path / 'twin.db'}")
    twin.init()
    worlds = [_world(s) for s in (store, twin)]
    rx = AlertReceiver(tmp_path / "rx.jsonl").start()
    routes = W.routes_file(tmp_path / "routes.yaml", rx, {"ops": []}, operators="ops")
    cfg = Settings(_env_file=None, home=tmp_path, alert_routes_file=routes, alert_lookback_days=3,
                   alert_consensus_days=WINDOW)
    for n in range(14):
        for world in worlds:
            world.store.write_observations(W.readings(world, [n], bend=_bend, seed=n), source="test")
            if n == 8:
                fix = W.readings(world, [5], bend=_bend, seed=5)
                world.store.write_observations(fix.loc[fix["site"] == "S1"].assign(vwc=lambda f: f["vwc"] - 0.03),
                                               source="test")
            if n == 9:
                _late_run(world, world.day(8))
        with twin._begin() as conn:  # the twin scores every day from scratch, as detection did before the cache
            conn.execute(T.detector_scores.delete())
        if n == 11:
            s = T.detector_scores
            with store._begin() as conn:
                conn.execute(s.update().where(s.c.site == "S1").values(outside=False, severe=False))
        now = worlds[0].now_after(n)
        one = step.detect(store, now, cfg)
        other = step.detect(twin, now, cfg)
        assert (one.observations, one.outside, one.opened, one.resolved) == (
            other.observations, other.outside, other.opened, other.resolved)
    mine = _alerts(store)
    assert any(k == "sensor_fault" and s == "S1" for k, s, *_ in mine)  # the drift is found
    assert mine == _alerts(twin)
    twin.dispose()
    rx.stop()
