"""Continuous verification: every forecast is scored once its valid day has observations; calibration drift.

Scored pairs: each stored forecast (every issue time and lead, complete runs only) against each trusted
daily sensor value of its site, depth and valid day (the same daily means detection uses: spike and
flatline readings left out, replaced sensors ended, maintenance days and days of a sensor under a
sensor-fault or flatline alert excluded — a broken probe must not trigger a retrain). Per pair: CRPS
(closed form, ``smmdn.model.mixture``), PIT, whether the value is inside the 50 % and 90 % central
intervals (the stored quantiles q25–q75 and q05–q95, i.e. what users saw), and those widths. Rows are
upserted into ``verification`` (a hypertable on ``valid_time``), so rescoring is idempotent and a late
observation is scored when it arrives (the last ``SMMDN_VERIFICATION_LOOKBACK_DAYS`` are rescored).

Calibration drift, over the last ``SMMDN_DRIFT_WINDOW_DAYS`` scored valid days and only forecasts of the
champion's lineage since its last full retrain (so one bad month triggers one retrain, not thirty):
- coverage_90 outside [``SMMDN_DRIFT_COVERAGE_MIN``, ``SMMDN_DRIFT_COVERAGE_MAX``] (0.80–0.97), or
- the PIT histogram (10 bins) fails a chi-square uniformity test at p < ``SMMDN_DRIFT_PIT_P`` (0.01).
  PITs of one site, depth and valid day (its leads, its replicate sensors) share one observation or
  one day's weather, and neighbouring days are correlated too, so the statistic is scaled to an
  effective sample size: the number of distinct (site, depth, valid day), at most
  ``SMMDN_DRIFT_PIT_EFFECTIVE_N`` (a design-effect correction). Without it any real model fails the
  test on a few thousand pairs.
No verdict with fewer than ``SMMDN_DRIFT_MIN_PAIRS`` independent scores (distinct site, depth, day).
Drift opens a network-wide ``calibration_drift`` alert for the operators (routes ``operators:``); the
daily flow records it and the next cycle retrains in full (``smmdn.cycle.plan``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from smmdn.alerts.daycache import daily_context
from smmdn.alerts.detect import complete
from smmdn.alerts.drift import drift_transition
from smmdn.alerts.routing import Routes, load_routes
from smmdn.alerts.silences import drop_maintenance
from smmdn.config import Settings
from smmdn.cycle.plan import request_retrain
from smmdn.model.mixture import mixture_arrays, mixture_crps, mixture_pit
from smmdn.store import alerts as db
from smmdn.store import verification as scores
from smmdn.store.sites import site_offsets
from smmdn.timeutil import DAY, utc

if TYPE_CHECKING:
    from smmdn.store import Store

log = logging.getLogger(__name__)

WATERMARK = ("verification", "scored_through")
FAULT_KINDS = ("sensor_fault", "flatline")


@dataclass
class DriftReport:
    drift: bool
    n: int
    window: list[str]
    independent: int = 0
    since_retrain: str | None = None
    coverage_50: float | None = None
    coverage_90: float | None = None
    pit_chi2: float | None = None
    pit_p: float | None = None
    pit_histogram: list[float] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VerificationOutcome:
    now: str
    scored: int = 0
    new_rows: int = 0
    valid_days: list[str] = field(default_factory=list)
    drift: bool = False
    retrain: bool = False  # drift that asks for a full retrain (not asked twice for one champion lineage)
    report: dict[str, Any] = field(default_factory=dict)
    by_lead: list[dict[str, Any]] = field(default_factory=list)
    plots: dict[str, str] = field(default_factory=dict)
    notified: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------
# scoring
# ---------------------------------------------------------------------------------------------------
def score_pairs(pairs: pd.DataFrame) -> pd.DataFrame:
    """Scores of forecast/observation pairs (canonical forecast columns + ``observed``)."""
    out = pairs.copy()
    if out.empty:
        for c in ("crps", "pit", "in_50", "in_90", "width_50", "width_90"):
            out[c] = pd.Series(dtype=float)
        return out
    w, mu, sigma = mixture_arrays(out)
    x = out["observed"].to_numpy(dtype=float)
    out["crps"] = mixture_crps(x, w, mu, sigma)
    out["pit"] = mixture_pit(x, w, mu, sigma)
    out["in_50"] = (x >= out["q25"].to_numpy()) & (x <= out["q75"].to_numpy())
    out["in_90"] = (x >= out["q05"].to_numpy()) & (x <= out["q95"].to_numpy())
    out["width_50"] = out["q75"] - out["q25"]
    out["width_90"] = out["q95"] - out["q05"]
    return out


def trusted_days(store: Store, start: pd.Timestamp, end: pd.Timestamp, now: pd.Timestamp,
                 sites: Sequence[str] | None = None) -> pd.DataFrame:
    """Daily trusted sensor values in [start, end) that verification may use (see the module docstring), of
    ``sites`` (None: every site). They come from the detector state (``smmdn.alerts.daycache``: the raw
    readings are read only where they changed since the state was built)."""
    offsets = site_offsets(store)
    days = daily_context(store, start, now, offsets, db.sensor_periods(store), sites, prune=False)
    if days.empty:
        return days
    days = days.loc[complete(days, now, offsets) & (days["time"] >= start) & (days["time"] < end)
                    & days["vwc"].notna()]
    days = drop_maintenance(store, days, offsets)
    faults = db.read_alerts(store, kinds=list(FAULT_KINDS))
    if not faults.empty and not days.empty:
        f = faults[["site", "depth_cm", "sensor", "window_start", "window_end", "status"]].copy()
        f["until"] = f["window_end"].where(f["status"] == "resolved", pd.Timestamp.max.tz_localize("UTC"))
        hit = days.reset_index().merge(f, on=["site", "depth_cm", "sensor"])
        hit = hit.loc[(hit["time"] >= hit["window_start"].dt.floor("D")) & (hit["time"] <= hit["until"])]
        days = days.drop(index=hit["index"].unique())
    return days


def score(store: Store, now: pd.Timestamp, settings: Settings,
          sites: Sequence[str] | None = None) -> tuple[pd.DataFrame, int]:
    """Score every forecast whose valid day is complete and not yet scored (plus the rescoring window);
    ``sites``: only their forecasts (a shard of the daily cycle; None: every site, ``[]``: none). Only a run
    over every site moves the scored-through watermark: a shard's cannot say the others are scored too (the
    sharded cycle's parent moves it after its shards, ``verify(sites=[])``)."""
    if sites is not None and not sites:
        return pd.DataFrame(), 0
    mark = store.get_watermark(*WATERMARK)
    recent = now.floor("D") - settings.verification_lookback_days * DAY
    start = scores.first_forecast_valid_time(store) if mark is None else min(mark + DAY, recent)
    if start is None:
        return pd.DataFrame(), 0
    start = start.floor("D")
    end = now.floor("D") + DAY
    days = trusted_days(store, start, end, now, sites)
    if days.empty:
        return pd.DataFrame(), 0
    forecasts = store.read_forecasts(start=start, end=end, sites=sorted(days["site"].unique()))
    if forecasts.empty:
        return pd.DataFrame(), 0
    forecasts["site"] = forecasts["site"].astype(str)
    pairs = forecasts.merge(days[["time", "site", "depth_cm", "sensor", "vwc"]].rename(
        columns={"time": "valid_time", "vwc": "observed"}), on=["site", "depth_cm", "valid_time"])
    pairs = pairs.loc[pairs["issue_time"] < pairs["valid_time"]]
    scored = score_pairs(pairs)
    scored["scored_at"] = now
    written = scores.write_verification(store, scored)
    if not scored.empty and sites is None:
        _scored_through(store, scored["valid_time"].max(), mark)
    return scored, written.inserted


