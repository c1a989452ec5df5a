"""Derived columns that turn each check into a plain column Great Expectations can test.

Why derived columns: GX is good at "values of column X lie in [a, b]" and at reporting it; per-series
logic (gaps, spikes, stuck sensors, per-site limits) is clearer and faster in pandas. Each function
returns one column aligned with the input; the suite then expects it within bounds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from smmdn.quality.rules import ObservationRules
from smmdn.schema import SERIES_KEY

KEY = [*SERIES_KEY, "time"]


def vwc_limit_ratio(frame: pd.DataFrame, rules: ObservationRules) -> pd.Series:
    """vwc / the site's upper limit (negative or > 1 is impossible); NaN where vwc is unusable."""
    limit = frame["site"].map(rules.vwc_max_by_site).astype(np.float64).fillna(rules.vwc_max)
    ratio = (frame["vwc"] - rules.vwc_min) / (limit - rules.vwc_min)
    return ratio.astype(np.float64)


def series_is_daily(frame: pd.DataFrame) -> pd.Series:
    """True for rows of series whose every time is a midnight label (daily data)."""
    midnight = frame["time"] == frame["time"].dt.normalize()
    return midnight.groupby([frame[k] for k in SERIES_KEY], dropna=False).transform("all").astype(bool)


def seconds_in_future(frame: pd.DataFrame, now: pd.Timestamp, tolerance_s: float,
                      daily: pd.Series | None = None) -> pd.Series:
    """Seconds a time lies beyond what can already have been measured (0 when fine).

    Daily labels are local dates: a label may be one day ahead of the UTC date (sites east of UTC).
    """
    if daily is None:
        daily = pd.Series(False, index=frame.index)
    instant_cut = now + pd.Timedelta(seconds=tolerance_s)
    date_cut = now.normalize() + pd.Timedelta(days=1)
    cutoff = pd.Series(np.where(daily, date_cut.value, instant_cut.value), index=frame.index)
    ahead = (frame["time"].astype("int64") - cutoff) / 1e9
    return ahead.clip(lower=0).where(frame["time"].notna()).astype(np.float64)


def input_order_step(frame: pd.DataFrame) -> pd.Series:
    """Seconds since the previous row of the same series *in input order* (negative: out of order)."""
    t = frame["time"].astype("int64").where(frame["time"].notna())
    prev = t.groupby([frame[k] for k in SERIES_KEY], dropna=False).shift(1)
    return ((t - prev) / 1e9).astype(np.float64)


def series_dynamics(frame: pd.DataFrame, rules: ObservationRules) -> pd.DataFrame:
    """Per-series gap, spike and flatline columns for rows already sorted by series and time.

    Returns ``gap_steps`` (gap before the reading in units of the series' median step),
    ``spike_score`` (size of a jump that reverses at the next reading, m3/m3, 0 if none) and
    ``flat_run_readings`` (length of the run of identical readings the row belongs to, counted only
    when the run also spans ``flatline_min_hours``; else 0).
    """
    groups = [frame[k] for k in SERIES_KEY]
    t = frame["time"].astype("int64") / 1e9
    x = frame["vwc"].astype(np.float64)
    series_id = pd.Series(frame.groupby(list(SERIES_KEY), sort=False, dropna=False).ngroup().to_numpy(),
                          index=frame.index)
    first = series_id != series_id.shift(1)
    last = first.shift(-1, fill_value=True)

    step = t.diff().where(~first)
    cadence = step.groupby(groups, dropna=False).transform("median")
    gap_steps = (step / cadence).where(cadence > 0)

    d1 = x.diff().where(~first)
    d2 = (-x.diff(-1)).where(~last)
    opposite = (d1 * d2) < 0
    small, big = np.minimum(d1.abs(), d2.abs()), np.maximum(d1.abs(), d2.abs())
    rebound = (small / big.replace(0, np.nan)) >= rules.spike_rebound
    spike = small.where(opposite & rebound, 0.0).where(d1.notna() & d2.notna(), 0.0)

    changed = first | (x.diff().abs() > 1e-12) | x.isna()
    run_id = changed.cumsum()
    run_len = run_id.map(run_id.value_counts())
    run_span_h = (t.groupby(run_id).transform("max") - t.groupby(run_id).transform("min")) / 3600.0
    flat = run_len.where(run_span_h >= rules.flatline_min_hours, 0).astype(np.float64)

    return pd.DataFrame(
        {"gap_steps": gap_steps.astype(np.float64), "spike_score": spike.astype(np.float64),
         "flat_run_readings": flat},
        index=frame.index,
    )


def duplicate_outcome(frame: pd.DataFrame, usable: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(extra copies of identical rows, all rows of conflicting duplicates) among usable rows."""
    sub = frame[usable]
    dup_any = sub.duplicated(KEY, keep=False)
    extra = pd.Series(False, index=frame.index)
    conflict = pd.Series(False, index=frame.index)
    if dup_any.any():
        d = sub[dup_any]
        nvals = d.groupby(KEY, dropna=False)["vwc"].transform("nunique")
        conflict_idx = d.index[nvals > 1]
        conflict[conflict_idx] = True
        same = d[nvals <= 1]
        extra[same.index[same.duplicated(KEY, keep="first")]] = True
    return extra, conflict
