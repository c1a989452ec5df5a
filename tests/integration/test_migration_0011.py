"""Revision 0011 (the detector state's write band) on both backends: an upgrade from 0010 of a database with
readings, a built detector state, an open alert, a pending message and a quarantined row keeps them all; the
state built before the upgrade (no band recorded) is kept, not rebuilt, re-reads its band once and still equals
the raw readings; down removes only the two columns."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from smmdn.alerts.daycache import daily_context
from smmdn.alerts.detect import daily_readings, within_periods
from smmdn.store import Store, migrate
from smmdn.store import alerts as db
from smmdn.store.sites import site_offsets
from tests.helpers import alert_world as W

BAND = {"band_since", "band"}
TABLES = ("observations", "alerts", "alert_outbox", "quarantine", "sites", "sensors", "detector_days")


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    return request.getfixturevalue("pg_empty_url")


def _counts(store: Store) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}


def _columns(store: Store) -> set[str]:
    with store.engine.connect() as conn:
        return {c["name"] for c in sa.inspect(conn).get_columns("detector_sites")}


def _raw(store: Store, start: pd.Timestamp, now: pd.Timestamp) -> pd.DataFrame:
    raw = store.read_observations(start=start - pd.Timedelta(days=1), end=now + pd.Timedelta(days=1))
    days = daily_readings(within_periods(raw, db.sensor_periods(store)), site_offsets(store))
    return days.loc[(days["time"] >= start) & (days["time"] <= now)].reset_index(drop=True)


def _context(store: Store, start: pd.Timestamp, now: pd.Timestamp) -> pd.DataFrame:
    got = daily_context(store, start, now, site_offsets(store), db.sensor_periods(store))
    return got.loc[got["time"] <= now].reset_index(drop=True)


def test_upgrade_to_0011_keeps_everything_and_the_state(empty_url: str) -> None:
    store = Store(empty_url)
    migrate.upgrade(store.engine)
    world = W.build(store, sites=("S1", "S2"), depths=(10.0,), days=8)
    store.write_observations(W.readings(world, range(6)), source="test")
    start, now = world.day(0), world.now_after(5)
    _context(store, start, now)  # a state built ...
    migrate.downgrade(store.engine, "0010")  # ... as revision 0010 left it: no band recorded
    assert not BAND & _columns(store)
    store.write_quarantine(pd.DataFrame({"time": [world.day(2)], "site": ["S1"], "depth_cm": [10.0],
                                         "sensor": ["a"], "vwc": [7.0], "reason": ["range"]}),
                           table="observations", source="test")
    with store.engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO alerts (kind, site, depth_cm, sensor, window_start, window_end, status, created_at, "
            "dedup_key, details, revision, last_event_at) VALUES ('sensor_fault', 'S1', 10.0, 'c', :t, :t, 'open', "
            ":t, 'k1', :d, 1, :t)"), {"t": world.day(3).to_pydatetime(), "d": "{}"})
        conn.execute(sa.text(
            "INSERT INTO alert_outbox (idempotency_key, alert_id, event, team, target, title, body, status, "
            "attempts, next_attempt_at, created_at) VALUES ('alert:1:r1:opened:t#0', 1, 'opened', 't', 't#0', "
            "'x', 'b', 'pending', 0, :t, :t)"), {"t": world.day(4).to_pydatetime()})
    before, state = _counts(store), store.read_detector_days()
    assert before["detector_days"] == len(state) > 0 and before["quarantine"] == 1
    assert migrate.upgrade(store.engine, "0011") == ("0010", "0011")
    assert _columns(store) >= BAND and _counts(store) == before
    sites = store.read_detector_sites()
    assert sites["band"].isna().all() and sites["band_since"].isna().all()
    assert db.read_outbox(store)["status"].tolist() == ["pending"]
    assert db.read_alerts(store, status=db.ACTIVE)["sensor"].tolist() == ["c"]
    store.write_observations(W.readings(world, [6], seed=6), source="test")
    got = _context(store, start, world.now_after(6))  # the old state is brought up to date
    pd.testing.assert_frame_equal(got, _raw(store, start, world.now_after(6)), check_dtype=False)
    sites = store.read_detector_sites()
    assert sites["band"].notna().all() and sites["band_since"].notna().all()
    kept = store.read_detector_days().merge(state, on=["time", "site", "depth_cm", "sensor"])
    assert len(kept) == len(state)  # every old row is still there
    migrate.downgrade(store.engine, "0010")
    assert not BAND & _columns(store)
    assert _counts(store)["alert_outbox"] == 1 and _counts(store)["quarantine"] == 1
    assert migrate.upgrade(store.engine) == ("0010", migrate.head_revision())
    store.dispose()
