"""The detector's daily scores, kept in the store so a run scores only its new day.

Why: the consensus and the run counts read every day of the window (``Rules.consensus_days``) with its verdict
against the mixture (outside, severe, PIT, the median), and re-reading the window's forecasts and re-scoring
them every run cost more than the rules themselves. A day's verdict is a pure function of its daily value, the
forecast it is judged by (``alerts.detect.latest_before``) and the alpha levels, so a cached verdict is reused
exactly when those are unchanged:

- the daily value: the cached ``vwc`` must equal today's (a late or corrected reading changes it);
- the alpha levels: ``rules`` must match;
- the forecast: a complete run that outranks the one judged by and holds a forecast for that day, finished
  after the verdict (less ``SLACK``: a run's finish is stamped before it commits), re-scores the day; so does
  a run judged by that is no longer complete.

Every other day, and every day of this run's fresh days (their forecast columns feed the alert's details), is
scored from the forecasts as before. Sites without a fresh day are scored without forecasts, as before (their
days are context for nobody's new conditions). Same rows, same values: ``tests/integration/test_score_cache.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from smmdn.alerts.daycache import SLACK
from smmdn.alerts.detect import SERIES, Rules, latest_before, score_days
from smmdn.store import detector_state as db
from smmdn.store import forecasts as forecast_rows
from smmdn.timeutil import DAY

if TYPE_CHECKING:
    from smmdn.store import Store

KEY = ["time", *SERIES]
VERDICT = ["has_forecast", "q50", "pit", "outside", "severe"]


def rules_key(rules: Rules) -> str:
    """The rule settings a verdict depends on."""
    return f"alpha={rules.alpha!r}|severe={rules.severe_alpha!r}"


def score_window(store: Store, days: pd.DataFrame, fresh: pd.Series, rules: Rules,
                 window_start: pd.Timestamp) -> pd.DataFrame:
    """``score_days`` of every row of ``days`` (forecasts of the sites with a ``fresh`` day only), reusing the
    cached verdicts that still hold; the cache is brought up to date and pruned to ``window_start``."""
    clock = db.clock(store)
    frame = days.reset_index(drop=True)
    fresh = pd.Series(np.asarray(fresh, dtype=bool), index=frame.index)
    sites = sorted(frame.loc[fresh, "site"].unique())
    judged = frame["site"].isin(sites).to_numpy()
    key = rules_key(rules)
    cached = db.read_detector_scores(store, sites, window_start) if sites else db.read_detector_scores(store, [], 0)
    m = frame[[*KEY, "vwc"]].merge(cached.drop(columns="rules").assign(_rules=cached["rules"]), on=KEY, how="left",
                                   suffixes=("", "_c"))
    sound = pd.Series(False, index=m.index)
    present = m["scored_at"].notna()
    if present.any():  # a row altered in the store (its digest no longer matches) is re-scored
        got = m.loc[present, [*KEY, "vwc_c", "run_id", "_rules", *VERDICT, "scored_at"]].rename(
            columns={"vwc_c": "vwc", "_rules": "rules"})
        sound[present] = (row_digests(got) == m.loc[present, "digest"].to_numpy())
    ok = (sound & m["_rules"].eq(key) & ((m["vwc"] == m["vwc_c"]) | (m["vwc"].isna() & m["vwc_c"].isna()))).to_numpy()
    ok &= judged & ~fresh.to_numpy()
    if ok.any():
        ok &= _still_latest(store, m, ok, sites)
    parts = []
    todo = judged & ~ok
    if todo.any():
        rows = frame.loc[todo]
        forecasts = forecast_rows.forecasts_issued_before(store, rows["time"].min(), rows["time"].max() + DAY,
                                                          sites=sorted(rows["site"].unique()))
        new = score_days(rows, forecasts, rules)
        new.index = rows.index
        parts.append(new)
        db.write_detector_scores(store, _cache_rows(new, forecasts, key, clock), sites, window_start)
    elif sites:
        db.write_detector_scores(store, pd.DataFrame(), sites, window_start)
    if ok.any():
        reuse = frame.loc[ok].copy()
        got = m.loc[ok]
        for c in VERDICT:
            reuse[c] = got[c].to_numpy()
        for c in ("has_forecast", "outside", "severe"):
            reuse[c] = reuse[c].astype(bool)
        reuse["direction"] = np.sign(reuse["vwc"] - reuse["q50"]).fillna(0).astype(int)
        parts.append(reuse)
    if (~judged).any():  # no fresh day: scored without forecasts, as the detect step always did
        rest = frame.loc[~judged]
        new = score_days(rest, pd.DataFrame(), rules)
        new.index = rest.index
        parts.append(new)
    out = pd.concat(parts).sort_index() if parts else score_days(frame, pd.DataFrame(), rules)
    out.attrs["rescored"] = int(todo.sum())  # days scored from the forecasts this run (the rest: cached)
    return out


def _still_latest(store: Store, m: pd.DataFrame, ok: np.ndarray, sites: list[str]) -> np.ndarray:
    """Of the cached rows ``ok`` marks, those whose forecast run is still the one ``latest_before`` picks.

    A run that outranks it (issued later before the day; finished later, or a greater id, on a tie —
    ``store.forecasts.forecasts_issued_before``'s order) and holds a forecast for the day can only be one that
    was not complete and visible when the day was scored: finished after ``scored_at`` less ``SLACK``. Those
    few runs are looked up; a run judged by that is no longer complete re-scores its days too."""
    rows = m.loc[ok, ["time", "site", "depth_cm", "run_id", "scored_at"]]
    used = sorted({str(r) for r in rows["run_id"].dropna().unique()})
    runs = db.forecast_runs_since(store, rows["scored_at"].min() - SLACK, used)
    info = runs.set_index("run_id")
    recent = runs.loc[(runs["status"] == "complete") & (runs["finished_at"] > rows["scored_at"].min() - SLACK)]
    keep = pd.Series(True, index=rows.index)
    wanted: dict[tuple, list[str]] = {}
    for (day, run, at), idx in rows.groupby(["time", "run_id", "scored_at"], dropna=False).groups.items():
        has = isinstance(run, str)
        if has and (run not in info.index or info.loc[run, "status"] != "complete"):
            keep[idx] = False
            continue
        c = recent.loc[(recent["finished_at"] > at - SLACK) & (recent["issue_time"] < day)]
        if has:
            me = info.loc[run]
            tie = (c["finished_at"] == me["finished_at"]) & (c["run_id"] > run)
            later = (c["finished_at"] > me["finished_at"]) | tie
            rank = (c["issue_time"] > me["issue_time"]) | ((c["issue_time"] == me["issue_time"]) & later)
            c = c.loc[rank & (c["run_id"] != run)]
        if len(c):
            wanted[(day, run if has else None, at)] = c["run_id"].tolist()
    if wanted:
        hits = db.forecasts_of_runs(store, sorted({r for v in wanted.values() for r in v}),
                                    sorted({k[0] for k in wanted}), sites)
        got = {(t, s, d, r) for t, s, d, r in zip(hits["valid_time"], hits["site"], hits["depth_cm"], hits["run_id"],
                                                   strict=True)}
        for i, t, s, d, run, at in zip(rows.index, rows["time"], rows["site"], rows["depth_cm"], rows["run_id"],
                                       rows["scored_at"], strict=True):
            cands = wanted.get((t, run if isinstance(run, str) else None, at))
            if cands and any((t, s, float(d), r) in got for r in cands):
                keep[i] = False
    out = np.array(ok, copy=True)
    out[np.flatnonzero(ok)] = keep.to_numpy()
    return out


def _cache_rows(scored: pd.DataFrame, forecasts: pd.DataFrame, key: str, clock: pd.Timestamp) -> pd.DataFrame:
    """The cache rows of freshly scored days: the verdict, what it was computed from, and when."""
    out = scored[[*KEY, "vwc", *VERDICT]].copy()
    fc = latest_before(forecasts)
    if len(fc) and "run_id" in fc:
        runs = fc[["site", "depth_cm", "valid_time", "run_id"]].rename(columns={"valid_time": "time"})
        out = out.merge(runs, on=["site", "depth_cm", "time"], how="left")
        out["run_id"] = out["run_id"].where(out["has_forecast"].astype(bool), None)
    else:
        out["run_id"] = None
    out["rules"], out["scored_at"] = key, clock
    out["digest"] = row_digests(out)
    return out


def _us(times: pd.Series) -> np.ndarray:
    """Epoch microseconds, whatever the column's unit."""
    return pd.to_datetime(times, utc=True).dt.as_unit("ns").astype("int64").to_numpy() // 1000


def row_digests(rows: pd.DataFrame) -> np.ndarray:
    """Per cache row: a digest of its key, what it was computed from and its verdict (hex text)."""
    canon = pd.DataFrame({
        "time": _us(rows["time"]),
        "site": rows["site"].astype(str).to_numpy(), "depth_cm": rows["depth_cm"].astype(float).to_numpy(),
        "sensor": rows["sensor"].astype(str).to_numpy(), "vwc": rows["vwc"].astype(float).to_numpy(),
        "run_id": rows["run_id"].where(rows["run_id"].notna(), "").astype(str).to_numpy(),
        "rules": rows["rules"].astype(str).to_numpy(), "q50": rows["q50"].astype(float).to_numpy(),
        "pit": rows["pit"].astype(float).to_numpy(),
        "flags": (rows["has_forecast"].astype(bool).astype(int) * 4 + rows["outside"].astype(bool).astype(int) * 2
                  + rows["severe"].astype(bool).astype(int)).to_numpy(),
        "at": _us(rows["scored_at"])})
    h = pd.util.hash_pandas_object(canon, index=False).to_numpy(dtype=np.uint64)
    return np.array([f"{x:016x}" for x in h], dtype=object)
