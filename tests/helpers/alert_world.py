"""A small world for alert and verification tests: sites with replicate (or single) sensors, a known truth,
daily forecast runs whose mixtures are centred on it, and observations to bend as a scenario needs.

Forecasts are issued each day for the next ``horizon`` days (lead 1 = the next day), like the daily cycle.
Observations are hourly readings (a daily mean per local day is what detection compares).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from smmdn.model.mixture import summarise

DAY = pd.Timedelta(days=1)
START = pd.Timestamp("2024-05-01", tz="UTC")


@dataclass
class World:
    store: Any
    sites: list[str]
    depths: tuple[float, ...]
    sensors: tuple[str, ...]
    days: int
    sigma: float
    start: pd.Timestamp = START
    horizon: int = 3
    truth: pd.DataFrame = field(default_factory=pd.DataFrame)

    def day(self, n: int) -> pd.Timestamp:
        return self.start + n * DAY

    def now_after(self, n: int) -> pd.Timestamp:
        """The daily cycle's clock after day ``n`` is complete (06:00 the next morning)."""
        return self.day(n + 1) + pd.Timedelta(hours=6)


def build(store: Any, *, sites: Sequence[str] = ("S1", "S2"), depths: Sequence[float] = (10.0,),
          sensors: Sequence[str] = ("a", "b", "c"), days: int = 20, sigma: float = 0.012, horizon: int = 3,
          tags: dict[str, list[str]] | None = None, register_sensors: bool = True) -> World:
    """Sites (with tags and coordinates), sensors, a smooth truth per (site, depth) and its forecasts."""
    tags = tags or {}
    store.upsert_sites(pd.DataFrame({
        "site": list(sites), "name": [f"Site {s}" for s in sites],
        "latitude": [45.0 + i for i in range(len(sites))], "longitude": [7.0 + i for i in range(len(sites))],
        "elevation_m": [300.0] * len(sites), "tags": [tags.get(s, []) for s in sites]}))
    if register_sensors:
        store.upsert_sensors(pd.DataFrame([{"site": s, "depth_cm": d, "sensor": x}
                                           for s in sites for d in depths for x in sensors]))
    world = World(store, list(sites), tuple(float(d) for d in depths), tuple(sensors), days, sigma, horizon=horizon)
    t = np.arange(days + horizon + 2)
    rows = []
    for i, site in enumerate(sites):
        for j, depth in enumerate(world.depths):
            level = 0.2 + 0.015 * (i % 10) - 0.01 * j
            values = level + 0.02 * np.sin(2 * np.pi * t / 17 + i)
            rows += [(world.day(int(k)), site, depth, float(v)) for k, v in zip(t, values, strict=True)]
    world.truth = pd.DataFrame(rows, columns=["time", "site", "depth_cm", "vwc"])
    store.register_model_version("m1", kind="full", artifact_uri="file:///tmp/m1", status="champion")
    return world


def mixture(mean: float, sigma: float) -> dict[str, float]:
    """A two-component mixture centred on ``mean`` (unimodal: components 0.5 sigma apart)."""
    return {"weight_0": 0.5, "weight_1": 0.5, "mean_0": mean - 0.25 * sigma, "mean_1": mean + 0.25 * sigma,
            "sigma_0": sigma * 0.97, "sigma_1": sigma * 0.97}


