"""Detection, pure: daily means of trusted readings, PIT/HDR against the mixture, classification, runs.

No store, no clock: frames in, frames out. The detect step (``smmdn.alerts.step``) reads the store, calls
these and hands the conditions to the lifecycle (``smmdn.alerts.lifecycle``).

What is compared: the daily mean of a series' *trusted* readings (spike- and flatline-flagged readings are
left out, as the model leaves them out) on the site's local-standard date, against the latest complete
forecast issued before that date for the same site and depth (the mixture predicts every replicate
sensor at that depth; the model is trained on each replicate as one draw of it).

Outside (level ``a`` = ``SMMDN_ALERT_ALPHA``): the PIT lies outside [a/2, 1 − a/2] *and* the value lies
outside the highest-density region (HDR) of mass 1 − a. In a tail both rules must agree (so a skewed
mixture does not alarm on its long side). Between two modes of a multimodal mixture the PIT is near
0.5 by construction and cannot see anything, so there the HDR decides alone: a value in a gap between
HDR intervals is outside. HDRs are computed only where they can matter (PIT in a tail, or a mixture
found multimodal on a grid), which keeps a thousand series cheap.

Persistence: an alert opens after ``SMMDN_ALERT_PERSISTENCE_STEPS`` consecutive outside days, or at
once when the value is outside at the severe level ``SMMDN_ALERT_SEVERE_ALPHA``; it resolves after
``SMMDN_ALERT_CLEAR_STEPS`` normal days. Days without data neither extend nor break a run.

Classification, per site, depth and day:
- replicate sensors (two or more at one depth): a strict majority outside on the same side →
  ``cluster`` (the whole cluster moved: a hydrological event or a forcing error, not a probe); otherwise
  each outside sensor whose siblings agree with the forecast → ``sensor_fault``.
- one sensor per depth (averaged networks such as USCRN): no siblings, so cross-depth consistency and
  the quality flags decide, and the alert says so: another depth of the site outside on the same side →
  ``cluster``; the top sensor alone wetter than predicted with no flags → ``deviation`` (unforecast rain
  or a probe: ambiguous, said so); any other lone depth → ``sensor_fault``; no other depth reporting →
  ``deviation``.
- ``flatline``: most of the day's readings flagged flatline by validation (opens at once: the flag
  already needed a day of identical readings).
- ``missing``: an active sensor without any reading for ``SMMDN_ALERT_MISSING_AFTER_HOURS``.

Maintenance windows remove a site's days from detection; replaced sensors stop at their replacement.
Each site has a watermark (the last local day evaluated), so a rerun for the same ``now`` changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from smmdn.config import Settings
from smmdn.model.mixture import hdr_intervals, in_hdr, mixture_arrays, mixture_pdf, mixture_pit
from smmdn.schema import UNTRUSTED_FLAGS
from smmdn.timeutil import DAY

log = logging.getLogger(__name__)

CLUSTER = "*"
DAY_KINDS = ("sensor_fault", "cluster", "deviation", "flatline")
KINDS = (*DAY_KINDS, "missing", "calibration_drift", "model_fallback", "sensors_excluded")
SERIES = ["site", "depth_cm", "sensor"]
KEY = ["site", "depth_cm", "sensor", "kind"]
WATERMARK_SOURCE = "alerts"
MISSING_WINDOW = pd.Timedelta(days=60)  # how far back the last reading of a series is looked for
HOURS_24, HOURS_48 = pd.Timedelta(hours=24), pd.Timedelta(hours=48)


@dataclass(frozen=True)
class Rules:
    """Detection and lifecycle thresholds (from ``Settings``; tests build their own)."""

    alpha: float = 0.02
    severe_alpha: float = 0.001
    persistence: int = 2
    clear_steps: int = 2
    missing_after: pd.Timedelta = HOURS_24
    cooldown: pd.Timedelta = HOURS_24
    escalate_after: pd.Timedelta = HOURS_48
    lookback_days: int = 7
    plot_days: int = 21
    consensus_days: int = 30
    readmit_days: int = 2

    @classmethod
    def from_settings(cls, s: Settings) -> Rules:
        return cls(s.alert_alpha, s.alert_severe_alpha, s.alert_persistence_steps, s.alert_clear_steps,
                   pd.Timedelta(hours=s.alert_missing_after_hours), pd.Timedelta(hours=s.alert_cooldown_hours),
                   pd.Timedelta(hours=s.alert_escalate_after_hours), s.alert_lookback_days, s.alert_plot_days,
                   s.alert_consensus_days, s.alert_readmit_days)

    @property
    def context_days(self) -> int:
        return max(self.persistence, self.clear_steps)


# ---------------------------------------------------------------------------------------------------
# daily series with flags
# ---------------------------------------------------------------------------------------------------
def within_periods(raw: pd.DataFrame, periods: pd.DataFrame | None) -> pd.DataFrame:
    """Readings inside their sensor's active period (sensors unknown to the registry count as active)."""
    if raw.empty or periods is None or periods.empty:
        return raw
    p = periods[["site", "depth_cm", "sensor", "active_from", "active_to"]].copy()
    p["site"], p["sensor"] = p["site"].astype(str), p["sensor"].astype(str)
    frame = raw.assign(site=raw["site"].astype(str), sensor=raw["sensor"].astype(str))
    merged = frame.merge(p, on=SERIES, how="left")
    ok = merged["active_from"].isna() | (merged["time"] >= merged["active_from"])
    ok &= merged["active_to"].isna() | (merged["time"] < merged["active_to"])
    return frame.loc[ok.to_numpy()].reset_index(drop=True)


