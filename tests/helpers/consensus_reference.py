"""The replicate consensus detector as first written, one cluster at a time: the reference the vectorised
detector (``smmdn.alerts.consensus``, whose docstring says what it computes and why) is checked against
(``tests/unit/test_consensus.py``). Test tooling only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

FAULT_TYPES = ("dropout", "stuck", "spikes/noise", "offset", "drift")
COLUMNS = ["time", "site", "depth_cm", "sensor", "state", "fault", "value", "z", "residual", "reference", "weak",
           "excluded"]


@dataclass(frozen=True)
class Consensus:
    """Thresholds of the consensus detector. Chosen on synthetic series and the demo world (seed 7), not on
    the benchmark's scored seeds (1–3)."""

    floor_sigma: float = 0.004  # m3/m3: residual spread floor (a probe's daily-mean resolution)
    prior_sigma: float = 0.01  # m3/m3: spread before ``min_learn`` clean days
    learn_days: int = 21
    min_learn: int = 5
    z_step: float = 5.0
    z_agree: float = 2.0
    cusum_k: float = 0.5
    cusum_h: float = 6.0
    physical_floor: float = 0.02  # m3/m3: no mineral soil reads this while its siblings read 3× it
    flat_span: float = 1e-4  # m3/m3: within-day range of a stuck probe
    rough_ratio: float = 4.0
    rough_min: float = 0.005  # m3/m3: mean absolute step between readings that counts as rough
    spike_flags: int = 2
    readmit_days: int = 2


DEFAULT = Consensus()  # the detect step's thresholds (a development replay may swap them)


def _local(x: float, span: float, n: float, rough: float, spikes: float, prev: float, prev2: float,
           sib_x: float, sib_span: float, sib_rough: float, sib_move: float, c: Consensus) -> str | None:
    """Sensor-local evidence of a fault on one day (None: none)."""
    if np.isfinite(x) and np.isfinite(sib_x) and x < c.physical_floor and sib_x > 3 * c.physical_floor:
        return "dropout"
    if n >= 6 and np.isfinite(span) and span <= c.flat_span and np.isfinite(sib_span) and sib_span > 5 * c.flat_span:
        return "stuck"
    if (n < 6 and np.isfinite(prev) and np.isfinite(prev2) and abs(x - prev) <= 1e-6 and abs(prev - prev2) <= 1e-6
            and np.isfinite(sib_move) and sib_move > 5 * c.flat_span):
        return "stuck"
    if spikes >= c.spike_flags:
        return "spikes/noise"
    if np.isfinite(rough) and rough > c.rough_min and (not np.isfinite(sib_rough) or rough > c.rough_ratio * sib_rough):
        return "spikes/noise"
    return None


