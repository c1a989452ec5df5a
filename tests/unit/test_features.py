"""Forcing-derived features: detected by name, causal, physically sane, never touching observations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from smmdn.model.data import build_panel, fit_scalers, prepare, without_derived
from smmdn.model.features import detect_roles, ema, extraterrestrial_radiation, is_derived
from tests.unit.synthetic import make_frames


def test_roles_found_by_name_for_known_networks() -> None:
    uscrn = ["precipitation_sum", "temperature_2m_mean", "temperature_2m_max", "temperature_2m_min",
             "shortwave_radiation_sum", "relative_humidity_2m_mean"]
    r = detect_roles(uscrn)
    assert (r.precip, r.tmean, r.tmax, r.tmin, r.pet) == (0, 1, 2, 3, None)
    hourly = ["precipitation_probability", "temperature_2m", "precipitation", "et0_fao_evapotranspiration",
              "soil_temperature_0cm", "dew_point_2m"]
    r = detect_roles(hourly)
    assert (r.precip, r.tmean, r.pet, r.tmax, r.tmin) == (2, 1, 3, None, None)
    r = detect_roles(["wind", "pressure"])
    assert (r.precip, r.tmean, r.pet) == (None, None, None)


def test_ema_is_causal_and_starts_from_the_first_window_mean() -> None:
    rng = np.random.default_rng(0)
    x = rng.gamma(0.5, 4.0, (3, 400))
    y = ema(x, 30.0)
    assert y[:, 0] == pytest.approx(np.exp(-1 / 30) * x[:, :30].mean(1) + (1 - np.exp(-1 / 30)) * x[:, 0])
    later = x.copy()
    later[:, 200:] = 1000.0  # change the future only
    np.testing.assert_array_equal(ema(later, 30.0)[:, :200], y[:, :200])
    const = ema(np.full((1, 50), 2.0), 10.0)
    np.testing.assert_allclose(const, 2.0)


def test_extraterrestrial_radiation_matches_fao56_example() -> None:
    # FAO-56 example 8: 20 deg S on 3 September (day 246) -> Ra = 32.2 MJ m-2 d-1
    ra = extraterrestrial_radiation(np.array([-20.0]), np.array([246]))
    assert ra[0, 0] == pytest.approx(32.2, abs=0.1)
    polar_night = extraterrestrial_radiation(np.array([80.0]), np.array([355]))
    assert polar_night[0, 0] == pytest.approx(0.0, abs=1e-6)


def test_panel_gets_features_from_forcing_only() -> None:
    obs, frc, sites = make_frames(n_sites=2, days=200)
    panel = build_panel(obs, frc, sites)
    derived = [n for n in panel.forcing_names if is_derived(n)]
    assert any("precip_ema" in n for n in derived) and any("balance_ema" in n for n in derived)
    assert np.isfinite(panel.forcing).all() and (panel.forcing_missing[..., -len(derived):] == 0).all()
    # observations (any period) do not change a single derived value
    other = obs.assign(vwc=obs["vwc"] * 0.5 + 0.1)
    np.testing.assert_array_equal(build_panel(other, frc, sites).forcing, panel.forcing)
    # rain raises the antecedent-precipitation index
    i = panel.forcing_names.index("derived:precip_ema10d")
    wetter = frc.assign(precipitation_sum=frc["precipitation_sum"] + 5.0)
    assert (build_panel(obs, wetter, sites).forcing[..., i] > panel.forcing[..., i]).all()


def test_forcing_without_recognised_columns_still_works() -> None:
    obs, frc, _sites = make_frames(n_sites=2, days=120)
    frc = frc.rename(columns={"precipitation_sum": "x1", "temperature_2m_mean": "x2"})
    panel = build_panel(obs, frc, None)
    assert panel.forcing_names == ["x1", "x2"]
    prep = prepare(panel, fit_scalers(panel, 80, np.arange(len(panel.locations))))
    assert prep.dynamic.shape[-1] == 4


def test_hourly_forcing_gets_features_in_days() -> None:
    times = pd.date_range("2021-06-01", periods=24 * 20, freq="h", tz="UTC")
    rain = np.zeros(len(times))
    rain[24 * 5] = 10.0
    frc = pd.DataFrame({"time": times, "site": "A", "precipitation": rain,
                        "temperature_2m": 15 + 5 * np.sin(2 * np.pi * np.arange(len(times)) / 24)})
    obs = pd.DataFrame({"time": times, "site": "A", "depth_cm": 10.0, "sensor": "s", "vwc": 0.2})
    panel = build_panel(obs, frc, pd.DataFrame({"site": ["A"], "latitude": [50.0]}))
    api3 = panel.forcing[0, :, panel.forcing_names.index("derived:precip_ema3d")]
    # a 3-day EMA of hourly data decays by exp(-1) over 72 hours
    assert api3[24 * 5 + 72] / api3[24 * 5] == pytest.approx(np.exp(-1), rel=1e-6)
    pet = panel.forcing[0, :, panel.forcing_names.index("derived:pet_ema30d")]
    assert (pet > 0).all()


def test_ablation_drops_only_derived_columns() -> None:
    obs, frc, sites = make_frames(n_sites=2, days=120)
    panel = without_derived(build_panel(obs, frc, sites))
    assert panel.forcing_names == ["precipitation_sum", "temperature_2m_mean"]
    assert panel.forcing.shape[-1] == panel.forcing_missing.shape[-1] == 2


def test_feature_groups_select_derived_columns() -> None:
    obs, frc, sites = make_frames(n_sites=2, days=120)
    panel = without_derived(build_panel(obs, frc, sites), ["precip"])
    derived = [n for n in panel.forcing_names if is_derived(n)]
    assert derived and all(n.startswith("derived:precip_ema") for n in derived)
