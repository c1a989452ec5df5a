"""The two datasets of the detection benchmark, with the faults and events of a run plan planted in them.

- ``demo``: the demo simulator (``smmdn.demo.simulate``), 4 sites × 3 depths × 3 replicates, hourly readings,
  its built-in drifting sensor switched off (the benchmark plants its own faults). Rain events are added to
  the weather before the soil-water balance runs and are served as forcing; irrigation is added to the water
  balance only (the forcing never sees it).
- ``cosmos``: the real COSMOS-UK replicate pair of ``../shared/data`` (SPENF, TDT1/TDT2 at 10 cm, daily).
  A run has several *virtual sites*, each a copy of SPENF over a different stretch of the record (shifted
  by whole 52-week periods plus a few weeks, so the season stays close), moved onto one calendar. Its on-site
  meteorology is the forcing, served in Open-Meteo's names (potential evaporation stands in for ET0, net
  radiation for shortwave radiation; gaps interpolated). Events plant a wetting response on both sensors,
  with the rain in the forcing or (irrigation) not.

A world is everything a run needs: sites, served weather, planted readings, the registry and a writer that
drops one logger file per site and day into the landing directory (the demo's real TOA5 path).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from smmdn.demo import simulate as sim
from smmdn.demo.feeds import write_toa5_file
from tests.helpers import detection_truth as T

DEMO_START = pd.Timestamp("2024-03-01", tz="UTC")
COSMOS_CSV = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cosmos-uk" / \
    "SPENF-2016-11-24-2021-09-05.csv"
COSMOS_DEPTH, COSMOS_SENSORS = 10.0, ("TDT1", "TDT2")
SPEN_LAT, SPEN_LON = 53.87, -1.32  # Spen Farm, approximately (the portal export carries no coordinates)
FORECAST_TAIL = 16  # weather days after the last cycle (forecasts need them)
NO_FAILURE = ("-", 0.0, "-")

Writer = Callable[[Path, str, pd.DataFrame, pd.Timestamp, int], object]


@dataclass
class World:
    """What one run feeds the real daily cycle."""

    dataset: str
    sites: list[sim.SimSite]
    weather: pd.DataFrame  # served as Open-Meteo (daily)
    readings: pd.DataFrame  # planted: time, site, depth_cm, sensor, vwc
    registry: str
    writer: Writer
    start: pd.Timestamp  # first day of logger history
    history: int
    cycles: int
    cadence: str  # "hourly" | "daily"
    sim_seed: int


# ---------------------------------------------------------------------------------------------------
# demo simulator
# ---------------------------------------------------------------------------------------------------
def demo_site_names(n: int = 4) -> list[str]:
    return [s.site for s in sim.make_sites(n, 0)]


def demo_world(plan: T.RunPlan, sim_seed: int, *, n_sites: int = 4, history: int = 60, cycles: int = 60) -> World:
    """A simulated network with ``plan``'s events in its water balance and faults in its readings."""
    from smmdn.demo.feeds import registry_yaml, write_toa5_day

    total = history + cycles + FORECAST_TAIL
    sites = sim.make_sites(n_sites, sim_seed)
    served = sim.simulate_weather(sites, DEMO_START, total, sim_seed)
    soil = served.copy()
    for e in plan.events:
        on = (served["site"] == e.site) & (served["time"] == e.start)
        soil.loc[on, "precipitation_sum"] += e.mm
        if e.in_forcing:
            served.loc[on, "precipitation_sum"] += e.mm
    truth = pd.concat([sim.water_balance(s, soil.loc[soil["site"] == s.site]) for s in sites], ignore_index=True)
    readings = sim.sensor_readings(truth, NO_FAILURE, DEMO_START, sim_seed)
    planted = T.plant(readings, plan.faults, plan.end, seed=sim_seed)

    def writer(landing: Path, site: str, frame: pd.DataFrame, day: pd.Timestamp, days: int = 1) -> object:
        return write_toa5_day(landing, site, frame, day, days=days)

    return World("demo", sites, served, planted, registry_yaml(sites), writer, DEMO_START, history, cycles,
                 "hourly", sim_seed)