def write_forecasts(world: World, issue_days: Sequence[int], *,
                    shape: Callable[[str, float, pd.Timestamp, float], dict[str, float]] | None = None) -> None:
    """One complete run per issue day; ``shape(site, depth, valid_time, truth)`` → mixture columns."""
    shape = shape or (lambda site, depth, t, v: mixture(v, world.sigma))
    truth = world.truth.set_index(["site", "depth_cm", "time"])["vwc"]
    for n in issue_days:
        issue = world.day(n)
        rows = []
        for site in world.sites:
            for depth in world.depths:
                for lead in range(1, world.horizon + 1):
                    valid = issue + lead * DAY
                    comps = shape(site, depth, valid, float(truth.loc[(site, depth, valid)]))
                    rows.append({"site": site, "depth_cm": depth, "issue_time": issue, "valid_time": valid,
                                 "lead": lead, **comps})
        frame = pd.DataFrame(rows)
        k = sum(1 for c in frame.columns if c.startswith("weight_"))
        w, mu, s = (frame[[f"{p}_{i}" for i in range(k)]].to_numpy() for p in ("weight", "mean", "sigma"))
        for name, values in summarise(w, mu, s).items():
            frame[name] = values
        run = world.store.start_forecast_run(issue, "m1", run_id=f"run-{n}")
        world.store.write_forecasts(frame, run_id=run, model_version="m1")
        world.store.finish_forecast_run(run)


def readings(world: World, days: Sequence[int], *, seed: int = 0, noise: float = 0.003, day_sd: float | None = None,
             bend: Callable[[str, float, str, pd.Timestamp, np.ndarray], np.ndarray] | None = None,
             sensors: Sequence[str] | None = None, hourly: bool = True) -> pd.DataFrame:
    """Readings = truth + a daily error shared by the sensors of a depth (sd ``day_sd``, default 0.85 of the
    forecast spread: calibrated, slightly sharp-free) + a small per-sensor offset + hourly noise;
    ``bend(site, depth, sensor, day, values)`` plants a scenario (returns the changed values)."""
    rng = np.random.default_rng(seed)
    truth = world.truth.set_index(["site", "depth_cm", "time"])["vwc"]
    offsets = {(s, d, x): rng.normal(0, 0.002) for s in world.sites for d in world.depths for x in world.sensors}
    day_sd = 0.85 * world.sigma if day_sd is None else day_sd
    shared = {(s, d, n): rng.normal(0, day_sd) for s in world.sites for d in world.depths for n in days}
    frames = []
    for n in days:
        day = world.day(n)
        times = pd.date_range(day, periods=24, freq="h", tz="UTC") if hourly else pd.DatetimeIndex([day])
        for site in world.sites:
            for depth in world.depths:
                for sensor in sensors or world.sensors:
                    values = truth.loc[(site, depth, day)] + shared[(site, depth, n)] + offsets[
                        (site, depth, sensor)] + rng.normal(0, noise, len(times))
                    if bend is not None:
                        values = bend(site, depth, sensor, day, values)
                    frames.append(pd.DataFrame({"time": times, "site": site, "depth_cm": depth, "sensor": sensor,
                                                "vwc": np.clip(values, 0.01, 0.6)}))
    return pd.concat(frames, ignore_index=True)


def observe(world: World, days: Sequence[int], **kwargs: Any) -> pd.DataFrame:
    frame = readings(world, days, **kwargs)
    world.store.write_observations(frame, source="test")
    return frame


def routes_file(path: Any, receiver: Any, teams: dict[str, list[str]], *, operators: str | None = None,
                escalate: dict[str, str] | None = None, notify: dict[str, Any] | None = None,
                extra: dict[str, Any] | None = None) -> Any:
    """A routes YAML: team name → site tags; each team posts to ``receiver`` under ``/<team>``; ``notify``:
    the timing defaults (group_wait, repeat_interval, …), ``extra``: more top-level keys (inhibit_rules)."""
    import yaml

    escalate = escalate or {}
    spec: dict[str, Any] = {
        "teams": {team: {"urls": [receiver.url_for(team)], **({"escalate_to": escalate[team]} if team in escalate
                                                                else {})} for team in teams},
        "routes": [{"tags": tags, "teams": [team]} for team, tags in teams.items() if tags],
    }
    if operators:
        spec["operators"] = [operators]
    # field teams take the daily digest by default (smmdn.alerts.routing); these worlds look at the messages
    # per incident, so they say digest: false unless the test asks for the digest
    spec["notify"] = {"digest": False, **(notify or {})}
    spec.update(extra or {})
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path
