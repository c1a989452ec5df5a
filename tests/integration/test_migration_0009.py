"""Revision 0009 (incidents) on both backends: an upgrade from 0007 of a database with active alerts, messages
already sent and messages still pending loses nothing and sends nothing twice — the pending rows keep their
old ``alert:…`` keys and are delivered once, each active alert becomes an incident whose teams count as told,
so the first notification run after the upgrade queues nothing new for them; and back down again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from smmdn.alerts.deliver import deliver_outbox
from smmdn.alerts.routing import parse_routes
from smmdn.config import Settings
from smmdn.demo.receiver import AlertReceiver
from smmdn.store import Store, migrate
from smmdn.store import alerts as db
from smmdn.store import incidents as idb
from smmdn.store import tables as T

NOW = datetime(2024, 5, 1, 6, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    return request.getfixturevalue("pg_empty_url")


def _populate(store: Store) -> None:
    """At 0007: one open sensor fault (told: opened, sent) with a pending reminder, one quarantined row."""
    with store.engine.begin() as conn:
        conn.execute(T.sites.insert().values(site="S1", name="S1", latitude=40.0, longitude=-100.0,
                                             tags=["team:north"], attributes={}))
        conn.execute(sa.text(
            "INSERT INTO alerts (kind, site, depth_cm, sensor, window_start, window_end, status, created_at, "
            "dedup_key, details, revision, last_event_at) VALUES ('sensor_fault', 'S1', 10.0, 'c', :t, :t, 'open', "
            ":t, 'k1', :d, 2, :t)"), {"t": NOW, "d": "{}"})
        for key, event, status, at in (("alert:1:r1:opened:north#0", "opened", "sent", NOW),
                                       ("alert:1:r2:reminder:north#0", "reminder", "pending",
                                        NOW + timedelta(hours=24))):
            conn.execute(sa.text(
                "INSERT INTO alert_outbox (idempotency_key, alert_id, event, team, target, title, body, status, "
                "attempts, next_attempt_at, created_at) VALUES (:k, 1, :e, 'north', 'north#0', :title, 'b', :s, 0, "
                ":t, :t)"), {"k": key, "e": event, "s": status, "t": at, "title": f"[smmdn] {event}"})


def test_upgrade_to_0009_keeps_pending_messages_and_sends_nothing_twice(empty_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(empty_url)
    migrate.upgrade(store.engine, "0007")
    _populate(store)
    assert migrate.upgrade(store.engine, "0009") == ("0007", "0009")
    box = db.read_outbox(store)
    assert list(box["idempotency_key"]) == ["alert:1:r1:opened:north#0", "alert:1:r2:reminder:north#0"]
    assert list(box["status"]) == ["sent", "pending"] and box["incident_id"].isna().all()
    [incident] = idb.read_incidents(store).to_dict("records")
    assert (incident["kind"], incident["root_alert_id"], incident["status"]) == ("sensor_fault", 1, "open")
    notice = idb.read_notices(store)[(incident["id"], "north")]
    assert notice["seq"] == 2 and notice["reminders"] == 1 and notice["last_event"] == "reminder"
    rx = AlertReceiver(tmp_path / "rx.jsonl").start()
    try:
        routes = parse_routes({"teams": {"north": {"urls": [rx.url_for("north")], "digest": False}},
                               "routes": [{"tags": ["team:north"], "teams": ["north"]}]}, "routes.yaml")
        cfg = Settings(_env_file=None, home=tmp_path)
        at = pd.Timestamp(NOW) + pd.Timedelta(hours=25)
        first = deliver_outbox(store, cfg, at, routes=routes)
        assert first.sent == 1 and first.notifications["queued"] == {}  # the old pending row, nothing new
        assert deliver_outbox(store, cfg, at + pd.Timedelta(hours=1), routes=routes).sent == 0
        assert [m["key"] for m in rx.messages()] == ["alert:1:r2:reminder:north#0"]
        later = deliver_outbox(store, cfg, pd.Timestamp(NOW) + pd.Timedelta(hours=24 + 49), routes=routes)
        assert later.notifications["queued"] == {"reminder": 1}  # the clock carried over: 24 h, then 48 h
        assert rx.messages()[-1]["key"] == f"incident:{incident['id']}:north:n3:reminder:north#0"
    finally:
        rx.stop()
    migrate.downgrade(store.engine, "0007")
    with store.engine.connect() as conn:
        names = set(sa.inspect(conn).get_table_names())
        assert not {"alert_incidents", "alert_incident_members", "alert_incident_notices"} & names
        assert "incident_id" not in {c["name"] for c in sa.inspect(conn).get_columns("alert_outbox")}
        assert conn.execute(sa.text("SELECT count(*) FROM alert_outbox")).scalar() == 3
    store.dispose()