# ---------------------------------------------------------------------------------------------------
# COSMOS-UK replicate pair
# ---------------------------------------------------------------------------------------------------
def cosmos_available() -> bool:
    return COSMOS_CSV.exists()


def cosmos_record() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(observations, forcing) of the real export, daily, UTC midnights."""
    from smmdn.sources.cosmos import read_cosmos_csv

    obs, forcing, _ = read_cosmos_csv(str(COSMOS_CSV))
    obs = obs.assign(time=pd.to_datetime(obs["time"]).dt.tz_localize("UTC"))
    forcing = forcing.assign(time=pd.to_datetime(forcing["time"]).dt.tz_localize("UTC"))
    return obs, forcing


def cosmos_site_names(n: int) -> list[str]:
    return [f"SPENF{i}" for i in range(n)]


def cosmos_windows(seed: int, n_sites: int, days: int, obs: pd.DataFrame, min_coverage: float = 0.95
                   ) -> tuple[pd.Timestamp, list[pd.Timedelta]]:
    """The calendar start of a seed and each virtual site's shift into the record.

    Only stretches where both sensors report on at least ``min_coverage`` of the days are used, so the
    planted faults, not the record's own outages, are what is measured (the record's gaps stay where used).
    """
    rng = np.random.default_rng(seed + 500)
    both = obs.pivot_table(index="time", columns="sensor", values="vwc").reindex(columns=list(COSMOS_SENSORS))
    full = pd.date_range(both.index.min(), both.index.max(), freq="D")
    ok = both.reindex(full).notna().all(axis=1).astype(float)
    cover = ok.rolling(days).mean().shift(-(days - 1))  # coverage of the window starting at each day
    good = cover.loc[cover >= min_coverage].index
    if len(good) < n_sites:
        raise ValueError("not enough well-covered stretches in the COSMOS record")
    calendar = pd.Timestamp("2019-03-01", tz="UTC") + pd.Timedelta(days=int(rng.integers(0, 120)))
    for season_days, apart_days in ((35, 21), (49, 14), (63, 7)):  # relaxed only when the record is short of room
        candidates = [t for t in good if abs(((t - calendar).days % 364) - 182) > 182 - season_days]
        shifts: list[pd.Timedelta] = []
        for i in rng.permutation(len(candidates)):
            shift = candidates[int(i)] - calendar
            if all(abs((shift - s).days) >= apart_days for s in shifts):
                shifts.append(shift)
            if len(shifts) == n_sites:
                return calendar, shifts
    raise ValueError("could not place every virtual COSMOS site")


def _open_meteo_forcing(forcing: pd.DataFrame) -> pd.DataFrame:
    """COSMOS meteorology under Open-Meteo daily names; gaps interpolated in time."""
    f = forcing.set_index("time").sort_index()
    out = pd.DataFrame(index=f.index)
    out["precipitation_sum"] = f["precipitation_sum"].fillna(0.0).clip(lower=0)
    for c in ("temperature_2m_mean", "temperature_2m_max", "temperature_2m_min", "relative_humidity_2m_mean"):
        out[c] = f[c].interpolate(limit_direction="both")
    out["shortwave_radiation_sum"] = f["net_radiation_sum"].interpolate(limit_direction="both").clip(0.0, 45.0)
    out["et0_fao_evapotranspiration"] = f["potential_evaporation"].interpolate(limit_direction="both").clip(0.0, 30.0)
    return out.round(2).reset_index()


def cosmos_world(plan: T.RunPlan, seed: int, names: Sequence[str], *, history: int = 60, cycles: int = 60) -> World:
    """Virtual SPENF sites on one calendar with ``plan``'s events and faults planted (daily readings)."""
    obs, forcing = cosmos_record()
    total = history + cycles + FORECAST_TAIL
    calendar, shifts = cosmos_windows(seed, len(names), total, obs)
    met = _open_meteo_forcing(forcing)
    days = pd.date_range(calendar, periods=total, freq="D")
    weather, readings, sites = [], [], []
    for i, (name, shift) in enumerate(zip(names, shifts, strict=True)):
        w = met.set_index("time").reindex(days + shift).interpolate(limit_direction="both")
        w.index = days
        w = w.reset_index(names="time").assign(site=name)
        o = obs.loc[(obs["time"] >= days[0] + shift) & (obs["time"] <= days[-1] + shift)].copy()
        o["time"] = o["time"] - shift
        o["site"] = name
        for e in plan.events:
            if e.site != name:
                continue
            if e.in_forcing:
                w.loc[w["time"] == e.start, "precipitation_sum"] += e.mm
            bump = T.wetting(e.days)
            since = ((o["time"] - e.start) / T.DAY).to_numpy()
            on = (since >= 0) & (since < e.days)
            o.loc[on, "vwc"] = o.loc[on, "vwc"].to_numpy() + bump[since[on].astype(int)]
        weather.append(w)
        readings.append(o[["time", "site", "depth_cm", "sensor", "vwc"]])
        sites.append(sim.SimSite(name, round(SPEN_LAT + 0.01 * i, 4), round(SPEN_LON + 0.01 * i, 4), 1.0, 0.5, 0.05))
    frame = pd.concat(readings, ignore_index=True)
    planted = T.plant(frame, plan.faults, plan.end, seed=seed)
    served = pd.concat(weather, ignore_index=True)[["time", "site", *[c for c in met.columns if c != "time"]]]
    return World("cosmos", sites, served, planted, cosmos_registry(sites), write_daily_toa5, calendar, history,
                 cycles, "daily", seed)


