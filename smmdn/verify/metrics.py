"""Verification metrics for one series (observations vs predicted mixtures) and baselines.

Deterministic scores use the predictive mean; probabilistic scores use the whole mixture.
Baselines (both Gaussian, fitted on the training period only):
- climatology: per-series mean and sd of the training observations;
- persistence: the last observation at the issue time, with a per-lead sd estimated from the
  training period's lead-``h`` differences ``y[t+h] - y[t]`` of the same series.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import spearmanr

from smmdn.model.mixture import central_interval, gaussian_crps, mixture_crps, mixture_mean_sd, mixture_pit

METRIC_KEYS = ("kge", "kge_2012", "spearman", "rmse", "bias", "crps", "crps_skill", "coverage_50", "coverage_90",
               "width_90")


def _components(sim: np.ndarray, obs: np.ndarray) -> tuple[float, float, float, float, float]:
    r = float(np.corrcoef(sim, obs)[0, 1]) if np.std(sim) > 0 and np.std(obs) > 0 else float("nan")
    return r, float(np.mean(sim)), float(np.mean(obs)), float(np.std(sim)), float(np.std(obs))


def kge(sim: np.ndarray, obs: np.ndarray) -> float:
    """KGE 2009 (Gupta et al. 2009): ``1 - sqrt((r-1)^2 + (alpha-1)^2 + (beta-1)^2)``, alpha = sd ratio."""
    r, ms, mo, ss, so = _components(sim, obs)
    if not np.isfinite(r) or mo == 0 or so == 0:
        return float("nan")
    return 1.0 - math.sqrt((r - 1) ** 2 + (ss / so - 1) ** 2 + (ms / mo - 1) ** 2)


def kge_2012(sim: np.ndarray, obs: np.ndarray) -> float:
    """KGE 2012 (Kling et al. 2012): like 2009 but gamma = ratio of coefficients of variation."""
    r, ms, mo, ss, so = _components(sim, obs)
    if not np.isfinite(r) or mo == 0 or so == 0 or ms == 0:
        return float("nan")
    gamma = (ss / ms) / (so / mo)
    return 1.0 - math.sqrt((r - 1) ** 2 + (gamma - 1) ** 2 + (ms / mo - 1) ** 2)


def spearman(sim: np.ndarray, obs: np.ndarray) -> float:
    if len(sim) < 3 or np.std(sim) == 0 or np.std(obs) == 0:
        return float("nan")
    return float(spearmanr(sim, obs).statistic)


def rmse(sim: np.ndarray, obs: np.ndarray) -> float:
    return float(np.sqrt(np.mean((sim - obs) ** 2)))


def bias(sim: np.ndarray, obs: np.ndarray) -> float:
    return float(np.mean(sim - obs))


def pit_histogram(pit: np.ndarray, bins: int = 10) -> list[float]:
    """Relative frequencies of PIT values in ``bins`` equal bins (flat at 1/bins when calibrated)."""
    pit = pit[np.isfinite(pit)]
    if len(pit) == 0:
        return [float("nan")] * bins
    counts, _ = np.histogram(pit, bins=bins, range=(0.0, 1.0))
    return (counts / len(pit)).tolist()


def series_scores(
    obs: np.ndarray,
    w: np.ndarray,
    mu: np.ndarray,
    sigma: np.ndarray,
    crps_reference: float | None = None,
) -> dict[str, float]:
    """All scores of one series; ``obs`` (N,), mixtures (N, K). NaN observations are dropped."""
    ok = np.isfinite(obs)
    obs, w, mu, sigma = obs[ok], w[ok], mu[ok], sigma[ok]
    if len(obs) == 0:
        return {k: float("nan") for k in METRIC_KEYS} | {"n": 0}
    mean, _ = mixture_mean_sd(w, mu, sigma)
    lo90, hi90 = central_interval(0.9, w, mu, sigma)
    lo50, hi50 = central_interval(0.5, w, mu, sigma)
    crps = float(np.mean(mixture_crps(obs, w, mu, sigma)))
    out = {
        "kge": kge(mean, obs),
        "kge_2012": kge_2012(mean, obs),
        "spearman": spearman(mean, obs),
        "rmse": rmse(mean, obs),
        "bias": bias(mean, obs),
        "crps": crps,
        "crps_skill": (1.0 - crps / crps_reference) if crps_reference else float("nan"),
        "coverage_50": float(np.mean((obs >= lo50) & (obs <= hi50))),
        "coverage_90": float(np.mean((obs >= lo90) & (obs <= hi90))),
        "width_90": float(np.mean(hi90 - lo90)),
        "n": len(obs),
        **kge_parts(mean, obs),
    }
    out["pit_histogram"] = pit_histogram(mixture_pit(obs, w, mu, sigma))  # type: ignore[assignment]
    return out


def gaussian_scores(obs: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> dict[str, float]:
    """Scores of a Gaussian baseline (same keys as ``series_scores`` where they apply)."""
    ok = np.isfinite(obs) & np.isfinite(mean) & np.isfinite(sd)
    obs, mean, sd = obs[ok], np.broadcast_to(mean, ok.shape)[ok], np.broadcast_to(sd, ok.shape)[ok]
    if len(obs) == 0:
        return {"crps": float("nan"), "rmse": float("nan"), "coverage_90": float("nan"), "n": 0}
    z90 = 1.6448536269514722
    return {
        "crps": float(np.mean(gaussian_crps(obs, mean, sd))),
        "rmse": rmse(mean, obs),
        "kge": kge(mean, obs) if np.std(mean) > 0 else float("nan"),
        "coverage_90": float(np.mean(np.abs(obs - mean) <= z90 * sd)),
        "width_90": float(np.mean(2 * z90 * sd)),
        "n": len(obs),
    }


def climatology(train_values: np.ndarray, sd_floor: float = 0.002) -> tuple[float, float]:
    """Per-series climatology Gaussian (mean, sd) from training-period values."""
    v = train_values[np.isfinite(train_values)]
    if len(v) < 2:
        return float("nan"), float("nan")
    return float(v.mean()), float(max(v.std(ddof=1), sd_floor))


def persistence_sd(train_values: np.ndarray, max_lead: int, sd_floor: float = 0.002) -> np.ndarray:
    """sd of ``y[t+h] - y[t]`` on the training period for h = 1..max_lead (NaN-aware, regular steps).

    Leads with fewer than 5 pairs reuse the last estimable lead's sd (at least ``sd_floor``).
    """
    out = np.full(max_lead, np.nan)
    v = np.asarray(train_values, dtype=float)
    for h in range(1, max_lead + 1):
        if h >= len(v):
            break
        d = v[h:] - v[:-h]
        d = d[np.isfinite(d)]
        if len(d) >= 5:
            out[h - 1] = max(float(np.sqrt(np.mean(d**2))), sd_floor)
    last = sd_floor
    for i in range(max_lead):
        if np.isfinite(out[i]):
            last = out[i]
        else:
            out[i] = last
    return out


def summarise_scores(rows: list[dict], keys: tuple[str, ...] = METRIC_KEYS) -> dict[str, dict[str, float]]:
    """``{"median": {...}, "mean": {...}}`` over series (NaN-aware)."""
    out: dict[str, dict[str, float]] = {"median": {}, "mean": {}}
    for k in keys:
        vals = np.array([r.get(k, np.nan) for r in rows], dtype=float)
        vals = vals[np.isfinite(vals)]
        out["median"][k] = float(np.median(vals)) if len(vals) else float("nan")
        out["mean"][k] = float(np.mean(vals)) if len(vals) else float("nan")
    return out


def kge_parts(sim: np.ndarray, obs: np.ndarray) -> dict[str, float]:
    """KGE 2009's three parts (correlation r, variability ratio alpha, bias ratio beta) and the observed sd:
    what a low KGE is made of (``kge_tail``)."""
    r, ms, mo, ss, so = _components(sim, obs)
    return {"kge_r": r, "kge_alpha": ss / so if so > 0 else float("nan"),
            "kge_beta": ms / mo if mo != 0 else float("nan"), "obs_sd": so}


SHORT_HISTORY = 90  # training observations: fewer is a short history
LOW_VARIANCE = 0.01  # m3/m3: a test-period sd below this is a near-flat series
DEEP_CM = 50.0
GAPPY = 0.8  # fewer test observations than this share of the best-observed series: gaps


def _reasons(row: dict, most_obs: int) -> list[str]:
    """Why one series' KGE is low: its largest KGE term first, then what is unusual about the series."""
    r, a, b = (row.get(k, float("nan")) for k in ("kge_r", "kge_alpha", "kge_beta"))
    terms = {f"timing (r {r:.2f})": (r - 1) ** 2, f"variability (alpha {a:.2f})": (a - 1) ** 2,
             f"bias (beta {b:.2f})": (b - 1) ** 2}
    terms = {k: v for k, v in terms.items() if np.isfinite(v)}
    out = [max(terms, key=terms.__getitem__)] if terms else ["undefined KGE (flat simulation or observations)"]
    if row.get("n_train", SHORT_HISTORY) < SHORT_HISTORY:
        out.append(f"short history ({row.get('n_train')} training days)")
    if row.get("obs_sd", 1.0) < LOW_VARIANCE:
        out.append(f"little variance (test sd {row.get('obs_sd'):.4f})")
    if float(row.get("depth_cm", 0)) >= DEEP_CM:
        out.append(f"deep sensor ({float(row['depth_cm']):g} cm)")
    if row.get("n", most_obs) < GAPPY * most_obs:
        out.append(f"gaps ({row.get('n')} of {most_obs} scored test values)")
    return out


