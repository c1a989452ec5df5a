"""infra/backup.sh + infra/restore.sh on the test TimescaleDB: dump, drop, restore, same contents."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from smmdn.store import Store, migrate
from smmdn.store import tables as T
from tests.deploy.conftest import run, sample_observations, seed

pytestmark = pytest.mark.postgres


def _snapshot(url: str) -> dict[str, object]:
    """Row counts of every table plus what TimescaleDB and the grants must bring back."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        counts = {
            name: conn.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar_one() for name in T.metadata.tables
        }
        hypertables = conn.execute(
            sa.text("SELECT hypertable_name, num_chunks FROM timescaledb_information.hypertables ORDER BY 1")
        ).all()
        latest = conn.execute(sa.text("SELECT count(*) FROM latest_forecasts")).scalar_one()
        vwc_sum = conn.execute(sa.text("SELECT round(sum(vwc)::numeric, 6) FROM observations")).scalar_one()
        reader_grant = conn.execute(
            sa.text("SELECT has_table_privilege('smmdn_reader', 'observations', 'SELECT')")
        ).scalar_one()
    engine.dispose()
    return {
        "counts": counts,
        "hypertables": [tuple(r) for r in hypertables],
        "latest": latest,
        "vwc_sum": vwc_sum,
        "reader": reader_grant,
    }


def test_backup_drop_restore_round_trip(pg_cluster, pg_url, pg_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(pg_url)
    seed(store)
    store.dispose()
    before = _snapshot(pg_url)
    assert before["counts"]["observations"] == 240 and before["latest"] == 6
    assert dict(before["hypertables"])["observations"] >= 4  # several chunks, not one

    libpq_url = make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    backup = run(["bash", "infra/backup.sh", "-d", pg_url, str(tmp_path)], env=pg_env)  # SQLAlchemy URL accepted
    assert backup.returncode == 0, backup.stderr
    dump = backup.stdout.strip().splitlines()[-1]
    assert dump.endswith(".dump") and not list(tmp_path.glob("*.partial*"))
    meta = (tmp_path / f"{dump.rsplit('/', 1)[-1]}.meta").read_text()
    assert "timescaledb_version=2." in meta

    database = make_url(pg_url).database
    pg_cluster.drop_database(database)
    restore = run(["bash", "infra/restore.sh", "-c", "-d", libpq_url, dump], env=pg_env)
    assert restore.returncode == 0, restore.stderr
    steps = [line for line in restore.stderr.splitlines() if "timescaledb_p" in line or "pg_restore" in line]
    assert [s.split()[1] for s in steps] == ["timescaledb_pre_restore()", "pg_restore", "timescaledb_post_restore()"]

    after = _snapshot(pg_url)
    assert after == before
    # The restored hypertables take new data (catalog consistent, background workers back on).
    restored = Store(pg_url)
    assert migrate.current_revision(restored.engine) == migrate.head_revision()
    restored.write_observations(sample_observations(start="2022-01-01", days=40), source="test")
    assert restored.count("observations") == 240 + 80
    with restored.engine.connect() as conn:
        restoring = conn.execute(sa.text("SHOW timescaledb.restoring")).scalar_one()
    assert restoring == "off"
    restored.dispose()

    # Never over live data.
    again = run(["bash", "infra/restore.sh", "-d", libpq_url, dump], env=pg_env)
    assert again.returncode == 1 and "already has" in again.stderr


def test_backup_fails_loudly_and_leaves_no_file(pg_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = dict(pg_env, PGDATABASE="no_such_database")
    result = run(["bash", "infra/backup.sh", str(tmp_path / "x.dump")], env=env)
    assert result.returncode != 0 and "no_such_database" in result.stderr
    assert list(tmp_path.iterdir()) == []
