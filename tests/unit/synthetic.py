"""A small synthetic network with a known mixture: replicate sensors scattered around a simulated signal."""

from __future__ import annotations

import numpy as np
import pandas as pd

NOISE_SD = 0.02


def make_frames(n_sites: int = 4, days: int = 420, replicates: int = 3, seed: int = 0) -> tuple[pd.DataFrame, ...]:
    """Bucket model driven by random rain; each replicate = signal + N(0, NOISE_SD) every day."""
    rng = np.random.default_rng(seed)
    times = pd.date_range("2021-01-01", periods=days, freq="D")
    obs, frc, sites = [], [], []
    for s in range(n_sites):
        site = f"S{s:02d}"
        rain = rng.gamma(0.4, 6.0, days) * (rng.random(days) < 0.35)
        temp = 10 + 8 * np.sin(2 * np.pi * np.arange(days) / 365) + rng.normal(0, 1, days)
        level = 0.15 + 0.05 * s
        store = np.zeros(days)
        for t in range(1, days):
            store[t] = 0.93 * store[t - 1] + 0.004 * rain[t]
        signal = level + store
        frc.append(pd.DataFrame({"time": times.strftime("%Y-%m-%d"), "site": site, "precipitation_sum": rain,
                                 "temperature_2m_mean": temp}))
        sites.append({"site": site, "latitude": 50.0 + s, "longitude": 8.0, "elevation_m": 100.0 * s})
        for r in range(replicates):
            y = signal + rng.normal(0, NOISE_SD, days)
            obs.append(pd.DataFrame({"time": times.strftime("%Y-%m-%d"), "site": site, "depth_cm": 10,
                                     "sensor": f"P{r}", "vwc": y}))
    return pd.concat(obs, ignore_index=True), pd.concat(frc, ignore_index=True), pd.DataFrame(sites)
