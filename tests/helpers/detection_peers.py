"""The field's peers on the benchmark's readings, run causally: flags per sensor-day.

- **SaQC** (UFZ, 2.9): a fixed-rule chain per site-depth cluster — ``flagRange``, ``flagConstants``,
  ``flagJumps``, ``flagZScore`` (modified z-score) and ``flagDriftFromNorm`` over the replicates.
- **flagit** (ISMN quality control, Dorigo et al. 2013), per sensor, with the precipitation of the forcing as
  its ancillary input (flags C01–C03, D04, D06–D10; a sensor-day counts as flagged with any flag but G).

Causal: for each cycle day the peer sees the readings up to the end of that day (a trailing context of
``CONTEXT_DAYS``, longer than every window of the chain) and only that day's flags count, so time to detect
is what a daily run would have had.
Parameters are fixed here once, per cadence (hourly simulator readings, daily COSMOS means), from the
sensors' noise and the tools' documented examples; they were not tuned on the scored seeds.

flagit 0.3 under pandas 2 / setuptools ≥ 81: its package ``__init__`` imports ``pkg_resources`` (gone from
current setuptools) only to read its version, so ``_flagit_interface`` loads ``flagit.flagit`` without
running that ``__init__``; its algorithms run unchanged (with pandas' chained-assignment FutureWarnings
silenced). It expects soil moisture in percent (C02 is "> 60").
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import types
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

CONTEXT_DAYS = {"hourly": 14, "daily": 30}  # trailing data each day's run sees (≥ every window of the chain)
DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class SaqcParams:
    """One SaQC chain's thresholds (m3/m3 and pandas offsets)."""

    vwc_min: float = 0.0
    vwc_max: float = 0.6
    constants_window: str = "12h"
    constants_thresh: float = 0.0
    jump_thresh: float = 0.04
    jump_window: str = "6h"
    zscore_window: str = "24h"
    zscore_thresh: float = 5.0
    zscore_min_residuals: float = 0.03
    drift_window: str = "1D"
    drift_spread: float = 0.03
    context_days: int = CONTEXT_DAYS["hourly"]


SAQC_HOURLY = SaqcParams()
SAQC_DAILY = SaqcParams(constants_window="3D", jump_thresh=0.04, jump_window="5D", zscore_window="15D",
                        drift_window="7D", drift_spread=0.03,
                        context_days=CONTEXT_DAYS["daily"])


def mean_abs_difference(x: np.ndarray, y: np.ndarray) -> float:
    """``flagDriftFromNorm``'s distance: mean absolute difference (m3/m3), as SaQC's own example divides the
    cityblock distance by the window length — a plain cityblock sum grows with the number of readings."""
    return float(np.nanmean(np.abs(np.asarray(x, dtype=float) - np.asarray(y, dtype=float))))


def _day_flags(flagged: pd.Series, day: pd.Timestamp) -> bool:
    part = flagged.loc[(flagged.index >= day) & (flagged.index < day + DAY)]
    return bool(part.any())


def saqc_day(wide: pd.DataFrame, clusters: list[list[str]], day: pd.Timestamp, p: SaqcParams) -> set[str]:
    """Fields (one per sensor) SaQC flags on ``day``, from readings up to its end.

    ``wide``: one column per sensor on the network's time grid (a sensor that did not report is NaN there);
    ``clusters``: the columns of each site-depth (the replicates ``flagDriftFromNorm`` compares)."""
    window = wide.loc[(wide.index >= day - p.context_days * DAY) & (wide.index < day + DAY)]
    if window.empty:
        return set()
    window = window.copy()
    window.index = window.index.tz_convert(None)
    naive = day.tz_convert(None)
    flagged: set[str] = set()
    for group in clusters:
        flags = saqc_chain(window[group], p)
        today = (flags.index >= naive) & (flags.index < naive + DAY)
        hit = (flags.loc[today] > 0).any(axis=0)
        flagged |= {str(c) for c, v in hit.items() if bool(v)}
    return flagged


def saqc_chain(frame: pd.DataFrame, p: SaqcParams) -> pd.DataFrame:
    """The fixed-rule chain on one cluster (columns: its sensors); flags as floats (> 0: flagged)."""
    import saqc

    fields = [str(c) for c in frame.columns]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qc = saqc.SaQC(frame, scheme="float")
        qc = qc.flagMissing(fields)
        qc = qc.flagRange(fields, min=p.vwc_min, max=p.vwc_max)
        qc = qc.flagConstants(fields, window=p.constants_window, thresh=p.constants_thresh)
        qc = qc.flagJumps(fields, thresh=p.jump_thresh, window=p.jump_window)
        qc = qc.flagZScore(fields, method="modified", window=p.zscore_window, thresh=p.zscore_thresh,
                           min_residuals=p.zscore_min_residuals, center=False)
        if len(fields) >= 2:
            qc = qc.flagDriftFromNorm(fields, window=p.drift_window, spread=p.drift_spread,
                                      metric=mean_abs_difference)
        return qc.flags.to_pandas()


