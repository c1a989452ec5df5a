"""Inputs derived from the forcing alone: antecedent precipitation, a PET proxy, water-balance indices.

Why: with a few months of training data an LSTM does not learn multi-month soil memory from raw daily
forcing; exponential moving averages (EMAs) at several time scales hand that memory over explicitly
(antecedent-precipitation indices, Kohler & Linsley 1951; the exponential filter of Wagner et al. 1999
is the same recursion). A temperature-based potential-evapotranspiration proxy (Hargreaves & Samani
1985, with extraterrestrial radiation from latitude and day of year, FAO-56 eq. 21) lets the model
weigh drying against wetting, and EMAs of ``P - PET`` are crude water balances.

Generic by construction: columns are recognised by their names (precipitation-, temperature- and
evaporation-like words, Open-Meteo's names first); whatever is not found is simply not derived, so
any canonical forcing still works. Causal: the value at step ``t`` uses forcing at steps ``<= t`` (each
EMA starts from the mean of its first time-scale window, i.e. forcing only). Nothing here reads
observations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.signal import lfilter

PREFIX = "derived:"
PRECIP_WORDS = ("precip", "rain", "prcp", "ppt")
TEMP_WORDS = ("temperature", "temp", "t2m", "tavg", "tmean")
PET_WORDS = ("et0", "evapotranspiration", "potential_evap", "pet", "evaporation")
EXCLUDE_WORDS = ("prob", "hour", "duration", "soil", "dew", "apparent", "surface", "sur_", "wet_bulb", "snow")
PRECIP_SCALES_DAYS = (3.0, 10.0, 30.0, 90.0)
BALANCE_SCALES_DAYS = (10.0, 30.0, 90.0)
PET_SCALES_DAYS = (30.0,)
TEMP_SCALES_DAYS = (30.0,)


@dataclass
class Roles:
    """Column indices of the forcing variables the features are derived from (None: not found)."""

    precip: int | None = None
    tmean: int | None = None
    tmax: int | None = None
    tmin: int | None = None
    pet: int | None = None


def _words(name: str) -> str:
    return name.lower()


def _has(name: str, words: tuple[str, ...]) -> bool:
    n = _words(name)
    return any(w in n for w in words) and not any(w in n for w in EXCLUDE_WORDS)


def detect_roles(names: list[str]) -> Roles:
    """Find precipitation, temperature (mean/max/min) and PET-like columns by name."""
    roles = Roles()
    pet = [i for i, n in enumerate(names) if _has(n, PET_WORDS)]
    precip = [i for i, n in enumerate(names) if _has(n, PRECIP_WORDS) and i not in pet]
    if precip:  # prefer a total ("sum"/"total") or the bare Open-Meteo name
        ranked = sorted(precip, key=lambda i: (not any(w in _words(names[i]) for w in ("sum", "total", "calc")),
                                               names[i] != "precipitation"))
        roles.precip = ranked[0]
    if pet:
        roles.pet = pet[0]
    temps = [i for i, n in enumerate(names) if _has(n, TEMP_WORDS)]
    for i in temps:
        n = _words(names[i])
        if "max" in n:
            roles.tmax = roles.tmax if roles.tmax is not None else i
        elif "min" in n:
            roles.tmin = roles.tmin if roles.tmin is not None else i
        elif roles.tmean is None:
            roles.tmean = i
    return roles


def ema(x: np.ndarray, steps: float) -> np.ndarray:
    """Causal EMA along axis 1 of ``(L, T)`` with e-folding time ``steps``; NaNs count as the start value.

    Starts from the mean of the first ``steps`` steps (so early values are not biased towards zero).
    """
    a = math.exp(-1.0 / max(steps, 1.0))
    n0 = int(min(x.shape[1], max(1, round(steps))))
    with np.errstate(all="ignore"):
        start = np.nanmean(x[:, :n0], axis=1) if x.shape[1] else np.zeros(len(x))
    start = np.where(np.isfinite(start), start, 0.0)
    xx = np.where(np.isfinite(x), x, start[:, None])
    zi = (a * start)[:, None]
    y, _ = lfilter([1.0 - a], [1.0, -a], xx, axis=1, zi=zi)
    return y


def extraterrestrial_radiation(latitude_deg: np.ndarray, day_of_year: np.ndarray) -> np.ndarray:
    """Daily extraterrestrial radiation Ra (MJ m-2 d-1), FAO-56 eq. 21; ``(L,)`` x ``(T,)`` -> ``(L, T)``."""
    phi = np.deg2rad(np.clip(latitude_deg, -89.9, 89.9))[:, None]
    j = np.asarray(day_of_year, dtype=float)[None, :]
    dr = 1.0 + 0.033 * np.cos(2 * np.pi * j / 365.0)
    delta = 0.409 * np.sin(2 * np.pi * j / 365.0 - 1.39)
    ws = np.arccos(np.clip(-np.tan(phi) * np.tan(delta), -1.0, 1.0))
    ra = 24 * 60 / np.pi * 0.0820 * dr * (ws * np.sin(phi) * np.sin(delta) + np.cos(phi) * np.cos(delta) * np.sin(ws))
    return np.maximum(ra, 0.0)


def _rolling_range(t: np.ndarray, window: int) -> np.ndarray:
    """Causal max - min over ``window`` steps (diurnal range of sub-daily temperature)."""
    frame = pd.DataFrame(t.T)
    roll = frame.rolling(window, min_periods=1)
    return (roll.max() - roll.min()).to_numpy().T


def pet_proxy(
    roles: Roles, forcing: np.ndarray, times: pd.DatetimeIndex, latitude: np.ndarray | None, steps_per_day: float
) -> np.ndarray | None:
    """Potential evapotranspiration per step (mm): the forcing's own PET column, else Hargreaves from
    temperature (Ra from latitude and day of year; without latitude a mid-latitude Ra)."""
    if roles.pet is not None:
        return forcing[:, :, roles.pet]
    if roles.tmean is None and (roles.tmax is None or roles.tmin is None):
        return None
    tmax = forcing[:, :, roles.tmax] if roles.tmax is not None else None
    tmin = forcing[:, :, roles.tmin] if roles.tmin is not None else None
    tmean = forcing[:, :, roles.tmean] if roles.tmean is not None else 0.5 * (tmax + tmin)  # type: ignore[operator]
    if tmax is not None and tmin is not None:
        rng = np.maximum(tmax - tmin, 0.0)
    elif steps_per_day > 1:
        rng = _rolling_range(tmean, round(steps_per_day))
    else:
        rng = np.full_like(tmean, 10.0)  # a typical daily range when only the mean is known
    lat = latitude if latitude is not None else np.full(len(forcing), np.nan)
    ra = extraterrestrial_radiation(np.where(np.isfinite(lat), lat, 45.0), times.dayofyear.to_numpy())
    ra = np.where(np.isfinite(lat)[:, None], ra, np.nanmean(ra))
    daily = 0.0023 * 0.408 * ra * np.maximum(tmean + 17.8, 0.0) * np.sqrt(rng)
    return daily / steps_per_day


def derive(
    names: list[str], forcing: np.ndarray, times: pd.DatetimeIndex, latitude: np.ndarray | None,
    steps_per_day: float,
) -> tuple[list[str], np.ndarray]:
    """Derived feature names and values ``(L, T, D)`` from the (gap-filled) forcing ``(L, T, F)``."""
    roles = detect_roles(names)
    out: list[tuple[str, np.ndarray]] = []
    precip = forcing[:, :, roles.precip] if roles.precip is not None else None
    if precip is not None:
        precip = np.maximum(precip, 0.0)
        for d in PRECIP_SCALES_DAYS:
            out.append((f"{PREFIX}precip_ema{d:g}d", ema(precip, d * steps_per_day)))
    pet = pet_proxy(roles, forcing, times, latitude, steps_per_day)
    if pet is not None:
        for d in PET_SCALES_DAYS:
            out.append((f"{PREFIX}pet_ema{d:g}d", ema(pet, d * steps_per_day)))
        if precip is not None:
            balance = precip - pet
            for d in BALANCE_SCALES_DAYS:
                out.append((f"{PREFIX}balance_ema{d:g}d", ema(balance, d * steps_per_day)))
    t_col = roles.tmean if roles.tmean is not None else roles.tmax
    if t_col is not None:
        for d in TEMP_SCALES_DAYS:
            out.append((f"{PREFIX}temp_ema{d:g}d", ema(forcing[:, :, t_col], d * steps_per_day)))
    if not out:
        return [], np.zeros((*forcing.shape[:2], 0))
    return [n for n, _ in out], np.stack([v for _, v in out], axis=-1)


def is_derived(name: str) -> bool:
    return name.startswith(PREFIX)


def derived_group(name: str) -> str:
    """``derived:precip_ema30d`` -> ``precip`` (groups: precip, pet, balance, temp)."""
    return name[len(PREFIX):].split("_ema")[0] if is_derived(name) else ""
