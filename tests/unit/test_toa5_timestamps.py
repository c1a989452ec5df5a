"""Strict, configurable TOA5 timestamp formats: no guessing of day and month."""

from __future__ import annotations

import pytest

from smmdn.errors import InputError
from smmdn.registry import parse_registry
from smmdn.sources.toa5 import parse_timestamp, parse_toa5, to_observations

HEADER = ('"TOA5","Station","CR1000","1","os","prog","sig","Daily"\n"TIMESTAMP","RECORD","VWC"\n"TS","RN","%"\n'
          '"","","Smp"\n')


def _spec(formats: str = ""):  # type: ignore[no-untyped-def]
    extra = f"\n        timestamp_formats: {formats}" if formats else ""
    reg = parse_registry(f"""
version: 1
sites:
  - id: s
    name: S
    lat: 45
    lon: -93
    sources:
      toa5:
        station: Station
        utc_offset_hours: 0{extra}
        columns:
          VWC: {{depth_cm: 10, sensor: a, unit: percent}}
""")
    return reg.sites[0].sources.toa5


def test_a_day_first_timestamp_rejects_the_file_with_the_fix() -> None:
    file = parse_toa5((HEADER + '"18/04/2024 02:00",0,21.5\n"19/04/2024 02:00",1,21.7\n').encode())
    with pytest.raises(InputError, match=r"TIMESTAMP.*18/04/2024 02:00.*timestamp_formats") as err:
        to_observations(file, "s", _spec())
    assert err.value.column == "TIMESTAMP" and err.value.rows == [5, 6]


def test_one_odd_timestamp_among_good_ones_is_quarantined_not_guessed() -> None:
    file = parse_toa5((HEADER + '"2024-04-18 02:00:00",0,21.5\n"04/18/2024 03:00",1,21.7\n').encode())
    batch = to_observations(file, "s", _spec())
    assert len(batch.observations) == 1
    [reason] = list(batch.bad_rows["reason"])
    assert "04/18/2024 03:00" in reason and "%Y-%m-%d %H:%M:%S" in reason


def test_a_station_may_configure_its_own_format() -> None:
    file = parse_toa5((HEADER + '"18/04/2024 02:00",0,21.5\n').encode())
    batch = to_observations(file, "s", _spec('["%d/%m/%Y %H:%M"]'))
    assert str(batch.observations["time"].iloc[0]) == "2024-04-18 02:00:00+00:00"


def test_formats_are_exact() -> None:
    formats = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f"]
    assert str(parse_timestamp("2014-04-11 00:00:00.5", formats)).endswith(".500000")
    for text in ("2014-04-11", "2014-04-11T00:00:00Z", "April 11 2014", "18/04/2024 02:00"):
        with pytest.raises(ValueError):
            parse_timestamp(text, ["%Y-%m-%d %H:%M:%S"])