def _flagit_interface() -> Any:
    """``flagit.flagit.Interface`` without running the package ``__init__`` (see the module docstring)."""
    if "flagit.flagit" in sys.modules:
        return sys.modules["flagit.flagit"].Interface
    spec = importlib.util.find_spec("flagit")
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError("flagit is not installed (pip install -e '.[bench]')")
    if "flagit" not in sys.modules:
        pkg = types.ModuleType("flagit")
        pkg.__path__ = list(spec.submodule_search_locations)
        pkg.__version__ = importlib.metadata.version("flagit")
        sys.modules["flagit"] = pkg
    from flagit.flagit import Interface

    return Interface


def flagit_sensor_day(series: pd.Series, precip: pd.Series, day: pd.Timestamp, depth_cm: float,
                      context_days: int = CONTEXT_DAYS["hourly"]) -> bool:
    """flagit's verdict for one sensor on ``day`` (any flag other than G on that day's readings)."""
    interface = _flagit_interface()
    s = series.loc[(series.index >= day - context_days * DAY) & (series.index < day + DAY)].dropna()
    if s.empty:
        return False
    data = pd.DataFrame({"soil_moisture": s.to_numpy() * 100.0,
                         "precipitation": precip.reindex(s.index).fillna(0.0).to_numpy()}, index=s.index)
    data.index = data.index.tz_convert(None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flagged = interface(data).run(depth_from=depth_cm / 100.0)
    bad = flagged["qflag"].apply(lambda tags: bool(set(map(str, tags)) - {"G"}))
    return _day_flags(bad, day.tz_convert(None))


def hourly_precip(weather: pd.DataFrame, site: str, index: pd.DatetimeIndex, cadence: str) -> pd.Series:
    """The forcing's daily precipitation spread over the readings of each day (flagit's ancillary input)."""
    daily = weather.loc[weather["site"] == site].set_index("time")["precipitation_sum"]
    per_day = pd.Series(index.floor("D"), index=index).map(daily).fillna(0.0)
    return per_day / (24.0 if cadence == "hourly" else 1.0)


def _field(site: str, depth: float, sensor: str) -> str:
    return f"{site}|{depth:g}|{sensor}"


def run_peers(readings: pd.DataFrame, weather: pd.DataFrame, days: list[pd.Timestamp], cadence: str,
              peers: tuple[str, ...] = ("saqc", "flagit")) -> dict[str, pd.DataFrame]:
    """Flagged sensor-days per peer (``time`` = day, ``site``, ``depth_cm``, ``sensor``), day by day."""
    params = SAQC_HOURLY if cadence == "hourly" else SAQC_DAILY
    out: dict[str, list[dict[str, Any]]] = {p: [] for p in peers}
    r = readings.assign(depth_cm=readings["depth_cm"].astype(float))
    r["field"] = [_field(a, b, c) for a, b, c in zip(r["site"], r["depth_cm"], r["sensor"], strict=True)]
    keys = r[["field", "site", "depth_cm", "sensor"]].drop_duplicates().set_index("field").sort_index()
    wide = r.pivot_table(index="time", columns="field", values="vwc", aggfunc="first").sort_index()
    clusters = [list(g.index) for _, g in keys.groupby(["site", "depth_cm"])]
    precip = {site: hourly_precip(weather, str(site), wide.index, cadence) for site in keys["site"].unique()}

    def add(peer: str, day: pd.Timestamp, field: str) -> None:
        k = keys.loc[field]
        out[peer].append({"time": day, "site": k["site"], "depth_cm": k["depth_cm"], "sensor": k["sensor"]})

    for day in days:
        if "saqc" in out:
            for field in sorted(saqc_day(wide, clusters, day, params)):
                add("saqc", day, field)
        if "flagit" in out:
            for field, k in keys.iterrows():
                if flagit_sensor_day(wide[field], precip[k["site"]], day, float(k["depth_cm"]), params.context_days):
                    add("flagit", day, str(field))
    return {p: pd.DataFrame(v, columns=["time", "site", "depth_cm", "sensor"]) for p, v in out.items()}


def sensor_day_rates(flags: pd.DataFrame, plan: Any, days: list[pd.Timestamp]) -> dict[str, float]:
    """Share of flagged sensor-days on clean controls and on event sites (the peers' own unit)."""
    f = flags.assign(depth_cm=flags["depth_cm"].astype(float))
    controls = {(s, float(d)) for s, d in plan.controls}
    on_control = f.loc[[(s, d) in controls for s, d in zip(f["site"], f["depth_cm"], strict=True)]]
    n_control = sum(len(plan.sensors.get(c, [])) for c in controls) * len(days)
    rates = {"clean_flagged_share": len(on_control) / n_control if n_control else np.nan}
    ev_days = 0
    ev_flagged = 0
    for e in plan.events:
        window = [d for d in days if e.start <= d < e.start + e.days * DAY]
        sensors = sum(len(v) for (s, _), v in plan.sensors.items() if s == e.site)
        ev_days += sensors * len(window)
        ev_flagged += int(((f["site"] == e.site) & f["time"].isin(window)).sum())
    rates["event_flagged_share"] = ev_flagged / ev_days if ev_days else np.nan
    return rates
