"""A simulated sensor network: weather, a layered soil-water balance, replicate sensors with noise, a failure.

Why a simulation and not recorded data: the demo must run offline, from cold start, with known truth
(one sensor drifts away from its replicates partway, so the anomaly detector has something real to
find). The physics is deliberately simple: a daily bucket cascade per site (infiltration of rain into
the top layer, drainage to the next layer above field capacity, evapotranspiration drawn mostly from
the top), interpolated to hourly readings with sensor noise and a per-sensor calibration offset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DEPTHS_CM = (5.0, 20.0, 50.0)
SENSORS = ("a", "b", "c")
LAYER_MM = {5.0: 100.0, 20.0: 200.0, 50.0: 400.0}  # water-holding thickness represented by each sensor


@dataclass(frozen=True)
class SimSite:
    site: str
    latitude: float
    longitude: float
    wetness: float  # scales rainfall (arid < 1 < humid)
    porosity: float  # saturated vwc
    wilting: float  # residual vwc


@dataclass
class Network:
    """Truth and measurements of the simulated network."""

    sites: list[SimSite]
    weather: pd.DataFrame  # daily: time, site, Open-Meteo daily variables (the "reanalysis")
    truth: pd.DataFrame  # daily: time, site, depth_cm, vwc
    readings: pd.DataFrame  # hourly: time (UTC), site, depth_cm, sensor, vwc (with noise, failures)
    failing: tuple[str, float, str]  # (site, depth_cm, sensor) that drifts
    failure_start: pd.Timestamp


def make_sites(n: int, seed: int = 0) -> list[SimSite]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        out.append(SimSite(f"DEMO{i + 1:02d}", round(35 + 10 * rng.random(), 3), round(-100 + 15 * rng.random(), 3),
                           float(0.6 + 0.8 * rng.random()), float(0.42 + 0.06 * rng.random()),
                           float(0.05 + 0.04 * rng.random())))
    return out


def simulate_weather(sites: list[SimSite], start: pd.Timestamp, days: int, seed: int = 0) -> pd.DataFrame:
    """Daily weather per site in Open-Meteo's daily variable names and units."""
    rng = np.random.default_rng(seed + 1)
    times = pd.date_range(start, periods=days, freq="D", tz="UTC")
    doy = times.dayofyear.to_numpy()
    season = np.sin(2 * np.pi * (doy - 105) / 365.25)
    frames = []
    for s in sites:
        wet_day = rng.random(days) < 0.28 * s.wetness
        rain = np.where(wet_day, rng.gamma(0.8, 9.0 * s.wetness, days), 0.0)
        t_mean = 12 + 12 * season + rng.normal(0, 3, days)
        amp = 6 + 2 * rng.random(days)
        sw = np.clip(15 + 9 * season - 6 * wet_day + rng.normal(0, 2, days), 1, 35)
        rh = np.clip(60 + 20 * wet_day - 10 * season + rng.normal(0, 8, days), 10, 100)
        et0 = np.clip(0.0023 * (t_mean + 17.8) * amp**0.5 * sw * 0.408 * 1.2, 0.1, 12)
        frames.append(pd.DataFrame({
            "time": times, "site": s.site, "precipitation_sum": rain.round(1),
            "temperature_2m_mean": t_mean.round(1), "temperature_2m_max": (t_mean + amp / 2).round(1),
            "temperature_2m_min": (t_mean - amp / 2).round(1), "shortwave_radiation_sum": sw.round(2),
            "relative_humidity_2m_mean": rh.round(0), "et0_fao_evapotranspiration": et0.round(2),
        }))
    return pd.concat(frames, ignore_index=True)


