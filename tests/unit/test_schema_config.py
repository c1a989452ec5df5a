"""Canonical frames and settings: the contracts every other part relies on."""

from __future__ import annotations

import pandas as pd
import pytest

from smmdn.config import Settings
from smmdn.errors import InputError
from smmdn.schema import format_times, mixture_columns, normalise_observations, parse_times


def test_dates_and_aware_instants_parse_to_utc() -> None:
    daily = parse_times(pd.Series(["2020-09-01", "2020-09-02"]), "obs.csv")
    assert str(daily.dt.tz) == "UTC" and daily.iloc[0] == pd.Timestamp("2020-09-01", tz="UTC")
    hourly = parse_times(pd.Series(["2020-09-01T06:00:00+02:00", "2020-09-01T05:00Z"]), "obs.csv")
    assert hourly.iloc[0] == pd.Timestamp("2020-09-01T04:00", tz="UTC")
    assert hourly.iloc[1] == pd.Timestamp("2020-09-01T05:00", tz="UTC")
    assert format_times(daily).tolist() == ["2020-09-01", "2020-09-02"]
    assert format_times(hourly).iloc[1] == "2020-09-01T05:00:00+00:00"


def test_naive_clock_times_are_refused_with_rows_and_fix() -> None:
    with pytest.raises(InputError) as info:
        parse_times(pd.Series(["2020-09-01", "2020-09-01T06:00:00"]), "obs.csv")
    assert info.value.rows == [1] and info.value.column == "time" and "offset" in info.value.fix


def test_percent_vwc_is_a_unit_error() -> None:
    frame = pd.DataFrame({"time": ["2020-09-01"], "site": ["A"], "depth_cm": [10], "sensor": ["p1"], "vwc": [31.5]})
    with pytest.raises(InputError, match="percent") as info:
        normalise_observations(frame, "obs.csv")
    assert "divide percent by 100" in info.value.fix


def test_mixture_columns_order() -> None:
    assert mixture_columns(2) == ["weight_0", "weight_1", "mean_0", "mean_1", "sigma_0", "sigma_1"]


def test_settings_read_environment_and_default_to_embedded_sqlite(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SMMDN_HOME", str(tmp_path))
    monkeypatch.setenv("SMMDN_FORECAST_HORIZON", "10")
    settings = Settings(_env_file=None)
    assert settings.forecast_horizon == 10
    assert settings.resolved_database_url == f"sqlite:///{(tmp_path / 'data' / 'smmdn.db').resolve()}"
    assert settings.path("model").is_dir()


def test_settings_refuse_unknown_timezone(monkeypatch) -> None:
    monkeypatch.setenv("SMMDN_TIMEZONE", "Mars/Olympus")
    with pytest.raises(ValueError, match="unknown timezone"):
        Settings(_env_file=None)