def cosmos_registry(sites: Sequence[sim.SimSite]) -> str:
    """A registry of the virtual sites: one TOA5 logger each, two probes at 10 cm, Open-Meteo forcing."""
    lines = ["# detection benchmark: virtual COSMOS-UK SPENF sites", "version: bench-cosmos-1", "defaults:",
             "  vwc_max: 0.8", "sites:"]
    for i, s in enumerate(sites):
        lines += [f"  - id: {s.site}", f"    name: SPENF copy {i}", f"    lat: {s.latitude}", f"    lon: {s.longitude}",
                  "    elevation_m: 70", f"    tags: [network:cosmos-bench, team:field-{s.site}]",
                  "    lst_utc_offset_hours: 0", "    sensors:"]
        lines += [f"      - {{depth_cm: {int(COSMOS_DEPTH)}, sensor: {x}}}" for x in COSMOS_SENSORS]
        lines += ["    sources:", "      toa5:", f"        station: Bench_{s.site}", "        table: Daily",
                  "        utc_offset_hours: 0", "        columns:"]
        lines += [f"          {_column(x)}: {{depth_cm: {int(COSMOS_DEPTH)}, sensor: {x}}}" for x in COSMOS_SENSORS]
        lines += ["    forcing:", f"      open_meteo: {{latitude: {s.latitude}, longitude: {s.longitude}}}"]
    return "\n".join(lines) + "\n"


def _column(sensor: str) -> str:
    return f"VWC_{int(COSMOS_DEPTH)}cm_{sensor}"


def write_daily_toa5(landing: Path, site: str, frame: pd.DataFrame, day: pd.Timestamp, days: int = 1) -> Path | None:
    """One TOA5 ``Daily`` table file per site (the daily means of ``days`` days from ``day``), as a logger
    upload would leave it (``NAN`` for a missing probe)."""
    mine = frame.loc[(frame["site"] == site) & (frame["time"] >= day) & (frame["time"] < day + days * T.DAY)]
    if mine.empty:
        return None
    wide = mine.pivot_table(index="time", columns="sensor", values="vwc", aggfunc="first").sort_index()
    wide = wide.reindex(columns=list(COSMOS_SENSORS))
    wide.columns = [_column(x) for x in COSMOS_SENSORS]
    return write_toa5_file(landing, f"Bench_{site}", "Daily", wide, day, processing="Avg")