def water_balance(site: SimSite, weather: pd.DataFrame) -> pd.DataFrame:
    """Daily vwc per depth from a three-layer bucket cascade (mm of water per layer)."""
    layers = list(DEPTHS_CM)
    cap = {d: LAYER_MM[d] * site.porosity for d in layers}
    field_cap = {d: LAYER_MM[d] * (site.wilting + 0.6 * (site.porosity - site.wilting)) for d in layers}
    floor = {d: LAYER_MM[d] * site.wilting for d in layers}
    store = {d: 0.5 * (field_cap[d] + floor[d]) for d in layers}
    share = {5.0: 0.55, 20.0: 0.3, 50.0: 0.15}
    rows = []
    for t, rain, et0 in zip(weather["time"], weather["precipitation_sum"], weather["et0_fao_evapotranspiration"],
                            strict=True):
        water = float(rain)
        for d in layers:
            store[d] += water
            water = max(store[d] - cap[d], 0.0)
            store[d] -= water
            drain = 0.35 * max(store[d] - field_cap[d], 0.0)
            store[d] -= drain
            water += drain
            avail = (store[d] - floor[d]) / max(field_cap[d] - floor[d], 1e-6)
            store[d] = max(store[d] - float(et0) * share[d] * min(max(avail, 0.0), 1.0), floor[d])
            rows.append((t, site.site, d, store[d] / LAYER_MM[d]))
    return pd.DataFrame(rows, columns=["time", "site", "depth_cm", "vwc"])


def sensor_readings(truth: pd.DataFrame, failing: tuple[str, float, str], failure_start: pd.Timestamp,
                    seed: int = 0, noise: float = 0.004) -> pd.DataFrame:
    """Hourly readings of three replicate sensors per depth: offset + noise; one drifts after ``failure_start``."""
    rng = np.random.default_rng(seed + 2)
    parts = []
    for (site, depth), grp in truth.groupby(["site", "depth_cm"], sort=True):
        daily = grp.set_index("time")["vwc"].sort_index()
        hours = pd.date_range(daily.index[0], daily.index[-1] + pd.Timedelta(hours=23), freq="h", tz="UTC")
        # daily values sit at noon; linear interpolation between them gives a smooth hourly signal
        noon = pd.Series(daily.to_numpy(), index=daily.index + pd.Timedelta(hours=12))
        hourly = noon.reindex(noon.index.union(hours)).interpolate("time").ffill().bfill().reindex(hours)
        for sensor in SENSORS:
            offset = rng.normal(0, 0.006)
            values = hourly.to_numpy() + offset + rng.normal(0, noise, len(hours))
            if (site, depth, sensor) == failing:
                after = hours >= failure_start
                days_in = (hours[after] - failure_start) / pd.Timedelta(days=1)
                values[after] += 0.02 + 0.012 * np.asarray(days_in)  # calibration drift after a lightning strike
            parts.append(pd.DataFrame({"time": hours, "site": site, "depth_cm": depth, "sensor": sensor,
                                       "vwc": np.clip(values, 0.01, 0.6).round(4)}))
    return pd.concat(parts, ignore_index=True)


def simulate_network(n_sites: int, start: pd.Timestamp, days: int, *, failure_day: int, seed: int = 0) -> Network:
    """The whole network over ``days`` from ``start``; the failing sensor drifts from ``failure_day`` on."""
    sites = make_sites(n_sites, seed)
    weather = simulate_weather(sites, start, days, seed)
    truth = pd.concat([water_balance(s, weather.loc[weather["site"] == s.site]) for s in sites], ignore_index=True)
    failing = (sites[0].site, DEPTHS_CM[0], SENSORS[2])
    failure_start = pd.Timestamp(start) + pd.Timedelta(days=failure_day)
    if failure_start.tzinfo is None:
        failure_start = failure_start.tz_localize("UTC")
    readings = sensor_readings(truth, failing, failure_start, seed)
    return Network(sites, weather, truth, readings, failing, failure_start)


def forecast_weather(weather: pd.DataFrame, issued: pd.Timestamp, days: int, seed: int = 0) -> pd.DataFrame:
    """A weather forecast issued on ``issued``: the truth plus errors growing with lead (deterministic)."""
    window = weather.loc[(weather["time"] >= issued) & (weather["time"] < issued + pd.Timedelta(days=days))].copy()
    rng = np.random.default_rng(seed + int(issued.value // 86_400_000_000_000))
    lead = ((window["time"] - issued) / pd.Timedelta(days=1)).to_numpy()
    growth = 0.15 + 0.1 * lead
    window["precipitation_sum"] = (window["precipitation_sum"] * np.exp(rng.normal(0, growth))).round(1)
    for col in ("temperature_2m_mean", "temperature_2m_max", "temperature_2m_min"):
        window[col] = (window[col] + rng.normal(0, 0.8 * growth * 3)).round(1)
    return window