def daily_readings(raw: pd.DataFrame, offsets: dict[str, float]) -> pd.DataFrame:
    """Per series and local-standard day: trusted mean ``vwc`` (NaN if every reading was flagged), counts of
    readings and of spike / flatline / gap flags, and the last reading time (ISMN-flagged readings are not
    trusted either)."""
    cols = ["time", *SERIES, "vwc", "n", "n_spike", "n_flatline", "n_gap", "last_reading", "level", "span", "rough"]
    if raw.empty:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in cols})
    flags = raw["quality_flag"].fillna("ok").astype(str) if "quality_flag" in raw else pd.Series("ok", raw.index)
    spike = flags.str.contains("spike", regex=False)
    flat = flags.str.contains("flatline", regex=False)
    gap = flags.str.contains("gap", regex=False)
    untrusted = pd.concat([flags.str.contains(f, regex=False) for f in UNTRUSTED_FLAGS], axis=1).any(axis=1)
    shift = pd.to_timedelta(raw["site"].astype(str).map(offsets).fillna(0.0).to_numpy(), unit="h")
    frame = pd.DataFrame({
        "time": (raw["time"] + shift).dt.floor("D"), "site": raw["site"].astype(str),
        "depth_cm": raw["depth_cm"].astype(float), "sensor": raw["sensor"].astype(str),
        "trusted": raw["vwc"].where(~untrusted), "vwc": raw["vwc"], "spike": spike, "flat": flat,
        "gap": gap,
        "reading": raw["time"],
    })
    # within-day range and roughness of the raw readings (the consensus sees stuck and noisy probes by them)
    frame = frame.sort_values([*SERIES, "reading"])
    frame["step"] = frame.groupby(["time", *SERIES], sort=False)["vwc"].diff().abs()
    out = frame.groupby(["time", *SERIES], as_index=False, sort=True).agg(
        vwc=("trusted", "mean"), n=("vwc", "size"), n_spike=("spike", "sum"), n_flatline=("flat", "sum"),
        n_gap=("gap", "sum"), last_reading=("reading", "max"), raw=("vwc", "mean"), vmax=("vwc", "max"),
        vmin=("vwc", "min"), rough=("step", "mean"))
    out["level"] = out["vwc"].fillna(out["raw"])
    out["span"] = out["vmax"] - out["vmin"]
    return out[cols]