def _flags(row: dict, most_obs: int) -> dict[str, bool]:
    terms = {k: (row.get(f"kge_{k}", np.nan) - 1) ** 2 for k in ("r", "alpha", "beta")}
    finite = {k: v for k, v in terms.items() if np.isfinite(v)}
    main = max(finite, key=finite.__getitem__) if finite else None
    return {"short_history": row.get("n_train", SHORT_HISTORY) < SHORT_HISTORY,
            "little_variance": row.get("obs_sd", 1.0) < LOW_VARIANCE,
            "deep": float(row.get("depth_cm", 0)) >= DEEP_CM, "gaps": row.get("n", most_obs) < GAPPY * most_obs,
            "bias_dominant": main == "beta", "variability_dominant": main == "alpha", "timing_dominant": main == "r"}


def kge_tail(per_series: list[dict], worst: int = 10) -> dict:
    """The per-series KGE distribution's tail: 10th percentile, mean, the ``worst`` series with reasons, and
    how often each trait occurs in the tail (KGE below the 10th percentile) against all series. Series with
    an undefined KGE count as the worst (they are in the scored set; leaving them out would flatter the mean)."""
    rows = [r for r in per_series]
    if not rows:
        return {}
    kges = np.array([r.get("kge", np.nan) for r in rows], dtype=float)
    finite = kges[np.isfinite(kges)]
    most_obs = max(int(r.get("n", 0)) for r in rows)
    order = np.argsort(np.where(np.isfinite(kges), kges, -np.inf), kind="stable")
    p10 = float(np.percentile(finite, 10)) if len(finite) else float("nan")
    in_tail = [rows[i] for i in range(len(rows)) if not np.isfinite(kges[i]) or kges[i] < p10]
    traits = {}
    for name in _flags(rows[0], most_obs):
        share_all = float(np.mean([_flags(r, most_obs)[name] for r in rows]))
        share_tail = float(np.mean([_flags(r, most_obs)[name] for r in in_tail])) if in_tail else float("nan")
        traits[name] = {"share_of_tail": share_tail, "share_of_all": share_all}
    return {
        "n_series": len(rows), "n_undefined": int(np.sum(~np.isfinite(kges))),
        "p10": p10, "p25": float(np.percentile(finite, 25)) if len(finite) else float("nan"),
        "median": float(np.median(finite)) if len(finite) else float("nan"),
        "mean": float(np.mean(finite)) if len(finite) else float("nan"),
        "share_below_0": float(np.mean(finite < 0)) if len(finite) else float("nan"),
        "worst": [{"site": rows[i]["site"], "depth_cm": rows[i]["depth_cm"], "sensor": rows[i]["sensor"],
                   "kge": rows[i].get("kge"), "reasons": _reasons(rows[i], most_obs)} for i in order[:worst]],
        "traits": traits,
    }


PERSISTENCE_SKILL_TARGET = 0.25


def skill_vs_persistence(per_lead: dict[str, dict]) -> dict:
    """CRPS skill vs persistence per lead, two ways: the median over series of each series' skill, and the
    skill of the mean CRPS over series (``1 - mean CRPS / mean persistence CRPS``); with the target."""
    out: dict = {"target": PERSISTENCE_SKILL_TARGET, "per_lead": {}}
    for lead, row in per_lead.items():
        mean_model, mean_pers = row.get("mean", {}).get("crps"), row.get("mean_crps_persistence")
        pooled = 1 - mean_model / mean_pers if mean_model is not None and mean_pers else float("nan")
        out["per_lead"][lead] = {"median_series_skill": row.get("crps_skill_persistence"),
                                 "skill_of_mean_crps": pooled,
                                 "share_beating_persistence": row.get("share_beating_persistence")}
    medians = [v["median_series_skill"] for v in out["per_lead"].values()]
    out["ahead_at_every_lead"] = bool(medians) and all(m is not None and m > 0 for m in medians)
    out["target_met_at_every_lead"] = bool(medians) and all(
        m is not None and m >= PERSISTENCE_SKILL_TARGET for m in medians)
    return out
