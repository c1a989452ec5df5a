"""Large landing files streamed in chunks: the same result as one batch, memory bounded by the chunk, and
still all or nothing per file (staged, then published in one transaction). On real SQLite and
PostgreSQL + TimescaleDB; the chunk size is made small so a few-MB file streams in many chunks (what
is shown is behaviour: chunk counts, what is visible when, what is left after a failure)."""

from __future__ import annotations

import gc
import hashlib
import io
import os
import time
import weakref
from pathlib import Path

import pandas as pd
import pytest

from smmdn.config import Settings
from smmdn.ingest import ingest_landing, retry_rejected
from smmdn.registry import parse_registry
from smmdn.sources.toa5 import Toa5Reader, parse_toa5
from smmdn.store import Store
from tests.helpers import toa5_stream

NOW = pd.Timestamp("2030-01-01T00:00Z")
RECORDS = 3000
CHUNK_ROWS = 2000  # 4 mapped columns → 500 records per chunk → 6 chunks for 3000 records
FLAT = range(300, 1800)  # one-minute records: 25 h of one value


def _lines(records: int = RECORDS) -> list[str]:
    text = toa5_stream.header() + toa5_stream.records(0, records)
    return text.splitlines()


def _planted() -> list[str]:
    """Bad cells, a broken clock, a short record, NAN, and a 25-hour flatline at 5 cm over chunks 0–3."""
    lines = _lines()
    lines[4 + 10] = lines[4 + 10].rsplit(",", 1)[0] + ",INF"
    lines[4 + 1200] = lines[4 + 1200].replace(",0.2", ",abc", 1)
    lines[4 + 2100] = lines[4 + 2100].replace('"2023-01-02', '"2023-01-0x', 1)
    lines[4 + 2500] = ",".join(lines[4 + 2500].split(",")[:3])
    lines[4 + 2600] = lines[4 + 2600].rsplit(",", 1)[0] + ",NAN"
    for i in FLAT:
        fields = lines[4 + i].split(",")
        fields[4] = "0.2500"
        lines[4 + i] = ",".join(fields)
    return lines


def _drop(landing: Path, name: str, lines: list[str] | bytes) -> Path:
    landing.mkdir(parents=True, exist_ok=True)
    path = landing / name
    path.write_bytes(lines if isinstance(lines, bytes) else ("\n".join(lines) + "\n").encode())
    old = time.time() - 3600
    os.utime(path, (old, old))
    return path


def _world(tmp_path: Path, store: Store, name: str = "w"):  # type: ignore[no-untyped-def]
    registry = parse_registry(toa5_stream.registry_yaml())
    store.upsert_sites(registry.sites_frame())
    settings = Settings(_env_file=None, home=tmp_path / name, landing_dir=tmp_path / name / "landing")
    return settings, registry, settings.path("landing")


def _stored(store: Store) -> pd.DataFrame:
    obs = store.read_observations()[["time", "site", "depth_cm", "sensor", "vwc", "quality_flag"]]
    return obs.sort_values(["depth_cm", "time"]).reset_index(drop=True)


def _reasons(store: Store) -> list[tuple[str, object]]:
    q = store.list_quarantine(table="observations")
    return sorted((str(r), str(row.get("line", row.get("time")))) for r, row in zip(q["reason"], q["row"], strict=True))


def test_a_streamed_file_stores_what_one_batch_stores(tmp_path: Path, store: Store) -> None:
    settings, registry, landing = _world(tmp_path, store)
    _drop(landing, "big.dat", _planted())
    [streamed] = ingest_landing(store, settings, registry, now=NOW, chunk_rows=CHUNK_ROWS)
    assert streamed.status == "ok", streamed.line()
    assert any("in 6 chunk(s)" in n for n in streamed.notes), streamed.notes

    reference = Store(f"sqlite:///{tmp_path / 'reference.sqlite'}")  # the same bytes, one batch
    reference.init()
    ref_settings, _, ref_landing = _world(tmp_path, reference, "ref")
    _drop(ref_landing, "big.dat", _planted())
    [batch] = ingest_landing(reference, ref_settings, registry, now=NOW)
    assert not any("chunk" in n for n in batch.notes)

    mine, theirs = _stored(store), _stored(reference)
    pd.testing.assert_frame_equal(mine.drop(columns="quality_flag"), theirs.drop(columns="quality_flag"),
                                  check_dtype=False)
    assert _reasons(store) == _reasons(reference)
    assert (streamed.fetched, streamed.inserted, streamed.quarantined) == (
        batch.fetched, batch.inserted, batch.quarantined)
    # A flatline is flagged from the chunk in which it reaches 24 h, seen with the chunks before it as
    # history (as between two daily batches): here chunk 3 (records 1500–1999); one batch flags it whole.
    flagged = mine["quality_flag"] != "ok"
    assert (flagged <= (theirs["quality_flag"] != "ok")).all()
    start = toa5_stream.START.tz_localize("UTC")
    late_run = (mine["depth_cm"] == 5) & mine["time"].between(start + pd.Timedelta(minutes=1500),
                                                             start + pd.Timedelta(minutes=FLAT[-1]))
    assert flagged[late_run].all() and flagged.sum() == late_run.sum() == streamed.flagged
    assert batch.flagged == len(FLAT)
    run = store.validation_runs().iloc[-1]
    assert run["summary"]["observations"]["chunks"] == 6 and not run["success"]
    assert (landing / "processed" / "big.dat").exists()
    reference.dispose()


