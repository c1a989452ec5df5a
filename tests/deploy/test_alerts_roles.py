"""Tables created by revision 0005 (after 0004 set the default privileges): the writer role can work the
outbox and the verification hypertable (serial keys, new chunks), the reader can only read them."""

from __future__ import annotations

import pandas as pd
import psycopg
import pytest
from sqlalchemy.engine import make_url

from smmdn.store import Store
from smmdn.store import alerts as db
from smmdn.store import verification as scores

pytestmark = pytest.mark.postgres


def _url(url: str, user: str, password: str, driver: str = "postgresql+psycopg") -> str:
    return make_url(url).set(drivername=driver, username=user, password=password).render_as_string(hide_password=False)


def test_writer_works_the_alert_tables_and_reader_only_reads(pg_url, login_user) -> None:  # type: ignore[no-untyped-def]
    database = make_url(pg_url).database
    writer_name, writer_pw = login_user(database, "smmdn_writer")
    reader_name, reader_pw = login_user(database, "smmdn_reader")
    writer = Store(_url(pg_url, writer_name, writer_pw))
    now = pd.Timestamp("2024-05-01T06:00Z")
    db.enqueue(writer, [dict(idempotency_key="k", event="test", team="t", target="t#0", title="x", body="y",
                             status="pending", attempts=0, next_attempt_at=now, created_at=now)])
    claimed = db.claim(writer, db.due_ids(writer, now, pd.Timedelta(minutes=10))[0], now, pd.Timedelta(minutes=10))
    assert claimed is not None and claimed["attempts"] == 1
    db.add_silence(writer, kind="silence", site="*", starts_at=now, ends_at=now + pd.Timedelta(days=1),
                   created_by="alice", created_at=now)
    rows = pd.DataFrame({"valid_time": pd.to_datetime(["2024-05-01", "2024-09-01"], utc=True), "site": "A",
                         "depth_cm": 10.0, "sensor": "a", "issue_time": pd.Timestamp("2024-04-30", tz="UTC"),
                         "model_version": "m", "lead": 1, "observed": 0.2, "mean": 0.21, "crps": 0.01, "pit": 0.4,
                         "in_50": True, "in_90": True, "width_50": 0.02, "width_90": 0.05, "scored_at": now})
    assert scores.write_verification(writer, rows).inserted == 2  # the second row lands in a new chunk
    writer.dispose()
    with psycopg.connect(_url(pg_url, reader_name, reader_pw, "postgresql"), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM verification").fetchone()[0] == 2
        assert conn.execute("SELECT status FROM alert_outbox").fetchone()[0] == "sending"
        assert conn.execute("SELECT count(*) FROM alert_silences").fetchone()[0] == 1
        for statement in ("UPDATE alert_outbox SET status = 'sent'", "DELETE FROM verification",
                          "INSERT INTO alert_silences (kind, site, starts_at, ends_at, created_by, created_at) "
                          "VALUES ('silence', '*', now(), now() + interval '1 day', 'x', now())"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
