"""Revision 0010 (detector state) on both backends: an upgrade from 0009 of a database with readings, an open
alert and a pending message keeps them all, adds the two state tables empty (the first detection is a cold
start that builds them from the raw readings), and goes back down without touching anything else."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from smmdn.alerts.daycache import daily_context
from smmdn.store import Store, migrate
from smmdn.store import alerts as db
from smmdn.store.sites import site_offsets
from tests.helpers import alert_world as W

TABLES = {"detector_days", "detector_sites"}


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    return request.getfixturevalue("pg_empty_url")


def _counts(store: Store) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
                for t in ("observations", "alerts", "alert_outbox", "sites", "sensors")}


def test_upgrade_to_0010_keeps_everything_and_starts_cold(empty_url: str) -> None:
    store = Store(empty_url)
    migrate.upgrade(store.engine, "0009")
    world = W.build(store, sites=("S1",), depths=(10.0,), days=6)
    store.write_observations(W.readings(world, range(5)), source="test")
    with store.engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO alerts (kind, site, depth_cm, sensor, window_start, window_end, status, created_at, "
            "dedup_key, details, revision, last_event_at) VALUES ('sensor_fault', 'S1', 10.0, 'c', :t, :t, 'open', "
            ":t, 'k1', :d, 1, :t)"), {"t": world.day(3).to_pydatetime(), "d": "{}"})
        conn.execute(sa.text(
            "INSERT INTO alert_outbox (idempotency_key, alert_id, event, team, target, title, body, status, "
            "attempts, next_attempt_at, created_at) VALUES ('alert:1:r1:opened:t#0', 1, 'opened', 't', 't#0', "
            "'x', 'b', 'pending', 0, :t, :t)"), {"t": world.day(4).to_pydatetime()})
    before = _counts(store)
    assert migrate.upgrade(store.engine, "0010") == ("0009", "0010")
    assert _counts(store) == before
    migrate.upgrade(store.engine)  # today's code reads the columns later revisions add (0011: the write band)
    assert store.read_detector_days().empty and store.read_detector_sites().empty
    assert db.read_outbox(store)["status"].tolist() == ["pending"]
    days = daily_context(store, world.day(0), world.now_after(4), site_offsets(store), db.sensor_periods(store))
    assert len(days) == 3 * 5 and len(store.read_detector_days()) >= 15  # built from the raw readings
    assert store.read_detector_sites()["site"].tolist() == ["S1"]
    migrate.downgrade(store.engine, "0009")
    with store.engine.connect() as conn:
        assert not TABLES & set(sa.inspect(conn).get_table_names())
    assert _counts(store) == before
    assert migrate.upgrade(store.engine) == ("0009", migrate.head_revision())
    assert pd.Timestamp(db.read_alerts(store)["window_start"].iloc[0]) == world.day(3)
    store.dispose()