def complete(days: pd.DataFrame, now: pd.Timestamp, offsets: dict[str, float]) -> pd.Series:
    """True where the local day has ended by ``now`` (a partial day's mean is not a daily value)."""
    offset = pd.to_timedelta(days["site"].map(offsets).fillna(0.0).to_numpy(), unit="h")
    return pd.Series((days["time"] + DAY - offset <= now).to_numpy(), index=days.index)


# ---------------------------------------------------------------------------------------------------
# observation vs mixture
# ---------------------------------------------------------------------------------------------------
def multimodal(w: np.ndarray, mu: np.ndarray, sigma: np.ndarray, n_grid: int = 256, chunk: int = 4096) -> np.ndarray:
    """True where the mixture density has more than one local maximum.

    Mixtures whose live components' means all lie within the smallest live sigma are unimodal (well
    inside the known bounds: two Gaussians are unimodal for every weight when their means are closer
    than 1.84 times the smaller sigma) and skip the check; the others are checked on a grid.
    """
    out = np.zeros(w.shape[0], dtype=bool)
    live = w > 1e-6
    spread = np.where(live, mu, -np.inf).max(axis=1) - np.where(live, mu, np.inf).min(axis=1)
    narrowest = np.where(live, sigma, np.inf).min(axis=1)
    idx = np.flatnonzero((live.sum(axis=1) > 1) & (spread > narrowest))
    for start in range(0, len(idx), chunk):
        rows = idx[start:start + chunk]
        ws, ms, ss = w[rows], mu[rows], sigma[rows]
        lo = np.min(ms - 5 * ss, axis=1)
        hi = np.max(ms + 5 * ss, axis=1)
        grid = lo[:, None] + (hi - lo)[:, None] * np.linspace(0, 1, n_grid)[None, :]
        dens = mixture_pdf(grid, ws[:, None, :], ms[:, None, :], ss[:, None, :])
        top = dens.max(axis=1, keepdims=True)
        peak = (dens[:, 1:-1] > dens[:, :-2]) & (dens[:, 1:-1] >= dens[:, 2:]) & (dens[:, 1:-1] > 1e-3 * top)
        out[rows] = peak.sum(axis=1) > 1
    return out


