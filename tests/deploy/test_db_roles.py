"""Migration 0004: group roles on a real TimescaleDB; a reader reads only, a writer writes data only."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from smmdn.store import Store, migrate
from tests.deploy.conftest import sample_observations, seed

pytestmark = pytest.mark.postgres


def _as(url: str, user: str, password: str) -> str:
    """The libpq URL of ``url``'s database for another login."""
    parsed = make_url(url).set(drivername="postgresql", username=user, password=password)
    return parsed.render_as_string(hide_password=False)


def test_reader_selects_but_cannot_write(pg_url, login_user) -> None:  # type: ignore[no-untyped-def]
    store = Store(pg_url)
    seed(store)
    store.dispose()
    database = make_url(pg_url).database
    name, password = login_user(database, "smmdn_reader")

    with psycopg.connect(_as(pg_url, name, password), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM observations").fetchone()[0] == 240
        assert conn.execute("SELECT count(*) FROM latest_forecasts").fetchone()[0] == 6  # views too
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0] is False
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "5min"
        for statement in (
            "INSERT INTO sites (site, name) VALUES ('Z', 'intruder')",
            "UPDATE observations SET vwc = 0.5",
            "DELETE FROM forecasts",
            "CREATE TABLE scratch (x int)",
            "DROP TABLE observations",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match=r"permission denied|must be owner"):
                conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM sites").fetchone()[0] == 2


def test_writer_writes_through_the_store_but_cannot_change_the_schema(pg_url, login_user) -> None:  # type: ignore[no-untyped-def]
    admin = Store(pg_url)
    seed(admin)
    admin.dispose()
    name, password = login_user(make_url(pg_url).database, "smmdn_writer")
    writer_url = make_url(pg_url).set(username=name, password=password).render_as_string(hide_password=False)

    writer = Store(writer_url)
    # New months: the writer's insert creates new hypertable chunks, not only rows in existing ones.
    writer.write_observations(sample_observations(start="2021-01-01", days=90), source="test")
    run_id = writer.start_forecast_run("2021-03-31", "v1")
    writer.finish_forecast_run(run_id)
    writer.write_validation_run("test", True, {"checks": 1})  # a serial key: needs the sequence
    assert writer.count("observations") == 240 + 180
    assert migrate.current_revision(writer.engine) == migrate.head_revision()
    with writer.engine.connect() as conn:
        for statement in ("CREATE TABLE scratch (x int)", "DROP TABLE observations", "TRUNCATE sites CASCADE"):
            with pytest.raises(sa.exc.ProgrammingError, match=r"permission denied|must be owner"):
                conn.execute(sa.text(statement))
            conn.rollback()
    writer.dispose()


def test_tables_created_by_later_migrations_are_granted_by_default(pg_url, login_user) -> None:  # type: ignore[no-untyped-def]
    database = make_url(pg_url).database
    reader, reader_pw = login_user(database, "smmdn_reader")
    writer, writer_pw = login_user(database, "smmdn_writer")
    owner = sa.create_engine(pg_url)
    with owner.begin() as conn:  # what a future migration does, as the same owner role
        conn.execute(sa.text("CREATE TABLE later_table (id serial PRIMARY KEY, note text)"))
    owner.dispose()
    with psycopg.connect(_as(pg_url, writer, writer_pw), autocommit=True) as conn:
        conn.execute("INSERT INTO later_table (note) VALUES ('from a flow')")
    with psycopg.connect(_as(pg_url, reader, reader_pw), autocommit=True) as conn:
        assert conn.execute("SELECT note FROM later_table").fetchall() == [("from a flow",)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO later_table (note) VALUES ('no')")


def test_role_migration_is_idempotent_and_reversible(pg_empty_url) -> None:  # type: ignore[no-untyped-def]
    store = Store(pg_empty_url)
    store.init()
    store.init()  # roles already exist (cluster-wide): still fine
    assert migrate.current_revision(store.engine) == migrate.head_revision()

    def reader_can_select() -> bool:
        with store.engine.connect() as conn:
            return conn.execute(
                sa.text("SELECT has_table_privilege('smmdn_reader', 'observations', 'SELECT')")
            ).scalar()

    assert reader_can_select()
    migrate.downgrade(store.engine, "0003")
    assert not reader_can_select()
    with store.engine.connect() as conn:  # the roles stay: other databases of the cluster may use them
        roles = conn.execute(sa.text("SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE 'smmdn\\_%'"))
        assert {("smmdn_reader", False), ("smmdn_writer", False)} <= set(roles)
    store.init()
    assert reader_can_select()
    store.dispose()


def test_role_migration_is_a_no_op_on_sqlite(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(f"sqlite:///{tmp_path / 'roles.db'}")
    migrate.upgrade(store.engine, "0004")
    assert migrate.current_revision(store.engine) == "0004"
    migrate.downgrade(store.engine, "0003")
    assert migrate.current_revision(store.engine) == "0003"
    store.dispose()
