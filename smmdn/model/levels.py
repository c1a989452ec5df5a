"""Per-series corrections of a simulation's mean, fitted on the validation window (issue 20, the KGE tail).

Why: a free-running simulation has no observation to anchor each series' level, and the worst per-series
KGEs are series whose level is off (bias) or that barely move while the network gives them the wiggles of an
ordinary series of their depth (variability ratio alpha far above 1). Both can be measured on the validation
window, out of sample, before the training end:

- ``offset``: the mean error ``mean(obs - predicted mean)`` of the series there, shrunk towards 0 with
  ``prior_steps`` pseudo-observations (``n / (n + prior)``: a few validation days barely move it);
- ``anomaly scale``: the series' observed sd over its predicted sd there, capped at 1 (never amplified) and
  floored at ``cap_floor``; it scales the predicted departure from the series' training-period mean.

- ``bounds``: the series' training-period range widened by ``range_margin`` of its training sd on each side
  (``[min - k sd, max + k sd]``); the corrected mean is clipped into it. Why it was tried: a series' own
  range is known at every prediction and needs no validation window. Why it rarely binds (USCRN 2020): the
  series that are flat in the test period were not flat in training (54933/50 cm: training range 0.148-0.303,
  sd 0.04; its autumn simulation climbs to 0.20, inside it).

Applied as one shift of every component mean per step (the mixture keeps its shape and its spread):
``m' = c + a (m - c) + b`` with ``c`` the location's training mean. Locations without enough validation
observations (``MIN_VALID``) are left alone. Simulation mode only: in forecast mode the observed state
anchors the level.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

MIN_VALID = 20  # validation observations a location needs before it is corrected


@dataclass
class SeriesCorrection:
    """Per-location mean corrections (location key -> value); empty dicts change nothing. ``stats`` keeps
    what they were fitted from (``validation_stats``), so other knob values need no retraining."""

    offset: dict[str, float] = field(default_factory=dict)  # m3/m3 added to the mean
    anomaly_scale: dict[str, float] = field(default_factory=dict)  # factor on the departure from the level
    stats: dict[str, list[float]] = field(default_factory=dict)  # key -> n, mean error, sd obs, sd predicted
    bounds: dict[str, list[float]] = field(default_factory=dict)  # key -> [lo, hi] for the mean (m3/m3)

    def to_dict(self) -> dict:
        return {"offset": dict(self.offset), "anomaly_scale": dict(self.anomaly_scale), "stats": dict(self.stats),
                "bounds": dict(self.bounds)}

    @classmethod
    def from_dict(cls, data: dict | None) -> SeriesCorrection:
        data = data or {}
        return cls({str(k): float(v) for k, v in data.get("offset", {}).items()},
                   {str(k): float(v) for k, v in data.get("anomaly_scale", {}).items()},
                   {str(k): [float(x) for x in v] for k, v in data.get("stats", {}).items()},
                   {str(k): [float(x) for x in v] for k, v in data.get("bounds", {}).items()})

    def __bool__(self) -> bool:
        return bool(self.offset or self.anomaly_scale or self.bounds)


def validation_stats(mean: np.ndarray, y: np.ndarray, keys: list[str]) -> dict[str, list[float]]:
    """Per location with at least ``MIN_VALID`` validation observations: ``[n, mean(obs - mean), sd(obs),
    sd(mean)]``; ``mean`` (n, T) physical predicted means, ``y`` (n, T, R) observations (replicates averaged),
    ``keys[i]`` the location key of row ``i``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN steps stay NaN
        obs = np.nanmean(y, axis=-1) if y.ndim == 3 else y
    out: dict[str, list[float]] = {}
    for i, key in enumerate(keys):
        ok = np.isfinite(obs[i]) & np.isfinite(mean[i])
        if ok.sum() >= MIN_VALID:
            o, m = obs[i][ok], mean[i][ok]
            out[key] = [float(ok.sum()), float(np.mean(o - m)), float(np.std(o)), float(np.std(m))]
    return out


def correction_from_stats(
    stats: dict[str, list[float]], *, prior_steps: float | None = None, cap_floor: float | None = None,
    location_stats: dict[str, list[float]] | None = None, range_margin: float | None = None,
) -> SeriesCorrection:
    """Offsets (``prior_steps``; None: none) and anomaly scales (``cap_floor``; None: none) from the validation
    stats; bounds (``range_margin``; None: none) from ``location_stats`` (key -> training mean, sd, min, max,
    as ``Scalers.location_stats``)."""
    out = SeriesCorrection(stats=dict(stats))
    if range_margin is not None:
        for key, (_, sd, lo, hi) in (location_stats or {}).items():
            out.bounds[key] = [lo - range_margin * sd, hi + range_margin * sd]
    for key, (n, err, sd_obs, sd_pred) in stats.items():
        if prior_steps is not None:
            out.offset[key] = err * n / (n + prior_steps)
        if cap_floor is not None:
            ratio = sd_obs / sd_pred if sd_pred > 0 else 1.0
            out.anomaly_scale[key] = float(np.clip(ratio, cap_floor, 1.0))
    return out


def apply_correction(
    w: np.ndarray, mu: np.ndarray, keys: list[str], level: np.ndarray, correction: SeriesCorrection
) -> np.ndarray:
    """Corrected component means for physical mixtures ``w, mu`` (L, T, K) of locations ``keys``; ``level``
    (L,) is each location's training mean (the centre of the anomaly scale)."""
    if not correction:
        return mu
    b = np.array([correction.offset.get(k, 0.0) for k in keys], dtype=np.float64)[:, None]
    a = np.array([correction.anomaly_scale.get(k, 1.0) for k in keys], dtype=np.float64)[:, None]
    lo = np.array([correction.bounds.get(k, [-np.inf, np.inf])[0] for k in keys], dtype=np.float64)[:, None]
    hi = np.array([correction.bounds.get(k, [-np.inf, np.inf])[1] for k in keys], dtype=np.float64)[:, None]
    m = np.sum(w * mu, axis=-1)
    c = np.asarray(level, dtype=np.float64)[:, None]
    shift = np.clip(c + a * (m - c) + b, lo, hi) - m
    return mu + shift[..., None]


__all__ = ["MIN_VALID", "SeriesCorrection", "apply_correction", "correction_from_stats",
           "validation_stats"]
