"""One bad landing file cannot stop the others; an outage rejects nothing; rejected files can come back.

All on the real databases: PostgreSQL + TimescaleDB (JSONB quarantine, CHECK constraints, roles) and
SQLite.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from sqlalchemy.engine import make_url

from smmdn.config import Settings
from smmdn.ingest import ingest_landing, retry_rejected
from smmdn.registry import parse_registry
from smmdn.store import Store
from tests.conftest import shared_path
from tests.integration.test_ingest_landing import OTHER
from tests.integration.test_ingest_landing import REGISTRY as LANDING_REGISTRY

NOW = pd.Timestamp("2024-06-10T00:00Z")
# the landing tests' logger site with its first sensor only (one column to poison)
REGISTRY = LANDING_REGISTRY.replace("          RH_Max: {depth_cm: 10, sensor: b, unit: percent}\n", "")
assert REGISTRY != LANDING_REGISTRY


def _sample(station: str = "Station") -> list[str]:
    text = shared_path("formats", "toa5", "Station_Daily.head.dat").read_text()
    return text.replace('"Station"', f'"{station}"', 1).splitlines()


def _set_rh_min(line: str, cell: str) -> str:
    fields = line.split(",")
    fields[10] = cell  # RH_Min (TIMESTAMP, RECORD, … see the header)
    return ",".join(fields)


def _drop(landing: Path, name: str, lines: list[str]) -> Path:
    path = landing / name
    path.write_text("\n".join(lines) + "\n")
    old = time.time() - 3600  # settled: fully uploaded
    os.utime(path, (old, old))
    return path


def _world(tmp_path: Path, store: Store, registry_text: str = REGISTRY):  # type: ignore[no-untyped-def]
    registry = parse_registry(registry_text)
    store.upsert_sites(registry.sites_frame())
    settings = Settings(_env_file=None, home=tmp_path, landing_dir=tmp_path / "landing")
    return settings, registry, settings.path("landing")


def test_non_finite_cells_are_quarantined_as_valid_json(tmp_path, store) -> None:  # type: ignore[no-untyped-def]
    """inf / Infinity / 1e999 / -INF in a TOA5 cell (the crash of issue 18 on PostgreSQL): quarantined with the
    raw record, the payload is valid JSON, the other records are stored and the file is processed."""
    settings, registry, landing = _world(tmp_path, store)
    lines = _sample()
    cells = {4: "inf", 5: "Infinity", 6: "1e999", 7: "-INF", 8: "INF"}
    for i, cell in cells.items():
        lines[i] = _set_rh_min(lines[i], cell)
    _drop(landing, "inf.dat", lines)
    [summary] = ingest_landing(store, settings, registry, now=NOW)
    assert summary.status == "ok", summary.line()
    q = store.list_quarantine(table="observations")
    non_finite = q[q["reason"].str.contains("non-finite")]
    assert sorted(r["line"] for r in non_finite["row"]) == [i + 1 for i in sorted(cells)]
    assert all(cell in r["raw"] for r, cell in zip(non_finite.sort_values("id")["row"], cells.values(), strict=True))
    assert (landing / "processed" / "inf.dat").exists()
    missing = sum(int(n.split()[0]) for n in summary.notes if "NAN values" in n)
    assert len(store.read_observations()) + len(q) + missing == len(lines) - 4  # every record accounted for


def test_quarantine_payload_is_valid_json_for_non_finite_floats(store) -> None:  # type: ignore[no-untyped-def]
    """Any path into quarantine (canonical frames from other sources too): non-finite floats become text."""
    frame = pd.DataFrame({"site": ["s", "s", "s"], "time": [NOW] * 3, "vwc": [float("inf"), float("-inf"),
                                                                              float("nan")],
                          "reason": ["vwc_not_numeric"] * 3})
    assert store.write_quarantine(frame, table="observations", source="test") == 3
    rows = list(store.list_quarantine()["row"])
    assert [r["vwc"] for r in rows] == ["inf", "-inf", None]
    if store.is_postgres:
        with psycopg.connect(store.engine.url.set(drivername="postgresql").render_as_string(False)) as conn:
            texts = [t for (t,) in conn.execute("SELECT row::text FROM quarantine ORDER BY id")]
        assert [json.loads(t)["vwc"] for t in texts] == ["inf", "-inf", None]


@pytest.mark.postgres
def test_a_value_the_database_refuses_rejects_only_that_file(tmp_path, pg_store, caplog) -> None:  # type: ignore[no-untyped-def]
    """The server refuses one file's value (a CHECK constraint here): that file is rejected with a reason
    file, a WARNING and a summary; the other file of the same batch is stored."""
    with pg_store.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE observations ADD CONSTRAINT no_eighth CHECK (vwc <> 0.125)")
    settings, registry, landing = _world(tmp_path, pg_store, REGISTRY + OTHER)
    _drop(landing, "a.dat", _sample())
    bad = _sample("Other")
    bad[6] = _set_rh_min(bad[6], "12.5")
    _drop(landing, "b.dat", bad)
    with caplog.at_level(logging.WARNING, logger="smmdn.ingest"):
        summaries = ingest_landing(pg_store, settings, registry, now=NOW)
    by = {s.status: s for s in summaries}
    assert sorted(by) == ["ok", "rejected"], [s.line() for s in summaries]
    assert "refused a value" in by["rejected"].error and "no_eighth" in by["rejected"].error
    assert "refused a value" in (landing / "rejected" / "b.dat.reason.txt").read_text()
    assert any("rejected" in r.getMessage() and "b.dat" in r.getMessage() for r in caplog.records)
    assert set(pg_store.read_observations()["site"]) == {"station"}
    assert (landing / "processed" / "a.dat").exists()
    assert pg_store.file_record(_sha(landing / "rejected" / "b.dat"))["status"] == "rejected"


def _sha(path: Path) -> str:
    from smmdn.sources.toa5 import sha256_bytes

    return sha256_bytes(path.read_bytes())


@pytest.mark.postgres
def test_an_outage_rejects_nothing_and_the_next_run_takes_the_files(tmp_path, pg_url, pg_cluster) -> None:  # type: ignore[no-untyped-def]
    """The role loses the right to write observations mid-operation (a real permission error of the
    server): the files stay in landing as 'failed' (environment), nothing is rejected; once the right is
    back the next run stores them."""
    admin = Store(pg_url)
    settings, registry, landing = _world(tmp_path, admin, REGISTRY + OTHER)
    database = make_url(pg_url).database
    with pg_cluster.connect(database) as conn:
        conn.autocommit = True
        conn.execute("CREATE ROLE ingest_limited LOGIN PASSWORD 'limited-pw'")
        conn.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ingest_limited")
        conn.execute("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO ingest_limited")
        conn.execute("REVOKE INSERT, UPDATE ON observations FROM ingest_limited")
    limited = Store(make_url(pg_url).set(username="ingest_limited", password="limited-pw").render_as_string(False))
    _drop(landing, "a.dat", _sample())
    _drop(landing, "b.dat", _sample("Other"))
    try:
        summaries = ingest_landing(limited, settings, registry, now=NOW)
        assert [s.status for s in summaries] == ["failed", "failed"], [s.line() for s in summaries]
        assert all(s.environment and s.retryable and "refused access" in s.error for s in summaries)
        assert {p.name for p in landing.iterdir() if p.is_file()} == {"a.dat", "b.dat"}
        assert not (landing / "rejected").exists()
        with pg_cluster.connect(database) as conn:
            conn.autocommit = True
            conn.execute("GRANT INSERT, UPDATE ON observations TO ingest_limited")
        again = ingest_landing(limited, settings, registry, now=NOW)
        assert [s.status for s in again] == ["ok"] and set(limited.read_observations()["site"]) == {"station",
                                                                                                     "other"}
    finally:
        limited.dispose()
        admin.dispose()


def test_a_database_that_is_down_leaves_every_file_in_landing(tmp_path, sqlite_store) -> None:  # type: ignore[no-untyped-def]
    settings, registry, landing = _world(tmp_path, sqlite_store)
    _drop(landing, "a.dat", _sample())
    _drop(landing, "b.dat", _sample())
    import socket

    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = Store(f"postgresql+psycopg://smmdn:pw@127.0.0.1:{port}/smmdn?connect_timeout=2")
    summaries = ingest_landing(down, settings, registry, now=NOW)
    assert [s.status for s in summaries] == ["failed", "failed"]
    assert all(s.environment and "start the database" in s.error for s in summaries)
    assert {p.name for p in landing.iterdir() if p.is_file()} == {"a.dat", "b.dat"}


def test_a_read_only_sqlite_database_is_an_environment_error(tmp_path, sqlite_store) -> None:  # type: ignore[no-untyped-def]
    settings, registry, landing = _world(tmp_path, sqlite_store)
    _drop(landing, "a.dat", _sample())
    path = make_url(str(sqlite_store.engine.url)).database
    read_only = Store(f"sqlite:///file:{path}?mode=ro&uri=true")
    [summary] = ingest_landing(read_only, settings, registry, now=NOW)
    assert summary.status == "failed" and summary.environment, summary.line()
    assert (landing / "a.dat").exists() and not (landing / "rejected").exists()


def test_a_rejected_file_dropped_again_after_the_fix_is_ingested(tmp_path, sqlite_store) -> None:  # type: ignore[no-untyped-def]
    """Issue 18 #3: a rejection does not make the bytes 'seen'; the reason of the last rejection stays."""
    settings, _, landing = _world(tmp_path, sqlite_store)
    unmapped = parse_registry(REGISTRY.replace("station: Station", "station: Nobody"))
    lines = _sample()
    _drop(landing, "a.dat", lines)
    [first] = ingest_landing(sqlite_store, settings, unmapped, now=NOW)
    assert first.status == "rejected" and "no registry site maps" in first.error
    sha = _sha(landing / "rejected" / "a.dat")
    reason = sqlite_store.file_record(sha)["reason"]
    _drop(landing, "a-again.dat", lines)  # the operator fixed the registry and dropped the file again
    [second] = ingest_landing(sqlite_store, settings, parse_registry(REGISTRY), now=NOW)
    assert second.status == "ok" and second.inserted > 0, second.line()
    record = sqlite_store.file_record(sha)
    assert record["status"] == "processed" and record["reason"] == reason
    _drop(landing, "a-third.dat", lines)  # processed bytes, by contrast, are not read twice
    [third] = ingest_landing(sqlite_store, settings, parse_registry(REGISTRY), now=NOW)
    assert third.status == "skipped"


