"""The detector's state per series: the daily values its rules read, kept in the store so a run (or a shard)
reads only the raw readings that changed since the last run — the new day, and any late or corrected reading.

Why: the replicate consensus learns offsets, spreads and CUSUM sums over a trailing window of days
(``Rules.consensus_days``), and the lifecycle counts runs of out and clear days over it; re-deriving that
window from hourly readings made a one-day run cost as much as a 30-day one. The rules restart from the
window's first day on every run by design (``smmdn.alerts.consensus``: a window that starts inside a past
fault must not learn the faulty level), so what they need carried over is the window's daily values, not
their running sums: with those cached, every rule decides exactly what it decided from the raw readings.

The raw readings stay the truth, and the cache can always be rebuilt from them:
- a daily row is a pure function of the day's readings, the sensor's active periods and the site's clock
  offset, so a rerun of the same day writes the same rows (idempotent) and a replay from scratch gives the
  same rows as the day-by-day path;
- per site, ``detector_sites`` records the ingest clock folded in (readings written or changed after it are
  re-read: their days are recomputed), a fingerprint of the periods and offset (a replacement or a new
  offset rebuilds the site), the first day covered (a longer window rebuilds it) and the count and digest of
  its rows (a missing, extra or altered row rebuilds it). Cold start = no state = a rebuild.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from smmdn.alerts.detect import SERIES, daily_readings, within_periods
from smmdn.store import detector_state as db
from smmdn.timeutil import DAY

if TYPE_CHECKING:
    from smmdn.store import Store

log = logging.getLogger(__name__)

# Readings are stamped with the writer's clock when their write starts, but become visible when it commits:
# re-read this much before the clock folded in, so a write that was in flight during a run is not missed
# (assumes no single observation write takes longer than this between stamping and commit).
SLACK = timedelta(minutes=5)
VALUES = [c for c in db.DAY_COLUMNS if c not in ("time", *SERIES)]


def fingerprint(site: str, periods: pd.DataFrame | None, offsets: dict[str, float]) -> str:
    """What a site's daily rows depend on besides its readings: its sensors' active periods and its offset."""
    return fingerprints([site], periods, offsets)[site]


def fingerprints(sites: Sequence[str], periods: pd.DataFrame | None, offsets: dict[str, float]) -> dict[str, str]:
    """``fingerprint`` of every site of ``sites`` (the periods sorted and grouped once)."""
    lines: dict[str, list[str]] = {s: [f"offset={offsets.get(s, 0.0)!r}"] for s in sites}
    if periods is not None and not periods.empty:
        p = periods.assign(site=periods["site"].astype(str))
        p = p.loc[p["site"].isin(lines)].sort_values(["site", "depth_cm", "sensor"], kind="stable")
        for site, depth, sensor, since, until in zip(p["site"], p["depth_cm"], p["sensor"], p["active_from"],
                                                    p["active_to"], strict=True):
            lines[site].append(f"{float(depth)!r}|{sensor}|{since}|{until}")
    return {s: hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32] for s, parts in lines.items()}


def digests(rows: pd.DataFrame) -> dict[str, tuple[int, str]]:
    """Per site: (row count, an order-free digest of its rows' keys and values)."""
    if rows.empty:
        return {}
    canon = pd.DataFrame({
        "time": rows["time"].astype("int64") // 1000, "site": rows["site"].astype(str),
        "depth_cm": rows["depth_cm"].astype(float), "sensor": rows["sensor"].astype(str),
        "last_reading": rows["last_reading"].astype("int64") // 1000})
    for c in ("vwc", "level", "span", "rough"):
        canon[c] = rows[c].astype(float).round(12)
    for c in db.COUNTS:
        canon[c] = rows[c].astype("int64")
    h = pd.util.hash_pandas_object(canon, index=False).to_numpy(dtype=np.uint64)
    out = {}
    for site, pos in canon.groupby("site").indices.items():
        with np.errstate(over="ignore"):
            total = int(h[pos].sum(dtype=np.uint64))
        out[str(site)] = (len(pos), f"{total:016x}")
    return out


def _as_day_rows(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame[db.DAY_COLUMNS].copy()
    for c in ("time", "last_reading"):
        frame[c] = pd.to_datetime(frame[c], utc=True).dt.as_unit("ns")
    for c in db.COUNTS:
        frame[c] = frame[c].astype("int64")
    for c in ("depth_cm", "vwc", "level", "span", "rough"):
        frame[c] = frame[c].astype(float)
    return frame


def _from_raw(store: Store, sites: Sequence[str], start: pd.Timestamp, end: pd.Timestamp,
              offsets: dict[str, float], periods: pd.DataFrame | None) -> pd.DataFrame:
    """Daily rows of ``sites`` for local days in [start, end) from their raw readings."""
    if not sites:
        return _as_day_rows(daily_readings(pd.DataFrame(), offsets))
    raw = store.read_observations(sites=list(sites), start=start - DAY, end=end + DAY)
    days = daily_readings(within_periods(raw, periods), offsets)
    if days.empty:
        return _as_day_rows(days)
    return _as_day_rows(days.loc[(days["time"] >= start) & (days["time"] < end)])


def daily_context(store: Store, start: pd.Timestamp, now: pd.Timestamp, offsets: dict[str, float],
                  periods: pd.DataFrame | None, sites: Sequence[str] | None = None, *,
                  prune: bool = True) -> pd.DataFrame:
    """Daily rows (``alerts.detect.daily_readings``' columns) of every series of ``sites`` (None: every site)
    for local days from ``start`` to ``now``, exactly as computed from the raw readings, reading only the raw
    readings changed since the last run; the cache is brought up to date and (``prune``: detection, whose
    window is the longest) pruned to start at ``start``. Verification reads with ``prune=False``."""
    start = pd.Timestamp(start)
    end = now.floor("D") + 2 * DAY
    scope = sorted(map(str, sites)) if sites is not None else sorted(map(str, offsets))
    clock = db.clock(store)
    cached = db.read_detector_days(store, scope)
    states = db.read_detector_sites(store, scope).set_index("site") if scope else pd.DataFrame()
    have = digests(cached)
    prints = fingerprints(scope, periods, offsets)
    rebuild, keep = [], []
    for site in scope:
        st = states.loc[site] if site in states.index else None
        ok = (st is not None and st["fingerprint"] == prints[site] and pd.Timestamp(st["first_day"]) <= start
              and have.get(site, (0, f"{0:016x}")) == (int(st["row_count"]), str(st["digest"])))
        (keep if ok else rebuild).append(site)
    if rebuild and len(rebuild) < len(scope):
        log.info("detector state: rebuilding %d site(s) from raw readings (no, stale or damaged state): %s",
                 len(rebuild), ", ".join(rebuild[:10]))
    # every cached day must stay current, also those before ``start`` that are kept (``prune=False``)
    cover = pd.Series({s: start if prune else min(start, pd.Timestamp(states.loc[s, "first_day"])) for s in keep},
                      dtype=object)
    # the writes since the last clocks' bands, read before any reading is (see ``_since``)
    lowest = min([start, *cover.tolist()]) - DAY
    opened = [clock - SLACK] + ([_band_since(states.loc[s]) for s in keep] if keep else [])
    stamps = db.writes_since(store, min(opened), lowest, scope)
    fresh = [_from_raw(store, rebuild, start, end, offsets, periods)]
    rows = cached.loc[cached["site"].isin(keep)]
    if keep:
        # days after the covered ones (the new day, or days a replay or backfill already holds): from raw
        through = states.loc[keep, "through_day"].map(pd.Timestamp)
        for day, group in through.loc[through < end].groupby(through.loc[through < end]):
            fresh.append(_from_raw(store, sorted(group.index), day, end, offsets, periods))
        # covered days whose readings changed since (late, corrected): recomputed from raw
        since = _since(states.loc[keep], stamps)
        changed = stamps.loc[stamps["site"].isin(keep)]
        changed = changed.loc[changed["updated_at"] > changed["site"].map(since)]
        if not changed.empty:
            changed = changed.groupby(SERIES, as_index=False).agg(
                first=("first", "min"), last=("last", "max"), updated_at=("updated_at", "max"))
            touched = _touched(changed, offsets, cover, through)
            recomputed = _recompute(store, touched, offsets, periods)
            key = ["time", *SERIES]
            gone = rows[key].merge(touched.rename(columns={"day": "time"}).assign(_t=True), on=key, how="left")
            rows = rows.loc[~gone["_t"].eq(True).to_numpy()]
            fresh.append(recomputed)
    new = pd.concat([f for f in fresh if len(f)], ignore_index=True) if any(len(f) for f in fresh) else None
    old = rows.loc[rows["time"] < start]
    rows = rows.loc[rows["time"] >= start]
    kept_before = old.iloc[:0] if prune else old
    first = {s: start for s in scope}
    if not prune:  # rows before ``start`` stay cached, and so does the day they start from
        old = old.iloc[:0]
        for s in keep:
            first[s] = min(start, pd.Timestamp(states.loc[s, "first_day"]))
    pieces = [f for f in (rows, new) if f is not None and len(f)]
    out = _as_day_rows(pd.concat(pieces, ignore_index=True)) if len(pieces) > 1 else (
        _as_day_rows(pieces[0]) if pieces else rows)
    final = digests(pd.concat([f for f in (out, kept_before) if len(f)], ignore_index=True)
                    if len(kept_before) else out)
    upto = {s: end for s in scope} | ({s: max(end, pd.Timestamp(states.loc[s, "through_day"])) for s in keep}
                                      if keep else {})
    band = band_stamps(stamps.loc[(stamps["updated_at"] > clock - SLACK) & (stamps["updated_at"] <= clock)])
    record = pd.DataFrame([{"site": s, "built_through": clock, "first_day": first[s], "through_day": upto[s],
                            "fingerprint": prints[s],
                            "row_count": final.get(s, (0, ""))[0], "digest": final.get(s, (0, f"{0:016x}"))[1],
                            "band_since": clock - SLACK, "band": ",".join(map(str, sorted(band.get(s, ()))))}
                           for s in scope])
    cut = {s: start for s in set(old["site"])} if len(old) else {}
    db.write_detector_state(store, new if new is not None else out.iloc[:0], record, cut, rebuild)
    out = out.loc[out["time"] >= start]
    return out.sort_values(["time", *SERIES], kind="stable").reset_index(drop=True)


def band_stamps(stamps: pd.DataFrame) -> dict[str, set[int]]:
    """Per site: the write stamps (epoch microseconds) among ``store.detector_state.writes_since`` rows."""
    if stamps.empty:
        return {}
    us = stamps["updated_at"].astype("int64") // 1000
    return {str(site): set(map(int, grp)) for site, grp in us.groupby(stamps["site"].to_numpy())}


def _band_since(state: pd.Series) -> pd.Timestamp:
    """Where the band of a site's last clock starts (a state from before revision 0011: the slack)."""
    since = state.get("band_since")
    return pd.Timestamp(since) if since is not None and not pd.isna(since) else (
        pd.Timestamp(state["built_through"]) - SLACK)


def _since(states: pd.DataFrame, stamps: pd.DataFrame) -> pd.Series:
    """Per kept site (``states``, indexed by site): the write stamp after which its readings count as changed.

    Its last clock, when every write now stamped in that clock's band was already seen then (a write
    carries one stamp and commits at once: one still in flight then shows up now as a stamp not seen);
    else the band's start (the band is re-read, as without a record)."""
    clock = pd.to_datetime(states["built_through"], utc=True)
    since = pd.Series([_band_since(r) for _, r in states.iterrows()], index=states.index)
    since = pd.to_datetime(since, utc=True)
    lo, hi = stamps["site"].map(since), stamps["site"].map(clock)
    now = band_stamps(stamps.loc[(stamps["updated_at"] > lo) & (stamps["updated_at"] <= hi)])
    out = since.copy()
    for s, seen in states["band"].items():
        if isinstance(seen, str) and now.get(str(s), set()) <= {int(x) for x in seen.split(",") if x}:
            out[s] = clock[s]
    return out


def _touched(changed: pd.DataFrame, offsets: dict[str, float], cover: pd.Series, through: pd.Series) -> pd.DataFrame:
    """(series, local day) pairs inside each site's covered days [cover, through) that a changed reading falls
    in: every day from the series' first to its last changed reading."""
    shift = pd.to_timedelta(changed["site"].map(offsets).fillna(0.0).to_numpy(), unit="h")
    lo, hi = (changed["first"] + shift).dt.floor("D"), (changed["last"] + shift).dt.floor("D")
    first, last = pd.to_datetime(changed["site"].map(cover), utc=True), pd.to_datetime(
        changed["site"].map(through), utc=True) - DAY
    lo, hi = lo.where(lo >= first, first), hi.where(hi <= last, last)
    out = []
    for r, a, b in zip(changed[SERIES].itertuples(index=False), lo, hi, strict=True):
        for day in pd.date_range(a, b, freq="D"):
            out.append((r.site, r.depth_cm, r.sensor, day))
    frame = pd.DataFrame(out, columns=[*SERIES, "day"])
    frame["day"] = pd.to_datetime(frame["day"], utc=True).dt.as_unit("ns")
    return frame


def _recompute(store: Store, touched: pd.DataFrame, offsets: dict[str, float],
               periods: pd.DataFrame | None) -> pd.DataFrame:
    """Daily rows of the touched (series, day) pairs from their raw readings (one read per touched day; one
    read over their span when many days are touched)."""
    if touched.empty:
        return _as_day_rows(daily_readings(pd.DataFrame(), offsets))
    days = sorted(touched["day"].unique())
    spans = [(d, d + DAY) for d in days] if len(days) <= 3 else [(days[0], days[-1] + DAY)]
    parts = []
    for lo, hi in spans:
        sites = sorted(touched.loc[(touched["day"] >= lo) & (touched["day"] < hi), "site"].unique())
        parts.append(_from_raw(store, sites, lo, hi, offsets, periods))
    got = pd.concat(parts, ignore_index=True)
    key = ["time", *SERIES]
    hit = got[key].merge(touched.rename(columns={"day": "time"}).assign(_t=True), on=key, how="left")
    return got.loc[hit["_t"].eq(True).to_numpy()].drop_duplicates(key).reset_index(drop=True)
