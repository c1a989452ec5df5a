"""The database failing under the ingest, on the real PostgreSQL + TimescaleDB: the server backend killed in
the middle of a large COPY (``pg_terminate_backend``), and the read-only role (``smmdn_reader``, the
dashboards' login, infra/db-users.sh) trying to write. Nothing partial is written, no file is rejected for
the environment's fault, and the rerun stores every reading once. The database down at start of a cycle
is in tests/faults/test_cycle.py, an outage of write rights mid-ingest in
tests/integration/test_ingest_isolation.py.
"""

from __future__ import annotations

import threading
import time

import pandas as pd
import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.faults import landing_files
from tests.faults.ledger import assert_no_duplicates, landing_state

pytestmark = pytest.mark.postgres

RECORDS = 20_000  # hourly records x 9 columns: a COPY of 180 000 rows
START = pd.Timestamp("2019-01-01", tz="UTC")


class CopyKiller(threading.Thread):
    """Watches ``database`` for a running COPY and terminates that backend once (as an OOM kill or a
    failover would)."""

    def __init__(self, cluster, database: str) -> None:  # type: ignore[no-untyped-def]
        super().__init__(daemon=True)
        self.cluster, self.database = cluster, database
        self.stop = threading.Event()
        self.killed: list[str] = []

    def run(self) -> None:
        with self.cluster.connect() as conn:
            while not self.stop.is_set():
                row = conn.execute(
                    "SELECT pid, query FROM pg_stat_activity WHERE datname = %s AND state = 'active' "
                    "AND query ILIKE 'COPY %%' AND pid <> pg_backend_pid()", (self.database,)).fetchone()
                if row:
                    conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                    self.killed.append(row[1])
                    return
                time.sleep(0.002)


def test_a_backend_killed_mid_copy_loses_nothing_and_the_rerun_stores_once(network, landing_env, pg_url, pg_cluster,
                                                                          pg_store, capsys) -> None:  # type: ignore[no-untyped-def]
    from smmdn.cli import main

    path = landing_files.write_long(landing_env, network.readings, RECORDS, START)
    killer = CopyKiller(pg_cluster, make_url(pg_url).database)
    killer.start()
    try:
        code = main(["ingest", "sensors", "--site", landing_files.SITE])
    finally:
        killer.stop.set()
        killer.join()
    text = capsys.readouterr()
    assert killer.killed, "no COPY was seen: the file is too small to catch one"
    assert code == 3, text  # the environment: rerun once it is back
    state = landing_state(landing_env)
    assert state["waiting"] == [path.name] and not state["rejected"], state  # kept for the rerun
    assert pg_store.count("observations") == 0 and pg_store.count("quarantine") == 0  # nothing partial

    assert main(["ingest", "sensors", "--site", landing_files.SITE]) == 0
    assert pg_store.count("observations") == RECORDS * len(landing_files.COLUMNS)
    assert landing_state(landing_env)["processed"] == [path.name]
    assert_no_duplicates(pg_store)


def test_the_reader_role_cannot_write_and_nothing_is_rejected_for_it(network, landing_env, pg_url, pg_store,
                                                                      login_user, capsys) -> None:  # type: ignore[no-untyped-def]
    """The dashboards' login pointed at the ingest by mistake: refused by the server (an environment error,
    exit 3), the file stays in landing; through the Store too; and the writer's rerun stores it."""
    from smmdn.cli import main
    from smmdn.commands.exits import as_smmdn_error
    from smmdn.demo.feeds import write_toa5_file
    from smmdn.errors import StoreUnavailable
    from smmdn.store import Store

    name, password = login_user(make_url(pg_url).database, "smmdn_reader")
    reader_url = make_url(pg_url).set(username=name, password=password).render_as_string(hide_password=False)
    day = pd.Timestamp("2024-03-10", tz="UTC")
    wide = landing_files.wide_day(network.readings, day, day)
    path = write_toa5_file(landing_env, landing_files.STATION, "Hourly", wide, day)
    code = main(["ingest", "--url", reader_url, "sensors", "--site", landing_files.SITE])
    text = capsys.readouterr()
    assert code == 3 and "refused access" in text.out + text.err, text
    assert landing_state(landing_env)["waiting"] == [path.name] and not (landing_env / "rejected").exists()

    reader = Store(reader_url)
    try:
        frame = pd.DataFrame({"time": [day], "site": [landing_files.SITE], "depth_cm": [5.0], "sensor": ["a"],
                              "vwc": [0.2]})
        for write in (lambda: reader.write_observations(frame, source="intruder"),
                      lambda: reader.write_quarantine(frame.assign(reason="test"), table="observations",
                                                      source="intruder")):
            with pytest.raises(Exception) as refused:  # the server's refusal, as the faces report it:
                write()
            error = as_smmdn_error(refused.value)
            assert isinstance(error, StoreUnavailable) and "refused access" in str(error), refused.value
        with psycopg.connect(make_url(reader_url).set(drivername="postgresql").render_as_string(False)) as conn, \
                pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM alert_outbox")
    finally:
        reader.dispose()
    assert pg_store.count("observations") == 0 and pg_store.count("quarantine") == 0

    assert main(["ingest", "sensors", "--site", landing_files.SITE]) == 0
    assert pg_store.count("observations") == len(wide) * len(landing_files.COLUMNS)
    assert_no_duplicates(pg_store)