def test_retry_moves_rejected_files_back_and_processes_them(tmp_path, sqlite_store) -> None:  # type: ignore[no-untyped-def]
    from smmdn.errors import InputError

    settings, registry, landing = _world(tmp_path, sqlite_store, REGISTRY + OTHER)
    unmapped = parse_registry(REGISTRY)
    _drop(landing, "a.dat", _sample("Other"))
    _drop(landing, "b.dat", _sample("Other"))
    (landing / "b.dat").write_text((landing / "b.dat").read_text().replace("2014-", "2015-"))
    os.utime(landing / "b.dat", (time.time() - 3600,) * 2)
    assert [s.status for s in ingest_landing(sqlite_store, settings, unmapped, now=NOW)] == ["rejected"] * 2
    with pytest.raises(InputError, match=r"nope\.dat"):
        retry_rejected(sqlite_store, settings, registry, ["nope.dat"])
    [one] = retry_rejected(sqlite_store, settings, registry, ["a.dat"], now=NOW)
    assert one.status == "ok" and (landing / "processed" / "a.dat").exists()
    stored_a = len(sqlite_store.read_observations())
    assert not (landing / "rejected" / "a.dat.reason.txt").exists() and (landing / "rejected" / "b.dat").exists()
    [rest] = retry_rejected(sqlite_store, settings, registry, all_rejected=True, now=NOW)
    assert rest.status == "ok" and not list((landing / "rejected").glob("*.dat"))
    assert len(sqlite_store.read_observations()) == 2 * stored_a > 0


