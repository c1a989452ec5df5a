"""Ground truth of the detection benchmark: the pinned grid of faults and events, where each run plants them,
and the planting itself (readings in, readings with the fault out).

Why a module of its own: the benchmark (tests/benchmarks/bench_detection.py), its unit tests and the later
detector issues must plant exactly the same faults, so that a figure measured today and one measured after
the detector is rebuilt describe the same episodes.

Conventions:
- a fault starts at 00:00 UTC of a cycle day (the sites run on UTC: ``lst_utc_offset_hours: 0``) and lasts
  ``days`` days (``None``: it never ends within the run);
- at most one fault per site-depth cluster and run, so its siblings stay healthy; clusters with neither a
  fault nor an event are the clean controls;
- whole-cluster events act on every depth of one site: heavy rain that is in the forcing, irrigation that
  is not.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

DAY = pd.Timedelta(days=1)
GRACE = 3 * DAY  # an alert within the fault plus this long counts (issue 15)
EVENT_WINDOW_DAYS = 10  # an event's response window (the wetting and its recession)
FAULT_DURATIONS: tuple[int | None, ...] = (10, None)  # ends after 10 days / never ends
STEPS = (0.01, 0.03, 0.06)  # m3/m3
DRIFTS = (0.0005, 0.002, 0.01)  # m3/m3 per day
SPIKES = ((0.1, 3), (0.1, 12), (0.2, 3), (0.2, 12))  # (amplitude m3/m3, every hours)
SPIKE_NOISE = 0.01  # m3/m3 of extra noise while a spike fault lasts
DROP_LEVEL, DROP_NOISE = 0.003, 0.001  # "drop to ~0"
EVENT_KINDS = ("rain", "irrigation")  # rain: in the forcing; irrigation: not


@dataclass(frozen=True)
class Fault:
    """One planted sensor fault (a cell of the grid once ``site``/``depth_cm``/``sensor``/``start`` are set)."""

    kind: str  # step | drift | stuck | spikes | drop | disconnected
    magnitude: float | None = None  # step m3/m3, drift m3/m3 per day, spike amplitude m3/m3
    every_h: int | None = None  # spikes: one every so many hours
    days: int | None = None  # None: never ends
    site: str = ""
    depth_cm: float = 0.0
    sensor: str = ""
    start: pd.Timestamp | None = None

    @property
    def cell(self) -> str:
        """The grid cell's name, e.g. ``step 0.03 10d`` or ``spikes 0.2/3h never``."""
        size = ""
        if self.kind in ("step", "drift", "spikes"):
            size = f" {self.magnitude:g}" + {"step": "", "drift": "/d", "spikes": f"/{self.every_h}h"}[self.kind]
        return f"{self.kind}{size} {'never' if self.days is None else f'{self.days}d'}"

    @property
    def family(self) -> str:
        return self.kind

    def end(self, run_end: pd.Timestamp) -> pd.Timestamp:
        """When the fault stops (the run's end for one that never ends)."""
        assert self.start is not None
        return run_end if self.days is None else min(self.start + self.days * DAY, run_end)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["start"] = None if self.start is None else self.start.isoformat()
        d["cell"] = self.cell
        return d


@dataclass(frozen=True)
class Event:
    """A whole-cluster wetting at one site (every depth)."""

    kind: str  # rain | irrigation
    site: str
    start: pd.Timestamp
    mm: float
    days: int = EVENT_WINDOW_DAYS

    @property
    def in_forcing(self) -> bool:
        return self.kind == "rain"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "start": self.start.isoformat(), "in_forcing": self.in_forcing}


