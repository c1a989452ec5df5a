"""Site registry YAML: strict parsing, clear errors, frames for the store."""

from __future__ import annotations

import pytest

from smmdn.errors import InputError
from smmdn.registry import example_registry_path, load_registry, parse_registry

MINIMAL = (
    "version: 2\nsites:\n  - {id: a, name: A, lat: 1, lon: 2, vwc_max: 0.5}\n  - {id: b, name: B, lat: 3, lon: 4}\n"
)


def test_frames_for_the_store() -> None:
    reg = load_registry(example_registry_path())
    sites, sensors = reg.sites_frame(), reg.sensors_frame()
    assert list(sites["site"]) == [s.id for s in reg.sites]
    assert sites.loc[sites["site"] == "NE_Lincoln_11_SW", "timezone"].iloc[0] == "LST UTC-6"
    assert sites["attributes"].iloc[0]["registry_version"] == "1"
    assert len(sensors) == 20 and set(sensors["sensor"]) == {"avg"}
    assert set(sites["source"]) == {"uscrn"}


def test_defaults_and_overrides() -> None:
    reg = parse_registry(MINIMAL)
    assert reg.vwc_max() == {"a": 0.5, "b": 0.8}
    assert [s.id for s in reg.select(["b"])] == ["b"] and len(reg.select(None)) == 2
    with pytest.raises(InputError, match="unknown site"):
        reg.select(["zzz"])


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("version: 1\nsites: []\n", "sites"),
        ("version: 1\nsites:\n  - {id: a, name: A, lat: 1, lon: 2}\n  - {id: a, name: A, lat: 1, lon: 2}\n",
         "duplicate site"),
        ("version: 1\nsites:\n  - {id: a, name: A, lat: 1, lon: 2, colour: red}\n", "colour"),
        ("version: 1\nsites:\n  - {id: a, name: A, lat: 1, lon: 2, vwc_max: 40}\n", "vwc_max"),
        ("version: 1\nsites:\n  - id: a\n    name: A\n    lat: 1\n    lon: 2\n    sensors: [{depth_cm: 5, sensor: x},"
         " {depth_cm: 5, sensor: x}]\n", "duplicate"),
        ("version: 1\nsites:\n  - id: a\n    name: A\n    lat: 1\n    lon: 2\n    sources: {toa5: {station: S,"
         " utc_offset_hours: 30, columns: {V: {depth_cm: 5, sensor: a}}}}\n", "utc_offset_hours"),
        ("version: [1\n", "YAML"),
        ("- just a list\n", "mapping"),
    ],
)
def test_invalid_registries_name_the_problem(text: str, needle: str) -> None:
    with pytest.raises(InputError) as err:
        parse_registry(text)
    assert needle in str(err.value)
