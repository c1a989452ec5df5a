"""Post-hoc spread calibration fitted on a validation window before the training end.

A mixture trained by likelihood on the training period is over-confident out of sample (its residuals
there are in-sample). The fix is an exact affine map of each mixture around its mean,
``mu_k -> m + f (mu_k - m)``, ``sigma_k -> f sigma_k``, with ``f`` chosen to minimise the mean CRPS of
validation forecasts (a proper score, so it neither rewards over- nor under-dispersion).

Why series-balanced: out-of-sample errors differ a lot between series (a site whose regime the
training months did not cover is badly off, most are not). The pooled CRPS is set by the badly-off
ones and leaves the typical series far too wide; the score minimised is therefore the mean over
series of log(mean CRPS of the series), in which every series counts equally. Forecast mode fits one
factor per lead (the spread needed grows with the lead).

Optional (off by default; it did not help on the pre-test windows): a factor per location minimising
its own validation CRPS plus ``prior_steps`` pseudo-observations of the network-wide CRPS curve
(shrinkage: few observations -> the network-wide factor); unvalidated (ungauged) locations take the
network-wide factor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from smmdn.model.mixture import mixture_crps

SPREAD_GRID = np.exp(np.linspace(np.log(0.5), np.log(4.0), 43))
MIN_OBS = 20


@dataclass
class Calibration:
    """Spread factors: network-wide, per lead (forecast mode) and per location key."""

    overall: float = 1.0
    per_lead: list[float] = field(default_factory=list)
    per_location: dict[str, float] = field(default_factory=dict)


def crps_curves(
    lw: np.ndarray, mu: np.ndarray, sg: np.ndarray, y: np.ndarray, grid: np.ndarray = SPREAD_GRID
) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """CRPS of every observed entry under every factor of ``grid``: ``(N_obs, G)`` and the entries' index.

    ``lw/mu/sg`` are ``(..., K)``, ``y`` is ``(..., R)`` (replicates share a mixture) or ``(...)``."""
    if y.ndim == lw.ndim:  # replicate axis
        lw, mu, sg = (np.broadcast_to(a[..., None, :], (*y.shape, a.shape[-1])) for a in (lw, mu, sg))
    ok = ~np.isnan(y)
    idx = np.nonzero(ok)
    w = np.exp(lw[idx].astype(np.float64))
    m, s, yy = mu[idx].astype(np.float64), sg[idx].astype(np.float64), y[idx]
    centre = np.sum(w * m, -1, keepdims=True)
    curves = np.stack([mixture_crps(yy, w, centre + f * (m - centre), f * s) for f in grid], axis=-1)
    return curves, idx


def best_factor(curves: np.ndarray, series: np.ndarray | None = None, grid: np.ndarray = SPREAD_GRID) -> float:
    """Factor minimising the validation score (1.0 when there are too few entries to tell).

    With ``series`` (an id per entry) the score is the mean over series of the log of each series'
    mean CRPS: every series counts equally whatever its error scale, so a few badly-off series do not
    set the width of all the others (the figures that matter are per-series medians). Without it, the
    pooled mean CRPS."""
    if len(curves) < MIN_OBS:
        return 1.0
    if series is None:
        return float(grid[int(np.argmin(curves.mean(axis=0)))])
    ids, inverse = np.unique(series, return_inverse=True)
    sums = np.zeros((len(ids), curves.shape[1]))
    np.add.at(sums, inverse, curves)
    per_series = sums / np.bincount(inverse, minlength=len(ids))[:, None]
    score = np.log(np.maximum(per_series, 1e-12)).mean(axis=0)
    return float(grid[int(np.argmin(score))])


def per_group_factors(
    curves: np.ndarray, groups: np.ndarray, prior_steps: float, grid: np.ndarray = SPREAD_GRID
) -> dict[int, float]:
    """Shrunk factor per group id: argmin of ``(sum_group(f) + prior_steps * mean_all(f)) / (n + prior)``."""
    if len(curves) < MIN_OBS:
        return {}
    mean_all = curves.mean(axis=0)
    out: dict[int, float] = {}
    order = np.argsort(groups, kind="stable")
    g_sorted = groups[order]
    bounds = np.flatnonzero(np.diff(g_sorted)) + 1
    for part in np.split(order, bounds):
        total = curves[part].sum(axis=0)
        score = (total + prior_steps * mean_all) / (len(part) + prior_steps)
        out[int(groups[part[0]])] = float(grid[int(np.argmin(score))])
    return out


def fit_calibration(
    lw: np.ndarray, mu: np.ndarray, sg: np.ndarray, y: np.ndarray, row_keys: list[str], *, per_lead: bool,
    prior_steps: float | None, per_series: bool = True,
) -> Calibration:
    """Fit factors on validation predictions ``(n, T, K)`` vs ``y (n, T, R)``; ``row_keys[i]`` is the
    location key of row ``i``. ``per_series``: the series-balanced score of ``best_factor`` (else the
    pooled CRPS); ``prior_steps=None`` disables per-location factors."""
    curves, idx = crps_curves(lw, mu, sg, y)
    keys = sorted(set(row_keys))
    code = {k: i for i, k in enumerate(keys)}
    row_code = np.array([code[k] for k in row_keys], dtype=np.int64)
    entry_loc = row_code[idx[0]]
    series = entry_loc * y.shape[-1] + idx[-1] if (per_series and y.ndim == 3) else None
    cal = Calibration(overall=best_factor(curves, series))
    if per_lead:
        for h in range(y.shape[1]):
            sel = idx[1] == h
            cal.per_lead.append(best_factor(curves[sel], None if series is None else series[sel]))
    if prior_steps is not None and len(curves) >= MIN_OBS:
        factors = per_group_factors(curves, entry_loc, prior_steps)
        cal.per_location = {keys[g]: f for g, f in factors.items()}
    return cal


def location_factors(keys: list[str], per_location: dict[str, float], default: float) -> np.ndarray:
    """``(L,)`` factors for the given location keys (unknown -> ``default``)."""
    return np.array([per_location.get(k, default) for k in keys], dtype=np.float64)