def _scored_through(store: Store, latest: pd.Timestamp | None, mark: pd.Timestamp | None) -> None:
    if latest is not None and (mark is None or latest > mark):
        store.set_watermark(*WATERMARK, latest)


# ---------------------------------------------------------------------------------------------------
# drift
# ---------------------------------------------------------------------------------------------------
def independent_count(v: pd.DataFrame) -> int:
    """Scores that can count as independent: one per site, depth and valid day (its leads share the
    observation, its replicate sensors share the weather)."""
    return int(v[["site", "depth_cm", "valid_time"]].drop_duplicates().shape[0]) if len(v) else 0


def pit_uniformity(pit: np.ndarray, effective_n: int, bins: int = 10) -> tuple[float, float, list[float]]:
    """(chi-square statistic scaled to ``effective_n`` values, its p-value, relative bin counts)."""
    pit = np.asarray(pit, dtype=float)
    pit = pit[np.isfinite(pit)]
    counts, _ = np.histogram(pit, bins=bins, range=(0.0, 1.0))
    return pit_uniformity_counts(counts, len(pit), effective_n)


def pit_uniformity_counts(counts: np.ndarray, n: int, effective_n: int) -> tuple[float, float, list[float]]:
    """``pit_uniformity`` from the histogram: ``counts`` per bin of ``n`` finite PITs."""
    from scipy.special import chdtrc  # chi-square survival function (scipy.stats costs seconds to import)

    counts = np.asarray(counts)
    bins = len(counts)
    expected = n / bins
    stat = float(np.sum((counts - expected) ** 2 / expected))
    scaled = stat * min(n, effective_n) / n
    return scaled, float(chdtrc(bins - 1, scaled)), (counts / n).round(4).tolist()