@pytest.mark.parametrize("records", [1000, 4000])
def test_chunks_are_bounded_whatever_the_file_size(records: int) -> None:
    """The reader holds one chunk of records: more records mean more chunks, never bigger ones; the sha256
    computed on the way is the file's, and the records are those of the whole-file parser."""
    data = ("\n".join(_lines(records)) + "\n").encode()
    reader = Toa5Reader(io.BytesIO(data), "big.dat")
    chunks = list(reader.chunks(300))
    assert [len(c.records) for c in chunks] == [300] * (records // 300) + [records % 300]
    assert reader.sha256() == hashlib.sha256(data).hexdigest()
    whole = parse_toa5(data)
    assert [r for c in chunks for r in c.records] == whole.records
    assert [n for c in chunks for n in c.line_numbers] == whole.line_numbers


def test_only_one_chunk_is_alive_when_the_next_is_read(tmp_path: Path, sqlite_store: Store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Memory per chunk, not per file: when the reader starts on a chunk, no earlier chunk's records are
    still referenced (by the landing loop's first chunk, or a loop variable of the streaming loop).

    Why by reference and not by RSS: a chunk held twice does not grow with the file, it doubles the peak
    and the allocator's fragmentation (issue 22: 1 GB reached 1,126 MiB); RSS under load on a shared
    machine is too noisy to tell that apart in a test, a live reference is not."""
    settings, registry, landing = _world(tmp_path, sqlite_store)
    _drop(landing, "big.dat", _lines())
    yielded: list[weakref.ref] = []
    alive_at_read: list[int] = []
    chunks = Toa5Reader.chunks

    def alive() -> int:
        gc.collect()  # only plain references count, not garbage waiting for the collector
        return sum(ref() is not None for ref in yielded)

    def tracked(self: Toa5Reader, records: int):  # type: ignore[no-untyped-def]
        alive_at_read.append(alive())
        for chunk in chunks(self, records):
            yielded.append(weakref.ref(chunk))
            yield chunk
            del chunk  # this wrapper's own reference
            alive_at_read.append(alive())

    monkeypatch.setattr(Toa5Reader, "chunks", tracked)
    [summary] = ingest_landing(sqlite_store, settings, registry, now=NOW, chunk_rows=CHUNK_ROWS)
    assert summary.status == "ok", summary.line()
    assert len(yielded) == 6  # the first read when the landing loop opened the file, 5 more by the stream
    assert len(alive_at_read) == 1 + 1 + 5 and max(alive_at_read) == 0, alive_at_read


def test_nothing_is_visible_before_the_file_is_published(tmp_path: Path, store: Store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Each chunk is staged inside the file's transaction: another connection sees no row of the file
    until the last chunk is in, then all of them."""
    from smmdn.store import staging

    settings, registry, landing = _world(tmp_path, store)
    _drop(landing, "big.dat", _lines())
    seen: list[int] = []
    add = staging.ObservationStage.add

    def add_and_look(self, frame):  # type: ignore[no-untyped-def]
        staged = add(self, frame)
        seen.append(store.count("observations"))  # a separate connection: committed rows only
        return staged

    monkeypatch.setattr(staging.ObservationStage, "add", add_and_look)
    [summary] = ingest_landing(store, settings, registry, now=NOW, chunk_rows=CHUNK_ROWS)
    assert summary.status == "ok", summary.line()
    assert seen == [0] * 6
    assert store.count("observations") == summary.inserted == 4 * RECORDS


def test_a_file_that_fails_half_way_leaves_nothing_and_can_come_back(tmp_path: Path, store: Store) -> None:
    """NUL bytes in the last chunk: the file is rejected whole (the earlier chunks' rows and quarantine
    roll back), its sha256 and reason recorded; fixed and retried, it is stored."""
    settings, registry, landing = _world(tmp_path, store)
    lines = _planted()
    lines[-5] = lines[-5][:10] + "\x00\x00" + lines[-5][10:]
    path = _drop(landing, "big.dat", lines)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    [summary] = ingest_landing(store, settings, registry, now=NOW, chunk_rows=CHUNK_ROWS)
    assert summary.status == "rejected" and "NUL" in (summary.error or "")
    assert store.count("observations") == 0 and store.count("quarantine") == 0
    assert store.count("validation_runs") == 0
    assert store.file_record(sha)["status"] == "rejected"
    rejected = landing / "rejected" / "big.dat"
    assert "NUL" in rejected.with_name("big.dat.reason.txt").read_text()

    rejected.write_bytes(rejected.read_bytes().replace(b"\x00", b""))
    [again] = retry_rejected(store, settings, registry, ["big.dat"], now=NOW)
    assert again.status == "ok", again.line()
    assert store.count("observations") == again.inserted > 0
    assert (landing / "processed" / "big.dat").exists()


@pytest.mark.postgres
def test_a_value_refused_at_publish_rejects_the_whole_file(tmp_path: Path, pg_store: Store) -> None:
    """The server refuses a value of the last chunk only when the staged rows are merged: still nothing of
    the file is stored."""
    with pg_store.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE observations ADD CONSTRAINT no_odd CHECK (vwc <> 0.3333)")
    settings, registry, landing = _world(tmp_path, pg_store)
    lines = _lines()
    lines[-3] = lines[-3].rsplit(",", 1)[0] + ",0.3333"
    _drop(landing, "big.dat", lines)
    [summary] = ingest_landing(pg_store, settings, registry, now=NOW, chunk_rows=CHUNK_ROWS)
    assert summary.status == "rejected", summary.line()
    assert pg_store.count("observations") == 0 and pg_store.count("quarantine") == 0
    assert (landing / "rejected" / "big.dat").exists()


def test_keys_repeated_across_chunks_are_quarantined_as_one_batch_would(tmp_path: Path, store: Store) -> None:
    lines = _lines()
    lines.append(lines[4 + 20])  # an identical copy, five chunks later
    conflicting = lines[4 + 30].rsplit(",", 1)
    lines.append(conflicting[0] + ",0.3999")  # the same time, another value
    settings, registry, landing = _world(tmp_path, store)
    _drop(landing, "big.dat", lines)
    [streamed] = ingest_landing(store, settings, registry, now=NOW, chunk_rows=CHUNK_ROWS)
    assert streamed.status == "ok", streamed.line()

    reference = Store(f"sqlite:///{tmp_path / 'reference.sqlite'}")
    reference.init()
    ref_settings, _, ref_landing = _world(tmp_path, reference, "ref")
    _drop(ref_landing, "big.dat", lines)
    [batch] = ingest_landing(reference, ref_settings, registry, now=NOW)
    pd.testing.assert_frame_equal(_stored(store), _stored(reference), check_dtype=False)
    q, ref_q = store.list_quarantine(), reference.list_quarantine()
    # 4 rows per record: the copy gives 4 duplicates; the other record differs at 50 cm only (3 duplicates,
    # and both readings at 50 cm conflicting)
    expected = ["duplicate"] * 7 + ["duplicate_conflicting_values"] * 2
    assert sorted(q["reason"]) == sorted(ref_q["reason"]) == expected
    assert streamed.quarantined == batch.quarantined == 9
    reference.dispose()


def test_the_same_bytes_under_another_name_are_skipped(tmp_path: Path, store: Store) -> None:
    settings, registry, landing = _world(tmp_path, store)
    _drop(landing, "a.dat", _lines())
    [first] = ingest_landing(store, settings, registry, now=NOW, chunk_rows=CHUNK_ROWS)
    _drop(landing, "b.dat", _lines())
    [second] = ingest_landing(store, settings, registry, now=NOW, chunk_rows=CHUNK_ROWS)
    assert (first.status, second.status) == ("ok", "skipped")
    assert store.count("observations") == 4 * RECORDS
    assert (landing / "processed" / "b.dat").exists()
