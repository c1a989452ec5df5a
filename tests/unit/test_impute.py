"""Forcing gap filling: interpolation for short gaps, the site's seasonal climatology otherwise."""

from __future__ import annotations

import numpy as np
import pandas as pd

from smmdn.model.data import build_panel
from smmdn.model.impute import fill_gaps, is_intermittent

DAY = pd.Timedelta(days=1)


def _daily(n: int = 731) -> pd.DataFrame:
    times = pd.date_range("2020-01-01", periods=n, freq="D", tz="UTC")
    rng = np.random.default_rng(0)
    rain = np.where(rng.random(n) < 0.3, rng.gamma(2.0, 4.0, n), 0.0)
    temp = 10 + 10 * np.sin(2 * np.pi * (np.arange(n) - 100) / 365)
    return pd.DataFrame({"precipitation_sum": rain, "temperature_2m_mean": temp}, index=times)


def test_precipitation_gap_gets_the_monthly_mean_not_the_last_value() -> None:
    frame = _daily()
    frame.iloc[9, 0] = 30.0  # a wet day just before the gap
    gap = slice(10, 60)  # 50 days in January-February
    truth = frame.copy()
    frame.iloc[gap, 0] = np.nan
    filled = fill_gaps(frame, DAY)
    months = frame.index.month
    expected = frame["precipitation_sum"].groupby(months).transform("mean")
    np.testing.assert_allclose(filled.iloc[gap, 0], expected.iloc[gap])
    assert not np.allclose(filled.iloc[gap, 0], 30.0)  # no forward-filled storm
    assert np.isfinite(filled.to_numpy()).all()
    pd.testing.assert_series_equal(filled.iloc[60:, 0], truth.iloc[60:, 0])  # measured values untouched


def test_short_gap_interpolated_long_gap_from_climatology() -> None:
    frame = _daily()
    frame.iloc[100, 1] = np.nan  # one day: linear between neighbours
    frame.iloc[200:240, 1] = np.nan  # 40 days: the month's mean
    filled = fill_gaps(frame, DAY)
    t = filled["temperature_2m_mean"]
    assert abs(t.iloc[100] - 0.5 * (t.iloc[99] + t.iloc[101])) < 1e-9
    same_month = frame["temperature_2m_mean"][frame.index.month == frame.index[220].month].mean()
    assert abs(t.iloc[220] - same_month) < 1e-9  # the other year's August fills this one's
    assert not is_intermittent("temperature_2m_mean") and is_intermittent("precipitation")


def test_sub_daily_gaps_follow_the_diurnal_cycle() -> None:
    times = pd.date_range("2020-06-01", periods=24 * 40, freq="h", tz="UTC")
    sw = np.maximum(0.0, 800 * np.sin(np.pi * (times.hour.to_numpy() - 6) / 12))
    frame = pd.DataFrame({"shortwave_radiation": sw}, index=times)
    frame.iloc[24 * 20 : 24 * 25, 0] = np.nan  # five whole days
    filled = fill_gaps(frame, pd.Timedelta(hours=1))
    gap = filled.iloc[24 * 20 : 24 * 25, 0].to_numpy()
    np.testing.assert_allclose(gap, sw[24 * 20 : 24 * 25], atol=1e-6)  # night stays dark, noon stays bright


def test_panel_flags_imputed_values_and_reports_counts() -> None:
    frame = _daily(120)
    frame.iloc[30:50, 0] = np.nan
    forcing = frame.reset_index(names="time").assign(site="A")
    forcing["time"] = forcing["time"].dt.strftime("%Y-%m-%d")
    obs = pd.DataFrame({"time": forcing["time"], "site": "A", "depth_cm": 10, "sensor": "s1", "vwc": 0.2})
    panel = build_panel(obs, forcing)
    j = panel.forcing_names.index("precipitation_sum")
    assert panel.forcing_missing[0, 30:50, j].all() and not panel.forcing_missing[0, :30, j].any()
    assert np.isfinite(panel.forcing[0, :, j]).all()
    assert panel.report["forcing_missing_imputed"]["precipitation_sum"] == 20
    assert not np.allclose(panel.forcing[0, 30:50, j], panel.forcing[0, 29, j])  # not forward-filled