def since_last_full_retrain(store: Store) -> tuple[str | None, set[str] | None]:
    """(the full retrain the champion descends from, every version descending from it).

    Forecasts of these versions are the ones the drift test judges: a full retrain restarts the window
    (the same issue-day forecast that follows a retrain counts, older models' forecasts do not). None
    when there is no champion yet (then every score counts).
    """
    versions = store.model_versions()
    champion = store.champion()
    if champion is None or versions.empty:
        return None, None
    parent = dict(zip(versions["version"], versions["parent"], strict=True))
    kind = dict(zip(versions["version"], versions["kind"], strict=True))
    root, seen = champion["version"], set()
    while kind.get(root) != "full" and parent.get(root) and root not in seen:
        seen.add(root)
        root = parent[root]

    def descends(version: str) -> bool:
        chain: set[str] = set()
        while version and version not in chain:
            if version == root:
                return True
            chain.add(version)
            version = parent.get(version)
        return False

    return root, {v for v in versions["version"] if descends(v)}


def window_scores(store: Store, now: pd.Timestamp, settings: Settings) -> tuple[pd.DataFrame, pd.Timestamp | None]:
    """Score rows of the last ``drift_window_days`` scored valid days up to ``now``, and the latest scored valid
    day (the per-site skill table of the flow reads them; the verdict reads ``window_sums``)."""
    latest = scores.latest_scored_valid_time(store, now)
    if latest is None:
        return pd.DataFrame(), None
    end = latest + DAY
    return scores.read_verification(store, start=end - settings.drift_window_days * DAY, end=end), latest


PIT_EDGES = np.linspace(0.0, 1.0, 11)  # np.histogram's edges for 10 bins over [0, 1]


@dataclass
class Window:
    """The drift window (the last ``drift_window_days`` scored valid days up to ``latest``) as sums per valid
    day, lead, model version and PIT bin (``store.verification.window_aggregates``): what the verdict and the
    skill tables need, without moving the window's score rows (7 per series and day) out of the database."""

    sums: pd.DataFrame
    latest: pd.Timestamp | None = None
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None


def window_sums(store: Store, now: pd.Timestamp, settings: Settings) -> Window:
    """The drift window's sums (read once per run)."""
    latest = scores.latest_scored_valid_time(store, now)
    if latest is None:
        return Window(pd.DataFrame(columns=scores.AGGREGATE_COLUMNS))
    end = latest + DAY
    start = end - settings.drift_window_days * DAY
    return Window(scores.window_aggregates(store, start, end, PIT_EDGES.tolist()), latest, start, end)


