"""Revision 0005 on both backends: from the previous revision with data in place, constraints that hold the
lifecycle together (one active alert per series and kind, outbox keys unique), and back down again."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from smmdn.store import Store, migrate
from smmdn.store import tables as T


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    return request.getfixturevalue("pg_empty_url")


NOW = datetime(2024, 5, 1, tzinfo=UTC)


def _alert(key: str, status: str = "open") -> dict:
    return dict(dedup_key=key, kind="sensor_fault", site="A", depth_cm=10.0, sensor="c", window_start=NOW,
                window_end=NOW, status=status, details={}, created_at=NOW)


def test_upgrade_from_0004_keeps_alerts_and_enforces_one_active_alert(empty_url: str) -> None:
    store = Store(empty_url)
    migrate.upgrade(store.engine, "0004")
    with store.engine.begin() as conn:  # a database at 0004 that already holds an alert
        conn.execute(sa.text("INSERT INTO alerts (dedup_key, kind, site, depth_cm, sensor, window_start, window_end, "
                             "status, details, created_at) VALUES ('old', 'missing', 'A', 10, 'c', :t, :t, 'open', "
                             "'{}', :t)"), {"t": NOW})
    assert migrate.upgrade(store.engine) == ("0004", migrate.head_revision())
    with store.engine.begin() as conn:
        old = conn.execute(sa.select(T.alerts.c.revision, T.alerts.c.status).where(T.alerts.c.dedup_key == "old")).one()
        assert tuple(old) == (0, "open")
        conn.execute(T.alerts.insert().values(**_alert("first")))
        conn.execute(T.alerts.insert().values(**_alert("earlier", status="resolved")))  # history is fine
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(T.alerts.insert().values(**_alert("second")))  # a second active one for the same key
    with store.engine.begin() as conn:
        conn.execute(T.alerts.update().where(T.alerts.c.dedup_key == "first").values(status="resolved"))
        conn.execute(T.alerts.insert().values(**_alert("second")))  # allowed once the first is resolved
        row = dict(idempotency_key="k1", event="opened", team="t", target="t#0", title="x", body="y",
                   status="pending", attempts=0, next_attempt_at=NOW, created_at=NOW)
        conn.execute(T.alert_outbox.insert().values(**row))
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(T.alert_outbox.insert().values(**row))
    if store.is_postgres:
        assert "verification" in store.check()["hypertables"]
    migrate.downgrade(store.engine, "0004")
    with store.engine.connect() as conn:
        names = set(sa.inspect(conn).get_table_names())
        columns = {c["name"] for c in sa.inspect(conn).get_columns("alerts")}
    assert not names & set(T.ALERTING_TABLES) and "alerts" in names and "revision" not in columns
    store.init()
    assert migrate.current_revision(store.engine) == migrate.head_revision()
    store.dispose()