def _residuals(x: np.ndarray, valued: np.ndarray, admitted: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offset-corrected residual of each sensor against the median of its admitted siblings, and that median."""
    k = len(x)
    e, ref = np.full(k, np.nan), np.full(k, np.nan)
    for i in range(k):
        sib = admitted & valued & (np.arange(k) != i)
        if valued[i] and sib.any():
            ref[i] = float(np.median(x[sib] - b[sib]))
            e[i] = x[i] - b[i] - ref[i]
    return e, ref


def _rescore(x: np.ndarray, valued: np.ndarray, admitted: np.ndarray, b: np.ndarray, s: np.ndarray, e: np.ndarray,
             ref: np.ndarray, culprits: set[int]) -> np.ndarray:
    """z of every sensor, the non-culprits' against a reference without the culprits (``e``, ``ref`` updated)."""
    if culprits:
        others = ~np.isin(np.arange(len(x)), list(culprits))
        e2, ref2 = _residuals(x, valued, admitted & others, b)
        e[others], ref[others] = e2[others], ref2[others]
    return e / s


Period = tuple[pd.Timestamp | None, pd.Timestamp | None]  # (since, until); None: open on that side


def _cluster(frame: pd.DataFrame, held: dict[str, list[Period]], c: Consensus) -> list[dict]:
    """Run the detector over one site-depth cluster's days (``frame``: one row per sensor and day)."""
    sensors = sorted(frame["sensor"].unique())
    k = len(sensors)
    days = sorted(frame["time"].unique())
    idx = {s: i for i, s in enumerate(sensors)}

    def grid(col: str, fill: float = np.nan) -> np.ndarray:
        out = np.full((len(days), k), fill)
        piv = frame.pivot_table(index="time", columns="sensor", values=col, aggfunc="first").reindex(days)
        for s in piv.columns:
            out[:, idx[s]] = piv[s].to_numpy(dtype=float)
        return out

    X, SPAN, N = grid("level"), grid("span"), grid("n")
    ROUGH, SPK, Q50 = grid("rough"), grid("n_spike"), grid("q50")
    history: list[list[float]] = [[] for _ in range(k)]  # clean residuals (for the spread)
    level: list[list[float]] = [[] for _ in range(k)]  # clean x_i − cluster median (for the offset)
    b, s = np.zeros(k), np.full(k, c.prior_sigma)
    cplus, cminus = np.zeros(k), np.zeros(k)
    excluded = np.zeros(k, dtype=bool)
    agree = np.zeros(k, dtype=int)
    last: list[str | None] = [None] * k
    rows: list[dict] = []
    for t, day in enumerate(days):
        x = X[t]
        valued = np.isfinite(x)
        forced = np.zeros(k, dtype=bool)
        for i, sn in enumerate(sensors):
            for since, until in held.get(sn, ()):
                started = since is None or day >= since
                if until is None:  # an open alert: excluded from its first day (agreeing days re-admit it)
                    if started and (t == 0 or (since is not None and days[t - 1] < since)):
                        excluded[i] = True
                elif started and day < until:  # a past fault: out, not learnt from, not named again
                    excluded[i] = forced[i] = True
                elif day >= until and t > 0 and days[t - 1] < until:  # its alert resolved: re-admitted
                    excluded[i], agree[i] = False, 0

        ready = np.array([len(h) >= c.min_learn for h in history])
        admitted = ~excluded
        if (admitted & ready & valued).sum() >= 2:  # a sensor without a learnt offset waits to join the reference
            admitted = admitted & ready
        if (admitted & valued).sum() < 2:  # too few admitted: compare with every valued sibling
            admitted = valued.copy()
        e, ref = _residuals(x, valued, admitted, b)
        z = e / s
        local: list[str | None] = [None] * k
        for i in range(k):
            if not valued[i]:
                continue
            sib = valued & (np.arange(k) != i)
            prev = X[t - 1, i] if t >= 1 else np.nan
            prev2 = X[t - 2, i] if t >= 2 else np.nan
            sib_move = np.nanmedian(np.abs(X[t, sib] - X[t - 1, sib])) if t >= 1 and sib.any() else np.nan
            local[i] = _local(x[i], SPAN[t, i], N[t, i], ROUGH[t, i], SPK[t, i], prev, prev2,
                              np.nanmedian(x[sib]) if sib.any() else np.nan,
                              np.nanmedian(SPAN[t, sib]) if sib.any() else np.nan,
                              np.nanmedian(ROUGH[t, sib]) if sib.any() else np.nan, sib_move, c)
        pool = ~excluded & valued
        middle = float(np.median(x[pool] - b[pool])) if pool.sum() >= 2 else np.nan
        culprits = {i for i in range(k) if local[i] and not forced[i]}
        fault: dict[int, str] = {i: str(local[i]) for i in culprits}

        z = _rescore(x, valued, admitted, b, s, e, ref, culprits)
        # residual evidence: the largest |z| among the sensors whose residual fires (ready: offset learnt;
        # an excluded sensor is judged on its residual whatever it learnt)
        zabs = np.where(np.isfinite(z) & (ready | excluded), np.abs(z), 0.0)
        step_hit = zabs >= c.z_step
        cp_next = np.maximum(0.0, cplus + np.nan_to_num(z) - c.cusum_k)
        cm_next = np.maximum(0.0, cminus - np.nan_to_num(z) - c.cusum_k)
        drift_hit = ready & ((cp_next > c.cusum_h) | (cm_next > c.cusum_h))
        still = excluded & (zabs >= c.z_agree)
        fired = [i for i in range(k) if (step_hit[i] or drift_hit[i] or still[i]) and i not in culprits
                 and not forced[i]]
        voters = [i for i in range(k) if valued[i] and not excluded[i] and i not in culprits]
        duo = k > 2 and len(voters) == 2 and bool(excluded.any() or culprits)
        if duo:  # a mirror-image pair: no verdict, and its sums wait for a third vote
            fired = [i for i in fired if i not in voters]
        if fired and not (k == 2 and culprits):
            if k == 2:
                dist = np.abs(x - Q50[t])
                pick = [i for i in fired if np.isfinite(dist).all() and dist[i] >= dist.max()]
            else:
                pick = [max(fired, key=lambda i: zabs[i])]
            for i in pick:
                culprits.add(i)
                fault[i] = ("offset" if step_hit[i] else "drift" if drift_hit[i] else last[i] or "offset")
            z = _rescore(x, valued, admitted, b, s, e, ref, culprits)
        weak = k == 2
        for i in range(k):
            if not valued[i] or not np.isfinite(z[i]) or forced[i]:
                continue
            if i in culprits:
                if not excluded[i]:
                    cplus[:], cminus[:] = 0.0, 0.0  # the siblings' evidence so far was this sensor's
                excluded[i], agree[i], last[i] = True, 0, fault[i]
                continue
            if ready[i] and not duo:
                cplus[i] = max(0.0, cplus[i] + z[i] - c.cusum_k)
                cminus[i] = max(0.0, cminus[i] - z[i] - c.cusum_k)
            if excluded[i]:
                agree[i] += 1
                if agree[i] >= c.readmit_days:
                    excluded[i], agree[i] = False, 0
                    cplus[i] = cminus[i] = 0.0
            elif np.isfinite(middle) and (not ready[i] or (abs(z[i]) < c.z_agree and cplus[i] < c.cusum_h / 2
                                                           and cminus[i] < c.cusum_h / 2)):
                history[i] = (history[i] + [float(e[i])])[-c.learn_days:]
                level[i] = (level[i] + [float(x[i] - middle)])[-c.learn_days:]
                b[i] = float(np.median(level[i]))
                if len(history[i]) >= c.min_learn:
                    h = np.asarray(history[i])
                    s[i] = max(c.floor_sigma, 1.4826 * float(np.median(np.abs(h - np.median(h)))))
        for i, sensor in enumerate(sensors):
            if not valued[i]:
                continue
            named = i in culprits
            state = "out" if named else ("clear" if ready[i] or excluded[i] else "none")
            if not named and excluded[i]:
                state = "clear"  # agreeing again, on its way back in
            if forced[i]:
                state = "none"  # a past fault's day: its alert has its verdict
            rows.append({"time": day, "sensor": sensor, "state": state, "fault": fault.get(i), "value": float(x[i]),
                         "z": float(z[i]) if np.isfinite(z[i]) else np.nan,
                         "residual": float(e[i]) if np.isfinite(e[i]) else np.nan,
                         "reference": float(ref[i] + b[i]) if np.isfinite(ref[i]) else np.nan,
                         "weak": bool(named and weak and fault.get(i) in ("offset", "drift")),
                         "excluded": bool(excluded[i])})
    return rows


def consensus(days: pd.DataFrame,
              held: set[tuple[str, float, str]] | dict[tuple[str, float, str], list[Period]] | None = None,
              rules: Consensus | None = None) -> pd.DataFrame:
    """Per sensor and day of every cluster with ≥ 2 sensors: ``state`` (out / clear / none), ``fault`` (a
    ``FAULT_TYPES`` name when out), ``z`` and ``residual`` against the siblings, the sibling ``reference``,
    ``weak`` (two-sensor attribution by the mixture) and ``excluded`` (left out of the reference).

    ``days`` needs time, site, depth_cm, sensor, ``level`` (the day's value: trusted mean, else raw mean),
    ``span`` and ``rough`` (within-day range, mean absolute step), ``n``, ``n_spike`` and ``q50`` (mixture
    median, NaN without a forecast); ``held``: sensors under an open fault alert (a set: start excluded), or
    every fault alert's period per sensor (see the module docstring).
    """
    c = rules or Consensus()
    held = held or set()
    if not isinstance(held, dict):
        held = {key: [(None, None)] for key in held}
    out: list[pd.DataFrame] = []
    if days.empty:
        return pd.DataFrame(columns=COLUMNS)
    for (site, depth), frame in days.groupby(["site", "depth_cm"], sort=True):
        if frame["sensor"].nunique() < 2:
            continue
        mine = {sn: list(p) for (st, dp, sn), p in held.items() if st == site and float(dp) == float(depth)}
        rows = _cluster(frame, mine, c)
        if rows:
            out.append(pd.DataFrame(rows).assign(site=site, depth_cm=float(depth)))
    if not out:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(out, ignore_index=True)[COLUMNS]