def drift_report(store: Store, now: pd.Timestamp, settings: Settings, window: Window | None = None) -> DriftReport:
    """The drift verdict over the last scored window (see the module docstring)."""
    w = window if window is not None else window_sums(store, now, settings)
    if w.latest is None or w.start is None:
        return DriftReport(False, 0, [], reasons=["no verification scores yet"])
    root, lineage = since_last_full_retrain(store)
    sums = w.sums if lineage is None else w.sums.loc[w.sums["model_version"].isin(lineage)]
    n = int(sums["n"].sum())
    window = [w.start.date().isoformat(), w.latest.date().isoformat()]
    independent = scores.independent_scores(store, w.start, w.end, None if lineage is None else sorted(lineage)) if (
        n) else 0
    report = DriftReport(False, n, window, since_retrain=root, independent=independent)
    if independent < settings.drift_min_pairs:
        report.reasons.append(f"{independent} independent scores (site, depth, day) from models since the full "
                              f"retrain {root or '-'} (< {settings.drift_min_pairs}): no verdict")
        return report
    report.coverage_50 = round(float(int(sums["in_50"].sum()) / n), 4)
    report.coverage_90 = round(float(int(sums["in_90"].sum()) / n), 4)
    effective = min(independent, settings.drift_pit_effective_n)
    report.pit_chi2, report.pit_p, report.pit_histogram = pit_uniformity_counts(
        _histogram(sums), int(sums["n_pit"].sum()), effective)
    lo, hi = settings.drift_coverage_min, settings.drift_coverage_max
    if not lo <= report.coverage_90 <= hi:
        report.reasons.append(f"coverage_90 {report.coverage_90:.3f} outside [{lo:.2f}, {hi:.2f}] over {n} pairs")
    if report.pit_p < settings.drift_pit_p:
        report.reasons.append(f"PIT not uniform: chi-square {report.pit_chi2:.1f} (effective n {effective}), "
                              f"p {report.pit_p:.2g} < {settings.drift_pit_p:g}")
    report.drift = bool(report.reasons)
    return report


def _histogram(sums: pd.DataFrame) -> np.ndarray:
    """PIT counts per bin (``PIT_EDGES``) of the summed rows."""
    counts = np.zeros(len(PIT_EDGES) - 1, dtype=np.int64)
    inside = sums.loc[sums["bin"].notna()]
    if len(inside):
        per = inside.groupby(inside["bin"].astype(int))["n_pit"].sum()
        counts[per.index.to_numpy()] = per.to_numpy()
    return counts


