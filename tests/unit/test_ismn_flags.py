"""ISMN's flag codes onto smmdn's levels (the table in docs/ingest.md), and replicate labels."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from smmdn.quality import ismn_flags as f
from smmdn.quality.validate import validate_observations
from smmdn.sources.ismn import _labels, site_id


@pytest.mark.parametrize(("flag", "level", "tokens"), [
    ("G", "ok", []), ("U", "ok", []), (None, "ok", []), ("", "ok", []),
    ("C01", "quarantine", []), ("C02,C03", "quarantine", ["ismn_C03"]),
    ("C03", "flagged", ["ismn_C03"]), ("D06", "flagged", ["ismn_D06"]), ("D10", "flagged", ["ismn_D10"]),
    ("D01,D03", "flagged", ["ismn_D01", "ismn_D03"]), (" d06 ", "flagged", ["ismn_D06"]),
    ("M", "missing", []), ("X42", "flagged", ["ismn_unknown"]),
])
def test_levels_and_tokens(flag: object, level: str, tokens: list[str]) -> None:
    assert f.level(flag) == level and f.tokens(flag) == tokens


def test_every_documented_code_has_a_level_and_a_meaning() -> None:
    assert set(f.LEVELS) == set(f.MEANING)
    assert {c for c, lv in f.LEVELS.items() if lv == f.QUARANTINE} == {"C01", "C02"}
    assert {c for c, lv in f.LEVELS.items() if lv == f.FLAGGED} == {"C03", *(f"D{i:02d}" for i in range(1, 11))}
    assert f.counts(pd.Series(["G", "D01,D03", "D03", None])) == {"(none)": 1, "D01": 1, "D03": 2, "G": 1}


def test_validation_applies_the_table_and_keeps_both_flags_verbatim() -> None:
    times = pd.date_range("2024-01-01", periods=6, freq="h", tz="UTC")
    frame = pd.DataFrame({"time": times, "site": "s", "depth_cm": 5.0, "sensor": "a",
                          "vwc": [0.2, 0.21, 0.2, 0.22, 0.2, 0.21],
                          "ismn_flag": ["G", "C01", "D06", "M", "C03,D02", "U"],
                          "provider_flag": ["M", "0", None, "M", "x", "M"]})
    result = validate_observations(frame, now=pd.Timestamp("2030-01-01T00:00Z"))
    reasons = result.quarantined["reason"].tolist()
    assert reasons == ["ismn_flag(C01)", "ismn_value_missing(M)"]
    clean = result.clean.set_index("ismn_flag")
    assert clean.loc["D06", "quality_flag"] == "ismn_D06"
    assert clean.loc["C03,D02", "quality_flag"] == "ismn_C03,ismn_D02"
    assert clean.loc["G", "quality_flag"] == "ok" and clean.loc["C03,D02", "provider_flag"] == "x"
    assert result.summary["ismn_flags"]["D06"] == 1
    exp = result.summary["expectations"]
    assert exp["ismn_C01_C02_range"]["unexpected_count"] == 1 and exp["ismn_D_geophysical"]["unexpected_count"] == 2


def test_frames_without_flag_columns_validate_as_before() -> None:
    frame = pd.DataFrame({"time": ["2024-01-01"], "site": ["s"], "depth_cm": [5], "sensor": ["a"], "vwc": [0.2]})
    result = validate_observations(frame, now=pd.Timestamp("2030-01-01T00:00Z"))
    assert list(result.clean.columns) == ["time", "site", "depth_cm", "sensor", "vwc", "quality_flag"]
    assert "ismn_flags" not in result.summary and not any(k.startswith("ismn") for k in result.summary["expectations"])


def test_replicates_of_one_instrument_at_one_depth_get_numbered_labels() -> None:
    def sensor(start: float, end: float, instrument: str) -> SimpleNamespace:
        return SimpleNamespace(depth=SimpleNamespace(start=start, end=end), instrument=instrument)

    sensors = [sensor(0.05, 0.05, "EC5"), sensor(0.05, 0.05, "EC5"), sensor(0.05, 0.05, "CS655"),
               sensor(0.2, 0.2, "EC5")]
    assert _labels(sensors) == ["EC5", "EC5_2", "CS655", "EC5"]
    assert site_id("SCAN", "AdamsRanch#1") == "SCAN_AdamsRanch-1"
