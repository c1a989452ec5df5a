"""TOA5 logger files in the landing directory: each read once, bad records quarantined, bad files set aside."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd
import pytest

from smmdn.config import Settings
from smmdn.ingest import ingest_landing, ingest_sensors
from smmdn.registry import parse_registry
from tests.conftest import shared_path

NOW = pd.Timestamp("2024-06-10T00:00Z")
REGISTRY = """
version: 1
sites:
  - id: station
    name: Logger site
    lat: 45.0
    lon: -93.0
    sources:
      toa5:
        station: Station
        table: Daily
        utc_offset_hours: -6
        columns:
          RH_Min: {depth_cm: 10, sensor: a, unit: percent}
          RH_Max: {depth_cm: 10, sensor: b, unit: percent}
"""


@pytest.fixture
def setup(tmp_path: Path, sqlite_store):  # type: ignore[no-untyped-def]
    registry = parse_registry(REGISTRY)
    sqlite_store.upsert_sites(registry.sites_frame())
    settings = Settings(_env_file=None, home=tmp_path, landing_dir=tmp_path / "landing")
    return settings, registry, sqlite_store, settings.path("landing")


def settled(path: Path) -> Path:
    """Date a dropped file back so it counts as fully uploaded (the landing scan waits 30 s)."""
    os.utime(path, (time.time() - 3600, time.time() - 3600))
    return path


def _sample_with_bad_rows() -> bytes:
    lines = shared_path("formats", "toa5", "Station_Daily.head.dat").read_bytes().decode().splitlines()
    lines[10] = lines[10].replace('"2014-04-17 00:00:00"', '"2014-04-17 xx:00:00"')  # broken clock
    lines[11] = lines[11].split(",", 5)[0] + ",1,2"  # truncated record
    return ("\n".join(lines) + "\n").encode()


def test_bad_rows_quarantined_rest_stored_file_read_once(setup) -> None:  # type: ignore[no-untyped-def]
    settings, registry, store, landing = setup
    fresh = landing / "station_daily_1.dat"
    fresh.write_bytes(_sample_with_bad_rows())
    assert ingest_landing(store, settings, registry, now=NOW) == []  # just written: maybe still uploading
    (landing / "partial.dat.part").write_bytes(b"half a file")
    settled(fresh)
    [s] = ingest_landing(store, settings, registry, now=NOW)
    assert s.status == "ok", s.line()
    # RH_Max reaches 100 % (1.0 m3/m3 > 0.8) on some days: those are impossible for vwc → quarantined too
    obs = store.read_observations(sites=["station"])
    q = store.list_quarantine(table="observations")
    assert len(obs) + len(q) == (56 - 2) * 2 + 2
    broken = q[q["reason"].str.contains("TIMESTAMP|fields")]
    assert sorted(r["line"] for r in broken["row"]) == [11, 12]
    assert all("raw" in r for r in broken["row"])
    assert obs["time"].min() == pd.Timestamp("2014-04-11T06:00Z")  # logger UTC-6 → UTC
    assert not (landing / "station_daily_1.dat").exists() and (landing / "processed" / "station_daily_1.dat").exists()

    # the same bytes dropped again (a re-sent file) are not read twice
    (landing / "station_daily_again.dat").write_bytes(_sample_with_bad_rows())
    settled(landing / "station_daily_again.dat")
    [again] = ingest_landing(store, settings, registry, now=NOW)
    assert again.status == "skipped"
    assert len(store.read_observations(sites=["station"])) == len(obs)
    assert len(store.list_quarantine()) == len(q)


def test_unreadable_and_unmapped_files_are_moved_aside_with_reason(setup) -> None:  # type: ignore[no-untyped-def]
    settings, registry, store, landing = setup
    (landing / "notes.txt").write_text("this is not a logger file\n")
    settled(landing / "notes.txt")
    other = shared_path("formats", "toa5", "Station_Daily.head.dat").read_text().replace('"Station"', '"Other"', 1)
    settled_other = landing / "other.dat"
    settled_other.write_text(other)
    settled(settled_other)
    summaries = ingest_landing(store, settings, registry, now=NOW)
    assert sorted(s.status for s in summaries) == ["rejected", "rejected"]
    assert (landing / "rejected" / "notes.txt").exists()
    assert "TOA5" in (landing / "rejected" / "notes.txt.reason.txt").read_text()
    assert "no registry site maps" in (landing / "rejected" / "other.dat.reason.txt").read_text()
    assert store.count("observations") == 0 and store.count("quarantine") == 0


def test_ingest_sensors_includes_the_landing_directory(setup) -> None:  # type: ignore[no-untyped-def]
    settings, registry, store, landing = setup
    (landing / "a.dat").write_bytes(shared_path("formats", "toa5", "Station_Daily.head.dat").read_bytes())
    settled(landing / "a.dat")
    summaries = ingest_sensors(store, settings, registry, now=NOW)
    assert [s.source for s in summaries] == ["toa5"] and summaries[0].inserted > 0


OTHER = """
  - id: other
    name: Second logger
    lat: 45.5
    lon: -93.5
    sources:
      toa5:
        station: Other
        table: Daily
        utc_offset_hours: -6
        columns:
          RH_Min: {depth_cm: 10, sensor: a, unit: percent}
