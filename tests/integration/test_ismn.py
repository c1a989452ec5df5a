"""ISMN archives end to end: the real samples (both formats, zip and folder), a small archive of our own
for two depths and two sensors at one depth, errors that name file and line, the converter, sites import,
idempotent ingest with ISMN's flags stored and applied, and Open-Meteo forcing at the station."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from smmdn.cli import main
from smmdn.config import Settings
from smmdn.errors import InputError
from smmdn.ingest import ingest_forcing, ingest_ismn, load_sites
from smmdn.registry import load_registry
from smmdn.schema import UNTRUSTED_FLAGS
from smmdn.sources.ismn import convert_ismn_archive, read_ismn, site_id
from tests.conftest import shared_path
from tests.helpers import ismn_archive as own
from tests.helpers.http_server import Reply, serve

NOW = pd.Timestamp("2024-05-01T06:00Z")
HEADER_VALUES = "ismn_multinetwork_header_values.zip"
CEOP = "ismn_ceop_separate_files.zip"


def _sample(name: str) -> Path:
    return shared_path("formats", "ismn", name)


def _extract(zip_path: Path, to: Path) -> Path:
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(to)
    return to


def _tree(root: Path) -> set[tuple[str, int]]:
    return {(p.relative_to(root).as_posix(), p.stat().st_size) for p in root.rglob("*")}


# --- the real samples -------------------------------------------------------------------------------
def test_ceop_sample_zip_and_folder_give_the_same_sites_with_static_attributes(tmp_path: Path) -> None:
    zipped = read_ismn(_sample(CEOP), work_dir=tmp_path / "work")
    folder = _extract(_sample(CEOP), tmp_path / "ceop")
    before = _tree(folder)
    extracted = read_ismn(folder, work_dir=tmp_path / "work")
    assert _tree(folder) == before  # no python_metadata/ next to the data
    assert list((tmp_path / "work").iterdir()) == []  # and nothing left behind
    pd.testing.assert_frame_equal(zipped.observations, extracted.observations)
    sites = zipped.sites.set_index("site")
    arm = sites.loc["COSMOS_ARM-1"]
    assert (arm["latitude"], arm["longitude"], arm["elevation_m"]) == (36.6054, -97.4878, 322.0)
    assert (arm["clay_fraction"], arm["sand_fraction"], arm["silt_fraction"]) == pytest.approx((0.23, 0.36, 0.41))
    assert (arm["land_cover"], arm["climate_class"]) == ("Grassland", "Cfa")  # text, not codes
    sensors = zipped.sensors.set_index("site")
    assert sensors.loc["COSMOS_ARM-1", ["depth_cm", "depth_from_cm", "depth_to_cm"]].tolist() == [9.5, 0.0, 19.0]
    assert sensors.loc["COSMOS_Barrow-ARM", "depth_cm"] == 10.5
    obs = zipped.observations
    assert len(obs) == 6865 + 7059 and obs["time"].dt.tz is not None
    assert obs["ismn_flag"].isin(["G", "D03", "D05", "D03,D05", "D07", "D08", "D08,D05", "D08,D03,D05"]).all()
    assert set(obs["provider_flag"]) == {"M"}


def test_header_values_sample_reads_every_station_with_both_flags(tmp_path: Path) -> None:
    data = read_ismn(_sample(HEADER_VALUES), work_dir=tmp_path)
    assert set(data.sites["network"]) == {"MAQU", "SCAN", "SOILSCAPE"} and len(data.sites) == 8
    assert site_id("SCAN", "AdamsRanch#1") in set(data.sites["site"])  # '#' cannot be in a site id
    assert len(data.files) == 8
    flags = data.observations["ismn_flag"]
    assert {"U", "C03", "D06", "C02,C03"} <= set(flags)
    soilscape = data.observations[data.observations["site"].str.startswith("SOILSCAPE")]
    assert set(soilscape["provider_flag"]) == {"0"}  # the provider's own flag, as text
    only = read_ismn(_sample(HEADER_VALUES), networks=["SCAN"], stations=["Abrams"], work_dir=tmp_path)
    assert list(only.sites["site"]) == ["SCAN_Abrams"]
    folder = _extract(_sample(HEADER_VALUES), tmp_path / "hv")
    before = _tree(folder)
    pd.testing.assert_frame_equal(read_ismn(folder, work_dir=tmp_path).observations, data.observations)
    assert _tree(folder) == before


def test_read_only_source_folder_is_never_written(tmp_path: Path) -> None:
    folder = _extract(_sample(CEOP), tmp_path / "ro")
    for p in [folder, *folder.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        assert len(read_ismn(folder, work_dir=tmp_path / "w").sites) == 2
    finally:
        for p in [folder, *folder.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)


# --- our own archive: two depths, two sensors at one depth -------------------------------------------
@pytest.mark.parametrize("kind", ["zip", "folder"])
def test_own_archive_two_depths_and_replicates_at_one_depth(tmp_path: Path, kind: str) -> None:
    path = own.write_zip(tmp_path / "own.zip") if kind == "zip" else own.write_folder(tmp_path / "own")
    data = read_ismn(path, work_dir=tmp_path / "w")
    series = data.observations.groupby(["depth_cm", "sensor"]).size().to_dict()
    assert series == {(5.0, "EC5_A"): 48, (5.0, "EC5_B"): 48, (20.0, "EC5_A"): 47}
    assert data.missing == 1  # the M reading without a value is counted, not kept
    assert set(data.observations["site"]) == {"TESTNET_TWIN"}


def test_malformed_line_names_file_and_line_and_convert_writes_nothing(tmp_path: Path) -> None:
    folder = _extract(_sample(CEOP), tmp_path / "bad")
    stm = next(folder.glob("COSMOS/ARM-1/*.stm"))
    lines = stm.read_text().splitlines(keepends=True)
    lines[7] = "garbage line\n"
    stm.write_text("".join(lines))
    with pytest.raises(InputError) as err:
        read_ismn(folder, work_dir=tmp_path / "w")
    text = str(err.value)
    assert stm.name in text and "line 8" in text and "fix:" in text
    out = tmp_path / "out"
    assert main(["data", "convert", "ismn", "--input", str(folder), "--out", str(out)]) != 0
    assert not out.exists()


def test_unparseable_header_is_not_skipped_silently(tmp_path: Path) -> None:
    folder = own.write_folder(tmp_path / "own")
    broken = next(folder.glob("TESTNET/TWIN/*EC5_B*.stm"))
    broken.write_text("not an ismn header\rreally not\r")
    with pytest.raises(InputError, match=r"EC5_B.*\.stm"):
        read_ismn(folder, work_dir=tmp_path / "w")


def test_not_a_zip_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "x.zip"
    fake.write_text("hello")
    with pytest.raises(InputError, match="not a zip"):
        read_ismn(fake)


# --- smmdn data convert ismn -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["zip", "folder"])
def test_convert_writes_canonical_csvs_with_flag_columns(tmp_path: Path, kind: str) -> None:
    src = _sample(CEOP) if kind == "zip" else _extract(_sample(CEOP), tmp_path / "in")
    out = tmp_path / "out"
    assert main(["data", "convert", "ismn", "--input", str(src), "--out", str(out)]) == 0
    obs = pd.read_csv(out / "observations.csv", dtype={"site": str, "sensor": str})
    assert list(obs.columns) == ["time", "site", "depth_cm", "sensor", "vwc", "ismn_flag", "provider_flag"]
    assert obs["time"].str.endswith("+00:00").all() and obs["vwc"].between(0, 1).all()
    sites = pd.read_csv(out / "sites.csv")
    assert {"site", "latitude", "longitude", "elevation_m", "clay_fraction", "land_cover"} <= set(sites.columns)
    sensors = pd.read_csv(out / "sensors.csv")
    assert sensors["depth_to_cm"].tolist() == [19.0, 21.0]
    # the canonical CSV loads where CSVs always loaded; validation applies ISMN's flags
    from smmdn.quality.validate import validate_observations

    result = validate_observations(obs, now=NOW)
    d03 = result.clean[result.clean["ismn_flag"].astype(str).str.contains("D03")]
    assert not d03.empty and d03["quality_flag"].str.contains("ismn_D03").all()
    assert result.summary["ismn_flags"]["G"] > 0


# --- sites import, ingest, forcing -----------------------------------------------------------------
@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, home=tmp_path / "home", http_retries=0, http_backoff_s=0.0)


def _import(tmp_path: Path, archive: Path, *extra: str) -> Path:
    reg = tmp_path / "registry.yaml"
    assert main(["sites", "import", "ismn", str(archive), "--registry", str(reg), *extra]) == 0
    return reg


def test_sites_import_writes_entries_with_filters_and_merges(tmp_path: Path) -> None:
    reg = _import(tmp_path, _sample(HEADER_VALUES), "--network", "SCAN", "--station", "Abrams")
    registry = load_registry(reg)
    [site] = registry.sites
    assert site.id == "SCAN_Abrams" and site.sources.ismn is not None
    assert (site.sources.ismn.network, site.sources.ismn.station) == ("SCAN", "Abrams")
    assert site.forcing.open_meteo is not None and site.forcing.open_meteo.latitude == site.lat
    _import(tmp_path, _sample(CEOP))
    again = load_registry(reg)
    assert [s.id for s in again.sites] == ["SCAN_Abrams", "COSMOS_ARM-1", "COSMOS_Barrow-ARM"]
    assert again.version == 2
    arm = again.site("COSMOS_ARM-1")
    assert arm.attributes["land_cover"] == "Grassland" and arm.sensors[0].depth_to_cm == 19.0


def test_static_attributes_reach_the_model_inputs_and_text_stays_text(tmp_path: Path, sqlite_store) -> None:  # type: ignore[no-untyped-def]
    from smmdn.cycle.inputs import model_sites

    registry = load_registry(_import(tmp_path, _sample(CEOP)))
    load_sites(sqlite_store, registry)
    frame = model_sites(sqlite_store)
    assert frame is not None
    row = frame.set_index("site").loc["COSMOS_ARM-1"]
    assert row["clay_fraction"] == pytest.approx(0.23) and row["saturation"] == pytest.approx(0.46)
    assert "land_cover" not in frame.columns  # text: stored (below), not fed as a number
    stored = sqlite_store.read_sites().set_index("site").loc["COSMOS_ARM-1", "attributes"]["static"]
    assert stored["land_cover"] == "Grassland" and stored["climate_class"] == "Cfa"
    sensors = sqlite_store.read_sensors().set_index("site").loc["COSMOS_ARM-1", "attributes"]
    assert sensors == {"depth_from_cm": 0.0, "depth_to_cm": 19.0}


def test_ingest_twice_changes_nothing_and_keeps_flags(tmp_path: Path, settings: Settings, store) -> None:  # type: ignore[no-untyped-def]
    archive = own.write_zip(tmp_path / "own.zip")
    registry = load_registry(_import(tmp_path, archive))
    load_sites(store, registry)
    first = ingest_ismn(store, settings, registry, archive, now=NOW)
    assert [(s.key, s.status, s.inserted, s.quarantined) for s in first] == [("TESTNET_TWIN", "ok", 142, 1)]
    stored = store.read_observations(source_flags=True)
    assert len(stored) == 142 and store.count("observations") == 142
    q = store.list_quarantine()
    assert len(q) == 1 and "ismn_flag(C01)" in q.iloc[0]["reason"]
    spike = stored[stored["ismn_flag"] == "D06"]
    assert len(spike) == 1 and "ismn_D06" in spike.iloc[0]["quality_flag"]
    assert set(stored["provider_flag"]) == {"M"}
    page = Path(first[0].data_docs or "").read_text(encoding="utf-8")  # Data Docs count ISMN's flags
    for check in ("ismn_C01_C02_range", "ismn_C03_saturation", "ismn_D_geophysical"):
        assert check in page
    [run] = store.validation_runs("ismn:TESTNET_TWIN").to_dict("records")
    assert run["summary"]["observations"]["ismn_flags"] == {"C01": 1, "C03": 1, "D06": 2, "G": 140}
    second = ingest_ismn(store, settings, registry, archive, now=NOW)
    assert [(s.status, s.inserted, s.updated, s.quarantined) for s in second] == [("empty", 0, 0, 0)]
    assert store.count("observations") == 142 and len(store.list_quarantine()) == 1
    pd.testing.assert_frame_equal(store.read_observations(source_flags=True).drop(columns="ingested_at"),
                                  stored.drop(columns="ingested_at"))
    # ISMN-flagged readings are left out of what the model and detection see
    every = store.read_daily_observations({}, exclude_flags=())
    trusted = store.read_daily_observations({}, exclude_flags=UNTRUSTED_FLAGS)
    assert every["n"].sum() - trusted["n"].sum() == 2  # D06 and C03,D06


def test_ingest_skips_stations_not_in_the_registry_and_fails_cleanly(tmp_path: Path, settings: Settings,
                                                                     sqlite_store) -> None:  # type: ignore[no-untyped-def]
    registry = load_registry(_import(tmp_path, _sample(HEADER_VALUES), "--station", "Abrams"))
    load_sites(sqlite_store, registry)
    out = ingest_ismn(sqlite_store, settings, registry, _sample(HEADER_VALUES), networks=["SCAN"], now=NOW)
    assert {s.key: s.status for s in out} == {"SCAN_AAMU-jtg": "skipped", "SCAN_Abrams": "ok",
                                               "SCAN_AdamsRanch-1": "skipped"}
    bad = ingest_ismn(sqlite_store, settings, registry, tmp_path / "missing.zip", now=NOW)
    assert [s.status for s in bad] == ["failed"] and "not found" in (bad[0].error or "")
    before = (sqlite_store.count("observations"), len(sqlite_store.list_quarantine()))
    folder = _extract(_sample(HEADER_VALUES), tmp_path / "hv")
    abrams = next(folder.glob("SCAN/Abrams/*.stm"))
    abrams.write_bytes(abrams.read_bytes().replace(b"\r2010/01/01 00:00", b"\r2010/13/45 99:99", 1))
    broken = ingest_ismn(sqlite_store, settings, registry, folder, since=pd.Timestamp("2000-01-01T00:00Z"),
                         now=NOW)
    assert [s.status for s in broken] == ["failed"] and abrams.name in (broken[0].error or "")
    assert "line" in (broken[0].error or "")
    assert (sqlite_store.count("observations"), len(sqlite_store.list_quarantine())) == before  # nothing written


def test_ingest_cli_and_forcing_from_open_meteo_at_the_station(tmp_path: Path, sqlite_store,  # type: ignore[no-untyped-def]
                                                                capfd: pytest.CaptureFixture[str]) -> None:
    archive = own.write_folder(tmp_path / "own")
    reg = _import(tmp_path, archive)
    url = str(sqlite_store.engine.url)
    assert main(["sites", "--url", url, "load", str(reg)]) == 0
    assert main(["ingest", "--url", url, "--registry", str(reg), "ismn", str(archive)]) == 0
    out, err = capfd.readouterr()
    assert "ismn[TESTNET_TWIN] ok" in out
    assert "Collecting metadata" not in out + err and "Processed file" not in out + err  # the package is quiet
    assert main(["ingest", "--url", url, "--registry", str(reg), "ismn", str(archive)]) == 0
    assert "ismn[TESTNET_TWIN] empty" in capfd.readouterr().out
    payload = json.loads(shared_path("formats", "open-meteo", "archive-daily.json").read_text())
    with serve() as server:
        server.route("/v1/archive", Reply(json.dumps(payload)))
        cfg = Settings(_env_file=None, home=tmp_path / "h", open_meteo_archive_url=f"{server.url}/v1/archive",
                       http_retries=0)
        [s] = ingest_forcing(sqlite_store, cfg, load_registry(reg), api="archive", variables=["temperature_2m_max"],
                             since=pd.Timestamp("2022-12-28T00:00Z"), until=pd.Timestamp("2023-01-08T00:00Z"), now=NOW)
        query = server.log[-1].query
    assert s.status == "ok" and s.forcing_inserted == 11
    assert (float(query["latitude"][0]), float(query["longitude"][0])) == (own.LAT, own.LON)


def test_folder_input_of_convert_is_only_for_ismn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "convert", "cosmos", "--input", str(tmp_path), "--out", str(tmp_path / "o")]) != 0
    assert "input file not found" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "o", ignore_errors=True)


def test_non_numeric_value_is_refused_by_convert_and_quarantined_by_ingest(tmp_path: Path, settings: Settings,
                                                                          sqlite_store) -> None:  # type: ignore[no-untyped-def]
    folder = own.write_folder(tmp_path / "own")
    stm = next(folder.glob("TESTNET/TWIN/*EC5_B*.stm"))
    stm.write_bytes(stm.read_bytes().replace(b"0.2650 G", b"0.2x50 G", 1))
    with pytest.raises(InputError) as err:
        convert_ismn_archive(folder)
    assert stm.name in str(err.value) and "line 7" in str(err.value) and "soil_moisture" in str(err.value)
    out = tmp_path / "out"
    assert main(["data", "convert", "ismn", "--input", str(folder), "--out", str(out)]) != 0
    assert not out.exists()
    registry = load_registry(_import(tmp_path, folder))
    load_sites(sqlite_store, registry)
    [s] = ingest_ismn(sqlite_store, settings, registry, folder, now=NOW)
    assert (s.status, s.quarantined) == ("ok", 2)  # the C01 reading and the unreadable one
    q = sqlite_store.list_quarantine()
    bad = q[q["reason"].str.contains("vwc_not_numeric")]
    assert len(bad) == 1 and bad.iloc[0]["row"]["line"] == 7 and bad.iloc[0]["row"]["file"].endswith(stm.name)
