"""Migrations: from empty, from the previous revision, down and up again; tables match the live schema."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from smmdn.store import Store, migrate
from smmdn.store.tables import metadata


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    return request.getfixturevalue("pg_empty_url")


def _schema_diff(engine: sa.Engine) -> list:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        diffs = compare_metadata(context, metadata)
    # TimescaleDB adds its own index on the partitioning column of each hypertable.
    return [d for d in diffs if not (d[0] == "add_index" or d[0] == "remove_index")]


def test_upgrade_from_empty_then_previous_revision_then_down_and_up(empty_url: str) -> None:
    store = Store(empty_url)
    head = migrate.head_revision()
    assert migrate.current_revision(store.engine) is None
    migrate.upgrade(store.engine, "0001")
    assert migrate.current_revision(store.engine) == "0001"
    before, after = migrate.upgrade(store.engine)
    assert (before, after) == ("0001", head)
    assert _schema_diff(store.engine) == []
    migrate.downgrade(store.engine, "base")
    with store.engine.connect() as conn:
        assert "observations" not in sa.inspect(conn).get_table_names()
    store.init()
    assert migrate.current_revision(store.engine) == head
    if store.is_postgres:
        assert {"observations", "forcing", "forecasts"} <= set(store.check()["hypertables"])
    store.dispose()