"""
BATCH_REGISTRY = REGISTRY + OTHER + """  - id: third
    name: Logger sending percent as if it were m3/m3
    lat: 46.0
    lon: -94.0
    sources:
      toa5:
        station: Third
        table: Daily
        utc_offset_hours: -6
        columns:
          RH_Min: {depth_cm: 10, sensor: a}
          RH_Max: {depth_cm: 10, sensor: b}
"""


def _station_file(landing: Path, name: str, station: str) -> Path:
    text = shared_path("formats", "toa5", "Station_Daily.head.dat").read_text().replace('"Station"', f'"{station}"', 1)
    path = landing / name
    path.write_text(text)
    return settled(path)


@pytest.fixture
def batch_setup(tmp_path: Path, sqlite_store):  # type: ignore[no-untyped-def]
    registry = parse_registry(BATCH_REGISTRY)
    sqlite_store.upsert_sites(registry.sites_frame())
    settings = Settings(_env_file=None, home=tmp_path, landing_dir=tmp_path / "landing")
    landing = settings.path("landing")
    for name, station in (("a.dat", "Station"), ("b.dat", "Other"), ("c.dat", "Third")):
        _station_file(landing, name, station)
    return settings, registry, sqlite_store, landing


def test_files_of_one_run_are_validated_and_written_as_one_batch(batch_setup) -> None:  # type: ignore[no-untyped-def]
    settings, registry, store, landing = batch_setup
    summaries = ingest_landing(store, settings, registry, now=NOW)
    by_status = {s.status: s for s in summaries}
    assert sorted(by_status) == ["ok", "rejected"] and len(summaries) == 2, [s.line() for s in summaries]
    batch = by_status["ok"]
    assert batch.key == "landing:2 files" and "a.dat" in batch.notes[0] and "b.dat" in batch.notes[0]
    stored = store.read_observations()
    assert set(stored["site"]) == {"station", "other"}
    assert batch.inserted == len(stored) and batch.validation_run is not None
    assert len(store.validation_runs()) == 1  # one Great Expectations run for both files
    # the percent file is judged on its own: a unit error rejects it, it does not hide in the batch
    assert "percent" in by_status["rejected"].error
    assert "percent" in (landing / "rejected" / "c.dat.reason.txt").read_text()
    assert {p.name for p in (landing / "processed").iterdir()} == {"a.dat", "b.dat"}
    assert store.count("quarantine") == sum(s.quarantined for s in summaries)


def test_a_file_that_spoils_the_batch_is_isolated(batch_setup, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """If a bad file reaches a combined batch anyway (pre-screen bypassed here), the batch-level error
    sends the group back file by file: only that file is rejected, the others are stored."""
    from smmdn import ingest

    settings, registry, store, landing = batch_setup
    _station_file(landing, "d.dat", "Third")  # two percent files outweigh the rest: the batch median is percent
    (landing / "d.dat").write_text((landing / "d.dat").read_text().replace('"2014-04-1', '"2015-04-1'))
    settled(landing / "d.dat")
    monkeypatch.setattr(ingest._LandingFile, "alone", property(lambda self: False))
    summaries = ingest_landing(store, settings, registry, now=NOW)
    assert sorted(s.status for s in summaries) == ["ok", "ok", "rejected", "rejected"], [s.line() for s in summaries]
    assert set(store.read_observations()["site"]) == {"station", "other"}
    assert {p.name for p in (landing / "rejected").glob("*.dat")} == {"c.dat", "d.dat"}


def test_batches_are_bounded_by_rows(batch_setup) -> None:  # type: ignore[no-untyped-def]
    settings, registry, store, _ = batch_setup
    summaries = ingest_landing(store, settings, registry, now=NOW, batch_rows=1)
    assert sorted(s.key for s in summaries if s.status == "ok") == ["other:b.dat", "station:a.dat"]
    assert len(store.validation_runs()) == 2
