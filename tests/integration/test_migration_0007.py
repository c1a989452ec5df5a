"""Revision 0007 (observations keep their source's flags) on both backends: an upgrade from 0006 of a
database with readings, pending messages and quarantined rows loses nothing, old readings read with empty
flags, new readings keep ISMN's and the provider's flags; and back down again."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
import sqlalchemy as sa

from smmdn.store import Store, migrate
from smmdn.store import alerts as db
from smmdn.store import tables as T

NOW = datetime(2024, 5, 1, 6, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    return request.getfixturevalue("pg_empty_url")


def test_upgrade_to_0007_keeps_readings_outbox_and_quarantine(empty_url: str) -> None:
    store = Store(empty_url)
    migrate.upgrade(store.engine, "0006")
    with store.engine.begin() as conn:  # a populated database at 0006
        conn.execute(T.sites.insert().values(site="S1", name="S1", latitude=40.0, longitude=-100.0, tags=[],
                                             attributes={}))
        conn.execute(sa.text(
            "INSERT INTO observations (time, site, depth_cm, sensor, vwc, quality_flag, source, ingested_at, "
            "updated_at) VALUES (:t, 'S1', 10.0, 'a', 0.25, 'ok', 'uscrn', :t, :t)"), {"t": NOW})
        conn.execute(sa.text(
            "INSERT INTO alert_outbox (idempotency_key, event, team, target, title, body, status, attempts, "
            "next_attempt_at, created_at) VALUES ('old', 'opened', 'default', 'default#0', 't', 'b', 'pending', 0, "
            ":t, :t)"), {"t": NOW})
        conn.execute(T.quarantine.insert().values(table_name="observations", source="toa5", site="S1", time=NOW,
                                                  row={"vwc": 1.7}, reason="vwc above 0.6", quarantined_at=NOW))
    assert migrate.upgrade(store.engine, "0007") == ("0006", "0007")
    migrate.upgrade(store.engine)  # and on to the head: the test reads through today's store
    assert list(db.read_outbox(store, status=["pending"])["idempotency_key"]) == ["old"]
    assert len(store.list_quarantine()) == 1
    old = store.read_observations(source_flags=True)
    assert old[["vwc", "quality_flag", "ismn_flag", "provider_flag"]].values.tolist() == [[0.25, "ok", "", ""]]
    assert list(store.read_observations().columns) == ["time", "site", "depth_cm", "sensor", "vwc", "quality_flag",
                                                       "source", "ingested_at"]  # unchanged for every reader
    new = pd.DataFrame({"time": [pd.Timestamp("2024-05-01T07:00Z")], "site": ["S1"], "depth_cm": [10.0],
                        "sensor": ["a"], "vwc": [0.26], "quality_flag": ["ismn_D06"], "ismn_flag": ["D06"],
                        "provider_flag": ["M"]})
    store.write_observations(new, source="ismn")
    got = store.read_observations(source_flags=True).set_index("source")
    assert got.loc["ismn", ["ismn_flag", "provider_flag"]].tolist() == ["D06", "M"]
    migrate.downgrade(store.engine, "0006")
    with store.engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("observations")}
        assert not {"ismn_flag", "provider_flag"} & columns
        assert conn.execute(sa.text("SELECT count(*) FROM observations")).scalar() == 2
        assert conn.execute(sa.text("SELECT count(*) FROM alert_outbox")).scalar() == 1
        assert conn.execute(sa.text("SELECT count(*) FROM quarantine")).scalar() == 1
    store.dispose()
