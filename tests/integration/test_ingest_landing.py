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
