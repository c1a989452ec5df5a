"""Filling forcing gaps: short gaps interpolated, long ones from the site's own seasonal climatology.

Why not forward fill: a precipitation gap filled forward repeats the last day's rain (or drought) for
as long as the gap lasts — a 78-day gap in the COSMOS-UK SPENF rain gauge turned the autumn of 2020 into
a drought for the model. The expected value of an unknown day is the climatology of that site and
season, so that is what a long gap gets; intermittent variables (precipitation) always get it, since
interpolating between two rain days invents rain. Each filled value keeps its missing-indicator
channel, so the model can still tell measured from imputed forcing.

The climatology uses only the forcing itself (never observations), per calendar month and, for
sub-daily data, per hour of day (radiation has a diurnal cycle); bins with too few values fall back to
the site's mean over all times, and a variable a site never reports stays missing (the standardised
input becomes the network mean, 0, with its indicator set).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from smmdn.model.features import PRECIP_WORDS

MIN_BIN_VALUES = 5  # fewer values in a (month[, hour]) bin: use the site's overall mean
INTERPOLATE_DAYS = 2.0  # gaps up to this long (non-intermittent variables) are interpolated linearly


def is_intermittent(name: str) -> bool:
    """Precipitation-like variables: mostly zero with bursts, never interpolated."""
    low = name.lower()
    return any(w in low for w in PRECIP_WORDS)


def climatology_fill(frame: pd.DataFrame, times: pd.DatetimeIndex, sub_daily: bool) -> pd.DataFrame:
    """Every gap of ``frame`` (index ``times``) from the column's mean in its (month[, hour]) bin."""
    keys = [times.month, times.hour] if sub_daily else [times.month]
    grouped = frame.groupby(keys)
    means = grouped.transform("mean")
    counts = grouped.transform("count")
    seasonal = means.where(counts >= MIN_BIN_VALUES)
    return frame.fillna(seasonal).fillna(frame.mean())


def fill_gaps(frame: pd.DataFrame, step: pd.Timedelta) -> pd.DataFrame:
    """One site's forcing on a regular grid (``DatetimeIndex``), gaps filled (see module docstring)."""
    if not frame.isna().to_numpy().any():
        return frame
    out = frame.copy()
    limit = max(int(pd.Timedelta(days=INTERPOLATE_DAYS) / step), 1)
    smooth = [c for c in out.columns if not is_intermittent(str(c))]
    if smooth:
        out[smooth] = _interpolate_short(out[smooth], limit)
    sub_daily = step < pd.Timedelta(days=1)
    return climatology_fill(out, pd.DatetimeIndex(out.index), sub_daily)


def _interpolate_short(frame: pd.DataFrame, limit: int) -> pd.DataFrame:
    """Linear interpolation inside gaps of at most ``limit`` steps (longer gaps are left alone)."""
    values = frame.to_numpy(np.float64, copy=True)
    filled = frame.interpolate(method="linear", limit_area="inside").to_numpy(np.float64)
    for j in range(values.shape[1]):
        miss = np.isnan(values[:, j])
        if not miss.any():
            continue
        run_id = np.cumsum(~miss)  # steps of one gap share the id of the value before it
        run_len = pd.Series(miss.astype(int)).groupby(run_id).transform("sum").to_numpy()
        short = miss & (run_len <= limit)
        values[short, j] = filled[short, j]
    return pd.DataFrame(values, index=frame.index, columns=frame.columns)


__all__ = ["climatology_fill", "fill_gaps", "is_intermittent"]