@dataclass
class RunPlan:
    """What one run plants: its faults, events and control clusters, and the period that is scored."""

    name: str
    seed: int
    start: pd.Timestamp  # first scored cycle day (00:00 UTC)
    end: pd.Timestamp  # end of the last scored cycle day
    faults: list[Fault] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    controls: list[tuple[str, float]] = field(default_factory=list)
    sensors: dict[tuple[str, float], list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "seed": self.seed, "start": self.start.isoformat(), "end": self.end.isoformat(),
                "faults": [f.to_dict() for f in self.faults], "events": [e.to_dict() for e in self.events],
                "controls": [list(c) for c in self.controls],
                "sensors": [[s, d, list(x)] for (s, d), x in self.sensors.items()]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunPlan:
        faults = [Fault(**{k: v for k, v in f.items() if k != "cell"} | {"start": pd.Timestamp(f["start"])})
                  for f in d["faults"]]
        events = [Event(e["kind"], e["site"], pd.Timestamp(e["start"]), e["mm"], e["days"]) for e in d["events"]]
        return cls(d["name"], d["seed"], pd.Timestamp(d["start"]), pd.Timestamp(d["end"]), faults, events,
                   [(s, float(x)) for s, x in d["controls"]], {(s, float(x)): list(v) for s, x, v in d["sensors"]})


def grid(kinds: Iterable[str] | None = None) -> list[Fault]:
    """The pinned grid (issue 15), unplaced: every magnitude × {10 days, never ends}."""
    shapes: list[Fault] = [Fault("step", m) for m in STEPS] + [Fault("drift", m) for m in DRIFTS]
    shapes += [Fault("stuck")] + [Fault("spikes", a, every) for a, every in SPIKES]
    shapes += [Fault("drop"), Fault("disconnected")]
    wanted = set(kinds) if kinds is not None else None
    return [replace(f, days=d) for f in shapes for d in FAULT_DURATIONS if wanted is None or f.kind in wanted]


def plan_runs(seed: int, sites_per_run: Sequence[Sequence[str]], depths: Sequence[float], sensors: Sequence[str],
              start: pd.Timestamp, cycles: int, *, faults: Sequence[Fault], events: Sequence[str] = EVENT_KINDS,
              controls_per_run: int = 1, first_day: int = 8, last_day: int = 25, prefix: str = "run") -> list[RunPlan]:
    """Spread ``faults`` and ``events`` over runs (one site list each), at most one fault per cluster.

    Each run reserves ``controls_per_run`` clean clusters first; an event takes one whole site. Which cluster
    gets which fault and each fault's start day (cycle ``first_day``..``last_day``) come from ``seed`` alone,
    so a seed fixes the start days whatever detector is measured.
    """
    rng = np.random.default_rng(seed)
    queue = list(faults)
    order = rng.permutation(len(queue))
    queue = [queue[i] for i in order]
    pending_events = list(events)
    end = start + cycles * DAY
    plans = []
    for r, sites in enumerate(sites_per_run):
        plan = RunPlan(f"{prefix}{r}", seed, start, end)
        free_sites = list(sites)
        if pending_events and len(free_sites) > 1:
            kind = pending_events.pop(0)
            site = free_sites.pop(int(rng.integers(len(free_sites))))
            day = int(rng.integers(first_day, max(last_day, first_day + 1)))
            plan.events.append(Event(kind, site, start + day * DAY, 50.0 if kind == "rain" else 40.0))
        clusters = [(s, float(d)) for s in free_sites for d in depths]
        clusters = [clusters[i] for i in rng.permutation(len(clusters))]
        plan.controls = sorted(clusters[:controls_per_run])
        for cluster in clusters[controls_per_run:]:
            if not queue:
                plan.controls.append(cluster)
                continue
            f = queue.pop(0)
            day = int(rng.integers(first_day, last_day + 1))
            sensor = str(sensors[int(rng.integers(len(sensors)))])
            plan.faults.append(replace(f, site=cluster[0], depth_cm=cluster[1], sensor=sensor, start=start + day * DAY))
        plan.controls.sort()
        plan.sensors = {(s, float(d)): list(sensors) for s in sites for d in depths}
        plans.append(plan)
    if queue or pending_events:
        raise ValueError(f"{len(queue)} faults and {len(pending_events)} events did not fit in {len(plans)} runs")
    return plans


# ---------------------------------------------------------------------------------------------------
# planting
# ---------------------------------------------------------------------------------------------------
def plant(readings: pd.DataFrame, faults: Iterable[Fault], run_end: pd.Timestamp, seed: int = 0) -> pd.DataFrame:
    """Readings (``time``, ``site``, ``depth_cm``, ``sensor``, ``vwc``) with every fault applied.

    Faults change only their own series and only from ``start`` to their end; a fault that ends leaves the
    sensor reading truthfully again (a stuck sensor resumes, a disconnected one reports again).
    """
    out = readings.copy()
    rng = np.random.default_rng(seed + 9_000)
    drop = np.zeros(len(out), dtype=bool)
    for f in faults:
        assert f.start is not None
        series = ((out["site"] == f.site) & (out["depth_cm"].astype(float) == float(f.depth_cm))
                  & (out["sensor"] == f.sensor)).to_numpy()
        t = out["time"]
        during = series & (t >= f.start).to_numpy() & (t < f.end(run_end)).to_numpy()
        idx = np.flatnonzero(during)
        if f.kind == "disconnected":
            drop |= during
            continue
        if not len(idx):
            continue
        x = out["vwc"].to_numpy(dtype=float).copy()
        since_h = ((t.iloc[idx] - f.start) / pd.Timedelta(hours=1)).to_numpy()
        if f.kind == "step":
            x[idx] += float(f.magnitude or 0.0)
        elif f.kind == "drift":
            x[idx] += float(f.magnitude or 0.0) * since_h / 24.0
        elif f.kind == "stuck":
            before = np.flatnonzero(series & (t < f.start).to_numpy())
            x[idx] = x[before[-1]] if len(before) else x[idx[0]]
        elif f.kind == "spikes":
            every = int(f.every_h or 1)
            hit = np.isclose(np.mod(since_h, every), 0.0)
            sign = rng.choice([-1.0, 1.0], size=len(idx))
            x[idx] += rng.normal(0.0, SPIKE_NOISE, len(idx)) + np.where(hit, sign * float(f.magnitude or 0.0), 0.0)
        elif f.kind == "drop":
            x[idx] = DROP_LEVEL + rng.normal(0.0, DROP_NOISE, len(idx))
        else:
            raise ValueError(f"unknown fault kind {f.kind!r}")
        out["vwc"] = np.clip(x, 0.0, 0.8).round(4)
    return out.loc[~drop].reset_index(drop=True)


def wetting(days: int = EVENT_WINDOW_DAYS, peak: float = 0.1, recession_days: float = 3.0) -> np.ndarray:
    """A wetting response (m3/m3 per day since the event) for planting events on recorded data: a rise the
    first day, then an exponential recession."""
    return peak * np.exp(-np.arange(days) / recession_days)
