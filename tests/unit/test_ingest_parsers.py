"""Parsers against the verbatim real samples in ../shared/formats (skipped when absent)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from smmdn.errors import SourceError
from smmdn.registry import Toa5Source
from smmdn.sources import open_meteo, sensorthings, toa5, uscrn
from tests.conftest import shared_path
from tests.helpers.uscrn_render import daily01_text

HOURLY = ("formats", "uscrn", "CRNH0203-2023-NE_Lincoln_11_SW.head.txt")
DAILY = ("formats", "uscrn", "CRND0103-2020-AK_Fairbanks_11_NE.head.txt")


def test_hourly02_real_sample_times_depths_and_missing_codes() -> None:
    text = shared_path(*HOURLY).read_text()
    obs, forcing = uscrn.parse_hourly02(text, "NE_Lincoln_11_SW", wban="94996")
    # 60 lines x 5 depths minus the -99.000 cells
    assert len(forcing) == 60
    assert forcing["time"].iloc[0] == pd.Timestamp("2023-01-01T01:00Z")  # UTC end of hour, as published
    assert forcing["time"].iloc[-1] == pd.Timestamp("2023-01-03T12:00Z")
    first = obs[obs["time"] == pd.Timestamp("2023-01-01T01:00Z")].set_index("depth_cm")["vwc"]
    assert first.to_dict() == {5.0: 0.201, 10.0: 0.254, 20.0: 0.191, 50.0: 0.162, 100.0: 0.185}
    # line 2 has SOIL_MOISTURE_5 = -99.000: no 5 cm reading at 02:00, never a -99 value
    assert not ((obs["time"] == pd.Timestamp("2023-01-01T02:00Z")) & (obs["depth_cm"] == 5)).any()
    assert obs["vwc"].between(0, 1).all()
    assert set(obs["sensor"]) == {"avg"}
    # RH_HR_AVG is -9999 throughout the sample: NaN, not -9999
    assert forcing["relative_humidity_2m"].isna().all()
    assert forcing["temperature_2m"].iloc[0] == pytest.approx(5.5)  # T_HR_AVG
    assert list(forcing.columns) == ["time", "site", *uscrn.HOURLY_FORCING_MAP.values()]


def test_daily01_real_sample_all_soil_missing_keeps_meteorology() -> None:
    text = shared_path(*DAILY).read_text()
    obs, forcing = uscrn.parse_daily01(text, "AK_Fairbanks_11_NE", wban="26494")
    assert obs.empty  # every soil value is -99.000 in this sample
    assert len(forcing) == 60
    assert forcing["time"].iloc[0] == pd.Timestamp("2020-01-01", tz="UTC")  # LST date label
    row = forcing.iloc[0]
    assert row["temperature_2m_max"] == pytest.approx(-18.8)
    assert row["temperature_2m_mean"] == pytest.approx(-19.8)  # T_DAILY_AVG
    assert row["precipitation_sum"] == pytest.approx(2.5)
    assert row["relative_humidity_2m_mean"] == pytest.approx(77.9)


def test_daily01_renderer_reproduces_the_real_file_bytes() -> None:
    """Fixtures rendered from the shared CSV are byte-identical to NOAA's own lines."""
    csv = pd.read_csv(shared_path("data", "uscrn-daily-2020", "uscrn_daily01_2020.csv"), dtype={"wban": str})
    rendered = daily01_text(csv[csv["wban"] == "26494"].head(60))
    assert rendered == shared_path(*DAILY).read_text()


def test_uscrn_wrong_station_and_truncated_line_are_source_errors() -> None:
    text = shared_path(*HOURLY).read_text()
    with pytest.raises(SourceError, match="WBAN"):
        uscrn.parse_hourly02(text, "x", wban="12345")
    cut = text[: len(text) - 100]  # last line cut mid-way, as a broken download would
    with pytest.raises(SourceError, match="fields"):
        uscrn.parse_hourly02(cut, "x")


def test_open_meteo_real_samples_parse_to_utc() -> None:
    loc = [open_meteo.Location("s", 50.0, 10.0)]
    hourly = json.loads(shared_path("formats", "open-meteo", "forecast-hourly.json").read_text())
    frame = open_meteo.parse_response(hourly, loc, "hourly")
    assert len(frame) == 72
    # Europe/Berlin local midnight (utc_offset_seconds 3600) is 23:00 UTC the day before
    assert frame["time"].iloc[0] == pd.Timestamp("2026-03-01T23:00Z")
    assert {"temperature_2m", "precipitation", "shortwave_radiation"} <= set(frame.columns)
    daily = json.loads(shared_path("formats", "open-meteo", "archive-daily.json").read_text())
    d = open_meteo.parse_response(daily, loc, "daily")
    assert d["time"].iloc[0] == pd.Timestamp("2022-12-29", tz="UTC")  # daily labels stay dates
    assert d["temperature_2m_max"].iloc[0] == pytest.approx(26.4)
    assert "CC BY 4.0" in d.attrs["attribution"]


def test_open_meteo_allnull_sample_stays_null_not_zero() -> None:
    payload = json.loads(shared_path("formats", "open-meteo", "forecast-daily-allnull.json").read_text())
    frame = open_meteo.parse_response(payload, [open_meteo.Location("s", -12.5, -130.875)], "daily")
    assert len(frame) == 11
    assert frame["temperature_2m_max"].isna().all()
    assert not (frame["temperature_2m_max"] == 0).any()