def exceedance(x: np.ndarray, w: np.ndarray, mu: np.ndarray, sigma: np.ndarray, alpha: float,
               multi: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """PIT, the two rules and their combination at level ``alpha`` (see the module docstring)."""
    x = np.asarray(x, dtype=float)
    finite = np.isfinite(x)
    pit = mixture_pit(x, w, mu, sigma)
    tail = finite & ((pit < alpha / 2) | (pit > 1 - alpha / 2))
    multi = multimodal(w, mu, sigma) if multi is None else multi
    need = np.flatnonzero(finite & (tail | multi))
    outside_hdr = np.zeros(len(x), dtype=bool)
    gap = np.zeros(len(x), dtype=bool)
    if len(need):
        outside_hdr[need] = ~in_hdr(x[need], w[need], mu[need], sigma[need], level=1 - alpha)
        between = need[outside_hdr[need] & ~tail[need] & multi[need]]
        if len(between):
            regions = hdr_intervals(w[between], mu[between], sigma[between], level=1 - alpha)
            for i, intervals in zip(between, regions, strict=True):
                gap[i] = bool(intervals) and intervals[0][0] < x[i] < intervals[-1][1]
    return {"pit": pit, "tail": tail, "outside_hdr": outside_hdr, "gap": gap,
            "outside": outside_hdr & (tail | gap)}


def latest_before(forecasts: pd.DataFrame, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (site, depth, valid day): the latest forecast issued before that day (newest run on ties)."""
    if forecasts.empty:
        return forecasts
    f = forecasts.loc[forecasts["issue_time"] < forecasts["valid_time"]].copy()
    f["site"] = f["site"].astype(str)
    f["depth_cm"] = f["depth_cm"].astype(float)
    if runs is not None and not runs.empty and "run_id" in f:
        finished = runs.set_index("run_id")["finished_at"]
        f["_finished"] = f["run_id"].map(finished)
    else:
        f["_finished"] = pd.NaT
    f = f.sort_values(["site", "depth_cm", "valid_time", "issue_time", "_finished"], na_position="first")
    return f.drop_duplicates(["site", "depth_cm", "valid_time"], keep="last").drop(columns="_finished")


def score_days(days: pd.DataFrame, forecasts: pd.DataFrame, rules: Rules) -> pd.DataFrame:
    """Daily series rows joined to their forecast, with PIT and the outside/severe verdicts."""
    fc = latest_before(forecasts)
    frame = days.copy()
    if fc.empty:
        for c in ("pit", "q50", "issue_time", "lead", "model_version"):
            frame[c] = np.nan
        frame["has_forecast"] = False
        frame["outside"] = frame["severe"] = False
        frame["direction"] = 0
        return frame
    mix = [c for c in fc.columns if c.split("_")[0] in ("weight", "mean", "sigma") and c.split("_")[-1].isdigit()]
    keep = ["site", "depth_cm", "valid_time", "issue_time", "lead", "model_version", "q05", "q50", "q95", *mix]
    frame = frame.merge(fc[keep].rename(columns={"valid_time": "time"}), on=["site", "depth_cm", "time"], how="left")
    frame["has_forecast"] = frame["weight_0"].notna()
    frame["outside"] = False
    frame["severe"] = False
    frame["pit"] = np.nan
    usable = (frame["has_forecast"] & frame["vwc"].notna()).to_numpy()
    if usable.any():
        sub = frame.loc[usable]
        w, mu, sigma = mixture_arrays(sub)
        multi = multimodal(w, mu, sigma)
        x = sub["vwc"].to_numpy(dtype=float)
        base = exceedance(x, w, mu, sigma, rules.alpha, multi)
        severe = exceedance(x, w, mu, sigma, rules.severe_alpha, multi)
        frame.loc[usable, "pit"] = base["pit"]
        frame.loc[usable, "outside"] = base["outside"]
        frame.loc[usable, "severe"] = severe["outside"]
    frame["direction"] = np.sign(frame["vwc"] - frame["q50"]).fillna(0).astype(int)
    return frame


# ---------------------------------------------------------------------------------------------------
# classification
# ---------------------------------------------------------------------------------------------------
def classify(scored: pd.DataFrame, agreement: pd.DataFrame | None = None,
             evidence_from: pd.Timestamp | None = None) -> pd.DataFrame:
    """Per (day, key): ``state`` out / clear / none for each alert kind, with why (``basis``) and context.

    ``none`` means the day says nothing about that key (e.g. a sensor outside while the whole cluster
    moved is not evidence of a sensor fault, nor of its absence). With ``agreement`` (the replicate
    consensus, ``smmdn.alerts.consensus``) replicates are judged against their siblings, not the forecast,
    and a sensor the consensus names or excludes has no vote in the cluster's verdict. ``evidence_from``: the
    consensus rows' evidence (basis, recent residuals) only from that day on (earlier days count runs only).
    """
    columns = ["time", *KEY, "state", "severe", "observed", "pit", "basis", "n", "n_spike", "n_flatline", "n_gap",
               *EVIDENCE]
    if scored.empty:
        return pd.DataFrame(columns=columns)
    s = scored.copy()
    s["valued"] = (s["vwc"].notna() & s["has_forecast"]).astype(bool)
    steered = pd.DataFrame(columns=["time", "site", "depth_cm"])
    if agreement is not None and not agreement.empty:
        a = agreement[["time", *SERIES, "state", "excluded"]].rename(columns={"state": "_agree"})
        s = s.merge(a, on=["time", *SERIES], how="left")
        s["valued"] &= ~(s["_agree"].eq("out") | s["excluded"].eq(True))  # no vote for a named sensor
        # a sensor named in the last two days still steered the forecast its siblings are judged on (its
        # readings leave the model's inputs only from the next cycle): that depth makes no cluster verdict
        g = agreement.sort_values("time").groupby(SERIES)["excluded"]
        before = g.shift(STEER_DAYS).astype("boolean").fillna(False).astype(bool)
        newly = agreement.sort_values("time")["state"].eq("out") & ~before
        steered = agreement.sort_values("time").loc[newly, ["time", "site", "depth_cm"]].drop_duplicates()
    s["outside"] = s["outside"].astype(bool) & s["valued"]
    s["up"] = s["outside"] & (s["direction"] > 0)
    s["down"] = s["outside"] & (s["direction"] < 0)
    group = ["time", "site", "depth_cm"]
    v = s.loc[s["valued"]]
    stats = v.groupby(group).agg(n_valued=("valued", "size"), n_out=("outside", "sum"), n_up=("up", "sum"),
                                 n_down=("down", "sum"), n_severe=("severe", "sum"), mean_vwc=("vwc", "mean"),
                                 pit_median=("pit", "median")).reset_index()
    stats = stats.merge(s.groupby(group)["sensor"].nunique().rename("n_sensors").reset_index(), on=group, how="left")
    stats["replicates"] = stats["n_sensors"] >= 2
    stats["majority"] = stats["n_out"] * 2 > stats["n_valued"]
    same_side = (stats["n_up"] == stats["n_out"]) | (stats["n_down"] == stats["n_out"])
    stats["cluster_out"] = stats["majority"] & same_side & (stats["n_out"] > 0)
    # one sensor per depth: how the site's other single-sensor depths fared on the same day
    single = stats.loc[~stats["replicates"]].copy()
    by_site = single.groupby(["time", "site"])
    single["m"] = by_site["n_valued"].transform("size")
    single["site_up"] = by_site["n_up"].transform("sum")
    single["site_down"] = by_site["n_down"].transform("sum")
    single["top"] = single["depth_cm"] == by_site["depth_cm"].transform("min")
    single["others"] = single["m"] - 1
    single["same"] = np.where(single["n_up"] > 0, single["site_up"] - single["n_up"],
                              np.where(single["n_down"] > 0, single["site_down"] - single["n_down"], 0))
    stats = stats.merge(single[[*group, "others", "same", "top"]], on=group, how="left")
    s = s.merge(stats, on=group, how="left")
    for c in ("replicates", "cluster_out", "top"):
        s[c] = s[c].eq(True)
    for c in ("others", "same"):
        s[c] = s[c].fillna(0).astype(int)
    flags = ["n", "n_spike", "n_flatline", "n_gap"]
    base = ["time", "site", "depth_cm", "sensor"]

    def part(frame: pd.DataFrame, kind: str, state: Any, severe: Any, basis: Any) -> pd.DataFrame:
        out = frame[base + flags].copy()
        out["kind"], out["state"], out["severe"], out["basis"] = kind, state, severe, basis
        out["observed"], out["pit"] = frame["vwc"].to_numpy(), frame["pit"].to_numpy()
        return out

    parts = []
    flat = np.where(s["n_flatline"] == 0, "clear", np.where(s["n_flatline"] * 2 >= s["n"], "out", "none"))
    parts.append(part(s, "flatline", flat, False, "quality flags"))
    rep = s.loc[s["valued"] & s["replicates"]]
    if agreement is None:
        parts.append(part(rep, "sensor_fault", np.where(~rep["outside"], "clear", np.where(rep["cluster_out"], "none",
                                                                                             "out")),
                          rep["severe"].astype(bool).to_numpy(), "replicates"))
    else:
        parts.append(agreement_rows(agreement, s, evidence_from))
    parts.append(part(rep, "deviation", np.where(~rep["outside"], "clear", "none"), False, "replicates"))
    one = s.loc[s["valued"] & ~s["replicates"]]
    if len(one):
        out_ = one["outside"].to_numpy()
        same, others = one["same"].to_numpy(), one["others"].to_numpy()
        flagged = (one["n_spike"] + one["n_gap"]).to_numpy() > 0
        wet_top = one["top"].to_numpy() & (one["direction"].to_numpy() > 0) & ~flagged
        case = np.select([~out_, same >= 1, others == 0, wet_top], ["clear", "together", "alone", "wet_top"], "fault")
        fault = np.select([case == "clear", case == "fault"], ["clear", "out"], "none")
        deviation = np.select([case == "clear", np.isin(case, ["alone", "wet_top"])], ["clear", "out"], "none")
        notes = {
            "clear": "", "together": " ({same} other depth(s) outside on the same side)",
            "alone": " (no other depth reporting: cause unknown)",
            "wet_top": " (top sensor wetter than predicted, deeper sensors agree: unforecast rain or a probe)",
            "fault": " ({others} other depth(s) agree with their forecasts{flag})",
        }
        basis = [SINGLE_BASIS + notes[c].format(same=a, others=b, flag=", quality flags raised" if f else "")
                 for c, a, b, f in zip(case, same, others, flagged, strict=True)]
        severe = one["severe"].astype(bool).to_numpy()
        # a lone sensor has no siblings: the evidence is cross-depth and the model's, weak by nature
        parts.append(part(one, "sensor_fault", fault, severe, basis).assign(weak=True))
        parts.append(part(one, "deviation", deviation, severe, basis).assign(weak=True))
    c = stats.copy()
    c["sensor"] = CLUSTER
    rep_c = c["replicates"].to_numpy()
    state_rep = np.where(c["cluster_out"], "out", np.where(~c["majority"], "clear", "none"))
    if not steered.empty:
        hit = c[["time", "site", "depth_cm"]].merge(steered.assign(_s=True), on=["time", "site", "depth_cm"],
                                                    how="left")["_s"].eq(True).to_numpy()
        state_rep = np.where(hit & (state_rep == "out"), "none", state_rep)
    state_one = np.where((c["n_out"] > 0) & (c["same"].fillna(0) >= 1), "out", np.where(c["n_out"] == 0, "clear",
                                                                                         "none"))
    basis_c = [f"replicates: {int(o)} of {int(n)} sensors outside" + (" on the same side" if co else "") if rp else
               f"{SINGLE_BASIS} ({int(sm) if sm == sm else 0} other depth(s) outside on the same side)"
               for rp, o, n, co, sm in zip(rep_c, c["n_out"], c["n_valued"], c["cluster_out"], c["same"], strict=True)]
    clusters = pd.DataFrame({"time": c["time"], "site": c["site"], "depth_cm": c["depth_cm"], "sensor": CLUSTER,
                             "n": c["n_valued"], "n_spike": 0, "n_flatline": 0, "n_gap": 0, "kind": "cluster",
                             "state": np.where(rep_c, state_rep, state_one),
                             "severe": (c["n_severe"] * 2 > c["n_valued"]).to_numpy(), "basis": basis_c,
                             "observed": c["mean_vwc"], "pit": c["pit_median"]})
    parts.append(clusters)
    out = pd.concat([p for p in parts if len(p)], ignore_index=True)
    for col in EVIDENCE:
        if col not in out:
            out[col] = None
    return out.sort_values([*KEY, "time"]).reset_index(drop=True)


EVIDENCE = ["fault", "residual", "reference", "weak", "recent"]
STEER_DAYS = 2
RECENT_DAYS = 5


def agreement_rows(agreement: pd.DataFrame, scored: pd.DataFrame,
                   evidence_from: pd.Timestamp | None = None) -> pd.DataFrame:
    """``sensor_fault`` conditions of replicates from the consensus: out opens at once (the detector has its
    own persistence: CUSUM, a step of ``z_step`` spreads), with the fault type and the residual vs siblings
    over the last ``RECENT_DAYS`` days as evidence (of the rows from ``evidence_from`` on; None: all)."""
    a = agreement.sort_values([*SERIES, "time"]).reset_index(drop=True)
    info = scored[["time", *SERIES, "n", "n_spike", "n_flatline", "n_gap", "pit"]].drop_duplicates(["time", *SERIES])
    a = a.merge(info, on=["time", *SERIES], how="left")
    want = np.ones(len(a), dtype=bool) if evidence_from is None else (a["time"] >= evidence_from).to_numpy()
    first = (np.arange(len(a)) - a.groupby(SERIES, sort=False).cumcount().to_numpy()) if len(a) else np.zeros(0, int)
    times, resid = list(a["time"]), a["residual"].to_numpy()
    recent: list[Any] = [None] * len(a)
    for j in np.flatnonzero(want):
        recent[j] = [(times[i].strftime("%m-%d"), None if pd.isna(resid[i]) else round(float(resid[i]), 4))
                     for i in range(max(first[j], j - RECENT_DAYS + 1), j + 1)]
    a["recent"] = recent
    n_sib = a.groupby(["time", "site", "depth_cm"])["sensor"].transform("size") - 1
    basis = [(f"replicates: {'weak, ' if w else ''}{int(m)} sibling(s); residual {r:+.3f} m3/m3 (z {z:+.1f})"
              if pd.notna(r) else f"replicates: {int(m)} sibling(s)") if k else None
             for k, w, m, r, z in zip(want, a["weak"], n_sib, a["residual"], a["z"], strict=True)]
    out = pd.DataFrame({"time": a["time"], "site": a["site"], "depth_cm": a["depth_cm"], "sensor": a["sensor"],
                        "kind": "sensor_fault", "state": a["state"], "severe": a["state"].eq("out").to_numpy(),
                        "basis": basis, "observed": a["value"], "pit": a["pit"],
                        "fault": a["fault"], "residual": a["residual"], "reference": a["reference"],
                        "weak": a["weak"], "recent": a["recent"]})
    for col in ("n", "n_spike", "n_flatline", "n_gap"):
        out[col] = a[col].fillna(0).astype(int).to_numpy()
    # a day validation already flagged flatline is the flatline alert's: one alert per stuck probe
    flagged = (out["fault"] == "stuck") & (out["n_flatline"] * 2 >= out["n"]) & (out["n"] > 0)
    out.loc[flagged, "state"] = "none"
    return out


def flags_of(r: Any) -> dict[str, int] | None:
    """The day's quality-flag counts of a condition row (None for cluster rows)."""
    if r.kind == "cluster":
        return None
    return {"readings": int(r.n), "spike": int(r.n_spike), "flatline": int(r.n_flatline), "gap": int(r.n_gap)}


SINGLE_BASIS = "one sensor per depth: cross-depth consistency and quality flags"


def runs(conditions: pd.DataFrame) -> pd.DataFrame:
    """Add ``out_run`` / ``clear_run``: consecutive out / clear days ending at each row, per key
    (``none`` rows are neutral: dropped before counting). Also ``run_start``: first day of the out run."""
    c = conditions.loc[conditions["state"] != "none"].copy()
    if c.empty:
        return c.assign(out_run=pd.Series(dtype=int), clear_run=pd.Series(dtype=int), run_start=pd.Series(dtype=object))
    c = c.sort_values([*KEY, "time"]).reset_index(drop=True)
    change = (c["state"] != c.groupby(KEY)["state"].shift()).cumsum()
    length = c.groupby(change).cumcount() + 1
    c["out_run"] = np.where(c["state"] == "out", length, 0)
    c["clear_run"] = np.where(c["state"] == "clear", length, 0)
    c["run_start"] = c.groupby(change)["time"].transform("min")
    return c
