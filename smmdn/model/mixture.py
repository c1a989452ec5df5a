"""Gaussian-mixture math, vectorised, in numpy (verification, anomalies, forecast writing) and torch
(training).

Every numpy function takes mixture parameters as arrays shaped ``(..., K)`` — weights ``w`` (summing to
one over the last axis), means ``mu`` and standard deviations ``sigma`` — and values ``x`` / levels ``p``
broadcastable to the batch shape ``(...)``.

Why log space: a mixture density far in the tails underflows in probability space; the likelihood is
``logsumexp_k(log w_k + log N(y; mu_k, sigma_k))`` with ``log w = log_softmax(logits)`` applied once.

CRPS is the closed form of Grimit, Gneiting, Berrocal & Johnson (2006, Q. J. R. Meteorol. Soc. 132),
``CRPS = sum_i w_i A(x - mu_i, s_i^2) - 1/2 sum_ij w_i w_j A(mu_i - mu_j, s_i^2 + s_j^2)`` with
``A(m, v) = 2 sqrt(v) phi(m / sqrt(v)) + m (2 Phi(m / sqrt(v)) - 1)``.

Highest-density regions follow Hyndman (1996, Am. Stat. 50): ``HDR_a = {y : f(y) >= f_a}`` with
``f_a`` chosen so the region holds mass ``a``; for a multimodal mixture it is a union of intervals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import ndtr

if TYPE_CHECKING:  # torch is imported lazily so numpy users (verification, detection) stay light
    import pandas as pd
    import torch

LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
SQRT_2 = math.sqrt(2.0)
DEFAULT_SIGMA_FLOOR = 0.002  # m3/m3: about the resolution of a soil-moisture probe
DEFAULT_WEIGHT_FLOOR = 1e-4  # keeps every component trainable (no collapse to exactly zero weight)


# ----------------------------------------------------------------------------------------------------
# numpy
# ----------------------------------------------------------------------------------------------------
def _prep(w: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    w, mu, sigma = (np.asarray(a, dtype=np.float64) for a in (w, mu, sigma))
    w, mu, sigma = np.broadcast_arrays(w, mu, sigma)
    return w, mu, sigma


def mixture_logpdf(x: np.ndarray, w: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Log density, computed with logsumexp so it stays finite far in the tails."""
    w, mu, sigma = _prep(w, mu, sigma)
    x = np.asarray(x, dtype=np.float64)[..., None]
    z = (x - mu) / sigma
    with np.errstate(divide="ignore"):
        terms = np.log(w) - np.log(sigma) - LOG_SQRT_2PI - 0.5 * z * z
    top = np.max(terms, axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return (top + np.log(np.sum(np.exp(terms - top), axis=-1, keepdims=True)))[..., 0]


def mixture_pdf(x: np.ndarray, w: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    return np.exp(mixture_logpdf(x, w, mu, sigma))


def mixture_cdf(x: np.ndarray, w: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """P(Y <= x). Also the probability integral transform (PIT) of an observation ``x``."""
    w, mu, sigma = _prep(w, mu, sigma)
    x = np.asarray(x, dtype=np.float64)[..., None]
    return np.clip(np.sum(w * ndtr((x - mu) / sigma), axis=-1), 0.0, 1.0)


def mixture_pit(x: np.ndarray, w: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """PIT values of observations (NaN where ``x`` is NaN); uniform on [0, 1] for a calibrated model."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(np.isnan(x), np.nan, mixture_cdf(np.nan_to_num(x), w, mu, sigma))


def mixture_mean_sd(w: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (law of total variance: within- plus between-component)."""
    w, mu, sigma = _prep(w, mu, sigma)
    mean = np.sum(w * mu, axis=-1)
    var = np.sum(w * (sigma**2 + mu**2), axis=-1) - mean**2
    return mean, np.sqrt(np.maximum(var, 0.0))


def mixture_quantile(
    p: np.ndarray | float, w: np.ndarray, mu: np.ndarray, sigma: np.ndarray, tol: float = 1e-9
) -> np.ndarray:
    """Quantile at level ``p`` by vectorised bisection on the CDF, polished by Newton steps.

    The CDF is monotone, so bisection inside ``[min(mu - 40 sigma), max(mu + 40 sigma)]`` always
    converges; 60 halvings of a bracket narrower than 1e3 give < 1e-15 of width.
    """
    w, mu, sigma = _prep(w, mu, sigma)
    p = np.asarray(p, dtype=np.float64)
    shape = np.broadcast_shapes(p.shape, w.shape[:-1])
    p = np.broadcast_to(p, shape)
    w, mu, sigma = (np.broadcast_to(a, (*shape, a.shape[-1])) for a in (w, mu, sigma))
    lo = np.min(mu - 40.0 * sigma, axis=-1)
    hi = np.max(mu + 40.0 * sigma, axis=-1)
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        below = mixture_cdf(mid, w, mu, sigma) < p
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
        if np.all(hi - lo < tol):
            break
    q = 0.5 * (lo + hi)
    for _ in range(2):  # Newton polish, kept inside the bracket
        dens = mixture_pdf(q, w, mu, sigma)
        step = np.where(dens > 1e-12, (mixture_cdf(q, w, mu, sigma) - p) / np.maximum(dens, 1e-300), 0.0)
        q = np.clip(q - step, lo, hi)
    return np.where((p <= 0) | (p >= 1), np.where(p <= 0, -np.inf, np.inf), q)


def _a_term(m: np.ndarray, var: np.ndarray) -> np.ndarray:
    s = np.sqrt(var)
    z = m / s
    return 2.0 * s * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) + m * (2.0 * ndtr(z) - 1.0)


def mixture_crps(x: np.ndarray, w: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Closed-form CRPS of a Gaussian mixture (Grimit et al. 2006); same units as ``x``."""
    w, mu, sigma = _prep(w, mu, sigma)
    x = np.asarray(x, dtype=np.float64)[..., None]
    first = np.sum(w * _a_term(x - mu, sigma**2), axis=-1)
    dm = mu[..., :, None] - mu[..., None, :]
    dv = sigma[..., :, None] ** 2 + sigma[..., None, :] ** 2
    second = np.sum(w[..., :, None] * w[..., None, :] * _a_term(dm, dv), axis=(-2, -1))
    return first - 0.5 * second


def gaussian_crps(x: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """CRPS of a single Gaussian (baselines)."""
    x, mean, sd = (np.asarray(a, dtype=np.float64) for a in (x, mean, sd))
    z = (x - mean) / sd
    return sd * (z * (2 * ndtr(z) - 1) + 2 * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) - 1 / math.sqrt(math.pi))


def central_interval(
    level: float, w: np.ndarray, mu: np.ndarray, sigma: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed interval holding ``level`` of the mass."""
    tail = 0.5 * (1.0 - level)
    return mixture_quantile(tail, w, mu, sigma), mixture_quantile(1.0 - tail, w, mu, sigma)


def _hdr_grid(w: np.ndarray, mu: np.ndarray, sigma: np.ndarray, n_grid: int) -> tuple[np.ndarray, np.ndarray]:
    lo = np.min(mu - 6.0 * sigma, axis=-1)
    hi = np.max(mu + 6.0 * sigma, axis=-1)
    frac = np.linspace(0.0, 1.0, n_grid)
    grid = lo[..., None] + (hi - lo)[..., None] * frac
    dens = np.exp(mixture_logpdf(grid, w[..., None, :], mu[..., None, :], sigma[..., None, :]))
    return grid, dens


def hdr_threshold(
    level: float, w: np.ndarray, mu: np.ndarray, sigma: np.ndarray, n_grid: int = 2048
) -> np.ndarray:
    """Density level ``f_a`` bounding the HDR of mass ``level``.

    Bisection on the threshold ``t``: the mass of ``{f >= t}`` is computed exactly from CDF
    differences at the interval ends (crossings located on a grid and interpolated linearly), so the
    region holds ``level`` up to the interpolation error of the ends (~1e-6 with the default grid).
    """
    w, mu, sigma = _prep(w, mu, sigma)
    grid, dens = _hdr_grid(w, mu, sigma, n_grid)
    lo_t = np.zeros(dens.shape[:-1])
    hi_t = np.max(dens, axis=-1)
    for _ in range(50):
        mid = 0.5 * (lo_t + hi_t)
        too_much = _region_mass(mid, grid, dens, w, mu, sigma) > level
        lo_t = np.where(too_much, mid, lo_t)
        hi_t = np.where(too_much, hi_t, mid)
    return 0.5 * (lo_t + hi_t)


def _region_mass(
    t: np.ndarray, grid: np.ndarray, dens: np.ndarray, w: np.ndarray, mu: np.ndarray, sigma: np.ndarray
) -> np.ndarray:
    """Mixture mass of ``{f >= t}`` (CDF differences between the interval ends)."""
    starts, stops, valid = _interval_ends(t, grid, dens)
    wb, mb, sb = (a[..., None, :] for a in (w, mu, sigma))
    inside = mixture_cdf(stops, wb, mb, sb) - mixture_cdf(starts, wb, mb, sb)
    return np.sum(np.where(valid, inside, 0.0), axis=-1)


def _interval_ends(t: np.ndarray, grid: np.ndarray, dens: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Padded arrays ``(starts, stops, valid)`` of the intervals where ``dens >= t`` along the grid."""
    above = dens >= t[..., None]
    n = grid.shape[-1]
    false = np.zeros_like(above[..., :1])
    start = above & ~np.concatenate([false, above[..., :-1]], axis=-1)
    stop = above & ~np.concatenate([above[..., 1:], false], axis=-1)
    n_max = max(int(start.sum(axis=-1).max(initial=0)), 1)
    shape = (*grid.shape[:-1], n_max)
    starts, stops, valid = np.zeros(shape), np.zeros(shape), np.zeros(shape, dtype=bool)
    for flags, out, outward in ((start, starts, -1), (stop, stops, 1)):
        rank = np.cumsum(flags, axis=-1) - 1
        where = np.nonzero(flags)
        batch, i_in = where[:-1], where[-1]
        i_out = np.clip(i_in + outward, 0, n - 1)
        g0, g1 = grid[(*batch, i_out)], grid[(*batch, i_in)]
        d0, d1 = dens[(*batch, i_out)], dens[(*batch, i_in)]
        denom = np.where(d1 - d0 == 0, 1.0, d1 - d0)
        frac = np.where(i_out == i_in, 1.0, np.clip((t[batch] - d0) / denom, 0.0, 1.0))
        out[(*batch, rank[where])] = g0 + frac * (g1 - g0)
        valid[(*batch, rank[where])] = True
    return starts, stops, valid


def in_hdr(
    x: np.ndarray, w: np.ndarray, mu: np.ndarray, sigma: np.ndarray, level: float, n_grid: int = 2048
) -> np.ndarray:
    """True where ``x`` lies in the highest-density region of mass ``level`` (``f(x) >= f_a``)."""
    w, mu, sigma = _prep(w, mu, sigma)
    x = np.asarray(x, dtype=np.float64)
    shape = np.broadcast_shapes(x.shape, w.shape[:-1])
    w, mu, sigma = (np.broadcast_to(a, (*shape, a.shape[-1])) for a in (w, mu, sigma))
    t = hdr_threshold(level, w, mu, sigma, n_grid)
    return mixture_pdf(np.broadcast_to(x, shape), w, mu, sigma) >= t


def hdr_intervals(
    w: np.ndarray, mu: np.ndarray, sigma: np.ndarray, level: float, n_grid: int = 2048
) -> list[list[tuple[float, float]]] | list[tuple[float, float]]:
    """The HDR of mass ``level`` as a list of disjoint ``(lo, hi)`` intervals.

    For a single mixture (``w`` of shape ``(K,)``) returns one list of intervals; for a batch
    ``(N, K)`` returns a list of N such lists (multimodal mixtures give several intervals).
    """
    w, mu, sigma = _prep(w, mu, sigma)
    single = w.ndim == 1
    w2, mu2, s2 = (a.reshape(-1, a.shape[-1]) for a in (w, mu, sigma))
    t = hdr_threshold(level, w2, mu2, s2, n_grid)
    grid, dens = _hdr_grid(w2, mu2, s2, n_grid)
    starts, stops, valid = _interval_ends(t, grid, dens)
    out = [
        [(float(a), float(b)) for a, b, v in zip(starts[i], stops[i], valid[i], strict=True) if v]
        for i in range(w2.shape[0])
    ]
    return out[0] if single else out


def sample(w: np.ndarray, mu: np.ndarray, sigma: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` draws per mixture, shaped ``(n, ...)``."""
    w, mu, sigma = _prep(w, mu, sigma)
    cum = np.cumsum(w, axis=-1)
    u = rng.random((n, *w.shape[:-1], 1))
    k = np.minimum(np.sum(u > cum, axis=-1), w.shape[-1] - 1)
    m = np.take_along_axis(np.broadcast_to(mu, (n, *mu.shape)), k[..., None], -1)[..., 0]
    s = np.take_along_axis(np.broadcast_to(sigma, (n, *sigma.shape)), k[..., None], -1)[..., 0]
    return m + s * rng.standard_normal(m.shape)


def summarise(w: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> dict[str, np.ndarray]:
    """``mean, sd, q05, q25, q50, q75, q95`` of each mixture (the derived forecast columns)."""
    from smmdn.schema import QUANTILE_LEVELS

    mean, sd = mixture_mean_sd(w, mu, sigma)
    out: dict[str, np.ndarray] = {"mean": mean, "sd": sd}
    for name, p in QUANTILE_LEVELS.items():
        out[name] = mixture_quantile(p, w, mu, sigma)
    return out


def mixture_arrays(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, K) weights, means, sigmas from canonical ``weight_k/mean_k/sigma_k`` columns (absent k → weight 0)."""
    k = sum(1 for c in frame.columns if c.startswith("weight_") and c[7:].isdigit())
    w = frame[[f"weight_{i}" for i in range(k)]].to_numpy(dtype=float)
    mu = frame[[f"mean_{i}" for i in range(k)]].to_numpy(dtype=float)
    sigma = frame[[f"sigma_{i}" for i in range(k)]].to_numpy(dtype=float)
    missing = ~np.isfinite(w) | ~np.isfinite(mu) | ~np.isfinite(sigma) | (sigma <= 0)
    w = np.where(missing, 0.0, w)
    w = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
    return w, np.where(missing, 0.0, mu), np.where(missing, 1.0, sigma)


def affine(
    w: np.ndarray, mu: np.ndarray, sigma: np.ndarray, loc: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mixture of ``loc + scale * Y`` (exact for ``scale > 0``): used to leave standardised units."""
    loc = np.asarray(loc)[..., None]
    scale = np.asarray(scale)[..., None]
    return w, loc + scale * mu, scale * sigma


def floor_weights(w: np.ndarray, floor: float = DEFAULT_WEIGHT_FLOOR) -> np.ndarray:
    """Mix weights with a uniform floor so none is exactly zero (renormalised)."""
    k = w.shape[-1]
    return w * (1.0 - k * floor) + floor


# ----------------------------------------------------------------------------------------------------
# torch
# ----------------------------------------------------------------------------------------------------
def torch_log_prob(y: torch.Tensor, log_w: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``log p(y)`` with ``y`` shaped like the batch and parameters ``(..., K)``; finite in the tails."""
    import torch

    z = (y.unsqueeze(-1) - mu) / sigma
    comp = -0.5 * z * z - torch.log(sigma) - LOG_SQRT_2PI
    return torch.logsumexp(log_w + comp, dim=-1)


def torch_nll(
    y: torch.Tensor, mask: torch.Tensor, log_w: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor,
    groups: Sequence[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked negative log-likelihood: (sum over observed entries, number of observed entries).

    ``y``/``mask`` may carry a trailing replicate axis ``R`` (shape ``(..., R)``) that shares one
    mixture ``(..., K)``: each replicate's observation adds its own term, so the mixture learns the
    spread between replicate sensors. Unobserved entries (mask False) contribute nothing and their
    NaN values never reach the graph.

    ``groups`` (masks shaped like ``mask``, each inside it): sums and counts per group, shaped ``(G,)``,
    from one likelihood evaluation (training weighs the visible-state and free-running steps apart).
    """
    import torch

    y0 = torch.where(mask, y, torch.zeros_like(y))
    lp = torch_log_prob(y0, log_w.unsqueeze(-2), mu.unsqueeze(-2), sigma.unsqueeze(-2))
    nll = torch.where(mask, -lp, torch.zeros_like(lp))
    if groups is None:
        return nll.sum(), mask.sum()
    zero = torch.zeros((), dtype=nll.dtype, device=nll.device)
    return (torch.stack([torch.where(g, nll, zero).sum() for g in groups]),
            torch.stack([g.sum() for g in groups]))


def torch_mean_var(log_w: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:

    w = log_w.exp()
    mean = (w * mu).sum(-1)
    var = (w * (sigma**2 + mu**2)).sum(-1) - mean**2
    return mean, var.clamp_min(0.0)


def torch_cdf(x: torch.Tensor, log_w: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    import torch

    z = (x.unsqueeze(-1) - mu) / (sigma * SQRT_2)
    return (log_w.exp() * 0.5 * (1.0 + torch.erf(z))).sum(-1)


def torch_distribution(
    log_w: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor
) -> torch.distributions.MixtureSameFamily:
    """The mixture as a ``torch.distributions`` object (sampling, ``log_prob``)."""
    import torch

    cat = torch.distributions.Categorical(logits=log_w)
    return torch.distributions.MixtureSameFamily(cat, torch.distributions.Normal(mu, sigma))


def torch_sample(
    log_w: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, n: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``n`` draws per mixture, shaped ``(n, ...)`` (reparameterised within the chosen component)."""
    import torch

    probs = log_w.exp().reshape(-1, log_w.shape[-1])
    k = torch.multinomial(probs, n, replacement=True, generator=generator).T.reshape(n, *log_w.shape[:-1])
    m = torch.gather(mu.expand(n, *mu.shape), -1, k.unsqueeze(-1)).squeeze(-1)
    s = torch.gather(sigma.expand(n, *sigma.shape), -1, k.unsqueeze(-1)).squeeze(-1)
    eps = torch.randn(m.shape, generator=generator, dtype=m.dtype, device=m.device)
    return m + s * eps


def _torch_a(m: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    import torch

    s = var.sqrt()
    z = m / s
    return 2.0 * s * torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) + m * torch.erf(z / SQRT_2)


def torch_crps(y: torch.Tensor, log_w: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Closed-form mixture CRPS (Grimit et al. 2006), differentiable."""

    w = log_w.exp()
    first = (w * _torch_a(y.unsqueeze(-1) - mu, sigma**2)).sum(-1)
    dm = mu.unsqueeze(-1) - mu.unsqueeze(-2)
    dv = sigma.unsqueeze(-1) ** 2 + sigma.unsqueeze(-2) ** 2
    second = (w.unsqueeze(-1) * w.unsqueeze(-2) * _torch_a(dm, dv)).sum((-2, -1))
    return first - 0.5 * second


__all__ = [
    "DEFAULT_SIGMA_FLOOR",
    "DEFAULT_WEIGHT_FLOOR",
    "affine",
    "central_interval",
    "floor_weights",
    "gaussian_crps",
    "hdr_intervals",
    "hdr_threshold",
    "in_hdr",
    "mixture_cdf",
    "mixture_crps",
    "mixture_logpdf",
    "mixture_mean_sd",
    "mixture_pdf",
    "mixture_pit",
    "mixture_quantile",
    "sample",
    "summarise",
    "torch_cdf",
    "torch_crps",
    "torch_distribution",
    "torch_log_prob",
    "torch_mean_var",
    "torch_nll",
    "torch_sample",
]