def test_a_network_source_whose_write_fails_on_the_environment_is_reported_not_raised(tmp_path, sqlite_store) -> None:  # type: ignore[no-untyped-def]
    """USCRN fetched fine, the database refuses the write (read-only): a failed, retryable, environment summary."""
    from smmdn.ingest import ingest_sensors, load_sites
    from smmdn.registry import example_registry_path, load_registry
    from tests.helpers.http_server import Reply, serve
    from tests.helpers.uscrn_render import hourly02_line

    registry = load_registry(example_registry_path())
    load_sites(sqlite_store, registry)
    lines = [hourly02_line("94996", pd.Timestamp("2024-03-01T01:00Z") + pd.Timedelta(hours=i), -6,
                           [0.2, 0.25, 0.3, 0.31, 0.32]) for i in range(6)]
    path = make_url(str(sqlite_store.engine.url)).database
    read_only = Store(f"sqlite:///file:{path}?mode=ro&uri=true")
    with serve() as server:
        server.route("/u/hourly02/2024/CRNH0203-2024-NE_Lincoln_11_SW.txt", Reply("\n".join(lines) + "\n"))
        settings = Settings(_env_file=None, home=tmp_path, uscrn_url=f"{server.url}/u", http_retries=0)
        [summary] = ingest_sensors(read_only, settings, registry, sites=["NE_Lincoln_11_SW"],
                                   since=pd.Timestamp("2024-01-01T00:00Z"), until=pd.Timestamp("2024-12-31T00:00Z"),
                                   landing=False)
    assert summary.status == "failed" and summary.environment and summary.retryable, summary.line()
    assert "readonly" in summary.error
    assert sqlite_store.get_watermark("uscrn", "NE_Lincoln_11_SW") is None  # nothing moved