# ---------------------------------------------------------------------------------------------------
# skill tables and plots
# ---------------------------------------------------------------------------------------------------
def _summary(v: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    g = v.groupby(by)
    return g.agg(n=("crps", "size"), crps=("crps", "mean"), coverage_50=("in_50", "mean"),
                 coverage_90=("in_90", "mean"), width_90=("width_90", "mean"), pit_mean=("pit", "mean")
                 ).reset_index().round(5)


def skill_report(store: Store, now: pd.Timestamp, settings: Settings,
                 scores: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """Skill over the drift window (every model): per lead, per site and lead, per valid day and lead."""
    v = scores if scores is not None else window_scores(store, now, settings)[0]
    if v.empty:
        return {"by_lead": pd.DataFrame(), "by_site_lead": pd.DataFrame(), "daily": pd.DataFrame(), "pit": v}
    return {"by_lead": _summary(v, ["lead"]), "by_site_lead": _summary(v, ["site", "lead"]),
            "daily": _summary(v.rename(columns={"valid_time": "time"}), ["time", "lead"]), "pit": v[["pit"]]}


def skill_from_sums(window: Window) -> dict[str, pd.DataFrame]:
    """``skill_report``'s per-lead and per-day tables, and the PITs for the reliability plot, from the
    window's sums (every model). The PITs are each bin's centre, as many as the bin holds (and 2.0 for a
    finite PIT outside [0, 1]): the plot draws their histogram, which is the window's."""
    sums = window.sums
    if sums.empty:
        return {"by_lead": pd.DataFrame(), "by_site_lead": pd.DataFrame(), "daily": pd.DataFrame(),
                "pit": pd.DataFrame({"pit": pd.Series([], dtype=float)})}

    def summary(by: list[str]) -> pd.DataFrame:
        g = sums.rename(columns={"valid_time": "time"}).groupby(by)
        t = g[["n", "n_pit", "in_50", "in_90", "crps", "width_90", "pit"]].sum()
        out = pd.DataFrame({"n": t["n"], "crps": t["crps"] / t["n"], "coverage_50": t["in_50"] / t["n"],
                            "coverage_90": t["in_90"] / t["n"], "width_90": t["width_90"] / t["n"],
                            "pit_mean": t["pit"] / t["n_pit"].where(t["n_pit"] > 0)})
        return out.reset_index().round(5)

    counts = _histogram(sums)
    outside = int(sums["n_pit"].sum()) - int(counts.sum())
    centres = (PIT_EDGES[:-1] + PIT_EDGES[1:]) / 2
    pit = np.concatenate([np.repeat(centres, counts), np.full(outside, 2.0)])
    return {"by_lead": summary(["lead"]), "by_site_lead": pd.DataFrame(), "daily": summary(["time", "lead"]),
            "pit": pd.DataFrame({"pit": pit})}


def write_plots(skill: dict[str, pd.DataFrame], directory: Path) -> dict[str, str]:
    """Reliability (PIT histogram, coverage per lead) and CRPS-over-time PNGs into ``directory``."""
    from smmdn.alerts.plots import reliability_png, skill_png

    if skill["by_lead"].empty:
        return {}
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"reliability": directory / "reliability.png", "skill": directory / "skill.png"}
    paths["reliability"].write_bytes(reliability_png(skill["pit"]["pit"].to_numpy(), skill["by_lead"]))
    paths["skill"].write_bytes(skill_png(skill["daily"]))
    return {k: str(p) for k, p in paths.items()}


# ---------------------------------------------------------------------------------------------------
# the verify step
# ---------------------------------------------------------------------------------------------------
def verify(store: Store, now: pd.Timestamp | str | None, settings: Settings, *,
           routes: Routes | None = None, sites: Sequence[str] | None = None) -> VerificationOutcome:
    """Score what became verifiable, judge calibration drift, tell operators, write the skill plots.

    ``sites``: score only their forecasts (None: every site; ``[]``: none, the sharded cycle's parent after its
    shards scored theirs with ``score``). The drift verdict always judges the whole network's stored scores."""
    now = utc(now)
    scored, inserted = score(store, now, settings, sites)
    outcome = VerificationOutcome(now=now.isoformat(), scored=len(scored), new_rows=inserted)
    if not scored.empty:
        outcome.valid_days = sorted({t.date().isoformat() for t in scored["valid_time"]})
    window = window_sums(store, now, settings)
    if sites is not None and not sites:  # after the shards scored their sites: the network is scored through
        _scored_through(store, window.latest, store.get_watermark(*WATERMARK))
    report = drift_report(store, now, settings, window)
    outcome.retrain = request_retrain(store, now, report)
    outcome.drift, outcome.report = report.drift, report.to_dict()
    skill = skill_from_sums(window)
    outcome.by_lead = skill["by_lead"].to_dict("records")
    try:
        outcome.plots = write_plots(skill, settings.path("artifact") / "verification" / now.strftime("%Y-%m-%d"))
    except Exception as exc:  # plots are for people; the verdict must not depend on them
        log.warning("verification plots failed: %s", exc)
    try:
        png = Path(outcome.plots["reliability"]).read_bytes() if "reliability" in outcome.plots else None
        outcome.notified = drift_transition(
            store, now, report.drift, report.to_dict(), routes if routes is not None else load_routes(settings), png)
    except Exception as exc:  # telling operators failed: the drift flag still reaches the flow
        log.warning("calibration-drift alert not queued: %s", exc)
    log.info("verification at %s: %d pair(s) scored (%d new), drift %s%s", f"{now:%Y-%m-%d %H:%M} UTC",
             outcome.scored, outcome.new_rows, report.drift,
             f" ({report.coverage_90:.3f} coverage_90)" if report.coverage_90 else "")
    if report.drift:
        log.warning("calibration drift: %s", "; ".join(report.reasons))
    return outcome