def test_open_meteo_list_answer_maps_sites_in_order_and_checks_count() -> None:
    one = json.loads(shared_path("formats", "open-meteo", "forecast-daily.json").read_text())
    other = json.loads(shared_path("formats", "open-meteo", "archive-daily.json").read_text())
    locs = [open_meteo.Location("a", -12.5, -130.9), open_meteo.Location("b", -15.8, -47.9)]
    frame = open_meteo.parse_response([one, other], locs, "daily")
    assert frame.groupby("site")["temperature_2m_max"].first().to_dict() == {"a": 25.3, "b": 26.4}
    with pytest.raises(SourceError, match="location"):
        open_meteo.parse_response([one], locs, "daily")


def test_open_meteo_params() -> None:
    locs = [open_meteo.Location("a", 40.7, -96.85, -6), open_meteo.Location("b", 41.0, -90.0, -6)]
    p = open_meteo.build_params(locs, "daily", ["precipitation_sum"], api="forecast", past_days=2, api_key="k")
    assert p["latitude"] == "40.7000,41.0000" and p["timezone"] == "Etc/GMT+6"
    assert p["forecast_days"] == "16" and p["past_days"] == "2" and p["apikey"] == "k"
    with pytest.raises(SourceError):
        open_meteo.build_params(locs, "daily", ["x"], api="forecast", forecast_days=17)
    a = open_meteo.build_params(locs, "hourly", ["precipitation"], api="archive",
                                start=pd.Timestamp("2024-01-01"), end=pd.Timestamp("2024-01-31"))
    assert a["timezone"] == "GMT" and a["start_date"] == "2024-01-01" and "apikey" not in a


def test_sensorthings_real_datastreams_units_and_intervals() -> None:
    fixture = json.loads(shared_path("formats", "sensorthings", "bgs-datastreams-by-feature.geosense.json").read_text())
    entities = [e for group in fixture.values() for e in group]
    assert len(entities) == 102
    scales = {}
    for e in entities:
        try:
            scales[e["@iot.id"]] = sensorthings.unit_scale(e["unitOfMeasurement"], "ds")
        except SourceError:
            scales[e["@iot.id"]] = None
    assert sum(1 for v in scales.values() if v == 0.01) == 6  # the "%" datastreams
    assert scales[92] is None  # metres are refused, not silently stored as vwc
    frame = sensorthings.parse_observations(
        [{"phenomenonTime": e["phenomenonTime"], "result": 30.0} for e in entities[:2]], "obs")
    assert frame["time"].iloc[0] == pd.Timestamp("2022-03-03T14:15:00Z")  # end of the ISO interval


def test_sensorthings_rejects_zone_less_times_and_text_results() -> None:
    with pytest.raises(SourceError, match="time zone"):
        sensorthings.parse_observations([{"phenomenonTime": "2024-01-01T00:00:00", "result": 1}], "o")
    with pytest.raises(SourceError, match="non-numeric"):
        sensorthings.parse_observations([{"phenomenonTime": "2024-01-01T00:00:00Z", "result": "wet"}], "o")
    nulls = sensorthings.parse_observations([{"phenomenonTime": "2024-01-01T00:00:00Z", "result": None}], "o")
    assert np.isnan(nulls["value"].iloc[0])


def test_toa5_real_sample_header_offset_and_percent() -> None:
    data = shared_path("formats", "toa5", "Station_Daily.head.dat").read_bytes()
    parsed = toa5.parse_toa5(data)
    assert parsed.environment["station"] == "Station" and parsed.environment["table"] == "Daily"
    assert len(parsed.records) == 56 and parsed.fields[:2] == ["TIMESTAMP", "RECORD"]
    spec = Toa5Source(station="Station", utc_offset_hours=-6,
                      columns={"RH_Min": {"depth_cm": 10, "sensor": "a", "unit": "percent"}})
    batch = toa5.to_observations(parsed, "S1", spec)
    assert batch.bad_rows.empty
    assert len(batch.observations) == 56
    # logger clock 2014-04-11 00:00 at UTC-6 is 06:00 UTC; 23.88 % → 0.2388
    assert batch.observations["time"].iloc[0] == pd.Timestamp("2014-04-11T06:00Z")
    assert batch.observations["vwc"].iloc[0] == pytest.approx(0.2388)


def test_toa5_bad_records_are_separated_with_reasons() -> None:
    data = shared_path("formats", "toa5", "Station_Daily.head.dat").read_bytes()
    lines = data.decode().splitlines()
    lines[4] = lines[4].replace("23.88", "garbage")  # RH_Min of the first record
    lines[5] = '"not a time",1,2'
    lines[6] = lines[6].replace("47.23", '"NAN"')
    parsed = toa5.parse_toa5("\n".join(lines).encode())
    spec = Toa5Source(station="Station", utc_offset_hours=0, columns={"RH_Min": {"depth_cm": 10, "sensor": "a"}})
    batch = toa5.to_observations(parsed, "S1", spec)
    assert sorted(batch.bad_rows["line"]) == [5, 6]
    assert batch.bad_rows["reason"].str.contains("non-numeric|fields").all()
    assert batch.missing_values == 1
    assert len(batch.observations) == 56 - 3


NOT_TOA5 = [b"", b"hello\n", b'"TOA5"\n"x"\n', b"\x00\x01binary", b'"CSV","x"\n1,2\n3,4\n5,6\n']


@pytest.mark.parametrize("content", NOT_TOA5)
def test_toa5_non_toa5_files_are_source_errors(content: bytes) -> None:
    with pytest.raises(SourceError):
        toa5.parse_toa5(content)
