"""What one daily cycle feeds the model: daily means of trusted observations, one forcing source, freshness.

The cycle's other decisions live beside this module: which day a run is for (``smmdn.cycle.day``) and
which kind of training a day gets (``smmdn.cycle.plan``).

Forcing consistency: the model is trained and run on **Open-Meteo only** (``source="open-meteo"``):
past days from the historical-forecast/archive API (kind ``archive``), future days from the forecast
API (kind ``forecast``). Station-observed weather (e.g. USCRN precipitation) is stored but never mixed
in, so training inputs and forecast inputs come from the same product and carry the same variables
(``check_forcing_consistency`` refuses a forecast whose variables differ from the model's).

Forcing missing for the forecast window (upstream down, or a variable absent): the run is still issued,
with the gaps filled from climatology (``fill_forcing``) and ``stale_forcing=True`` on the run, the
reason in ``input_freshness`` and a warning for operators. Never silently.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from smmdn.config import Settings
from smmdn.cycle.day import CycleDay
from smmdn.errors import InputError
from smmdn.schema import DAILY_FORCING, OBSERVATION_COLUMNS, UNTRUSTED_FLAGS
from smmdn.store import alerts as alerts_db
from smmdn.store.sites import site_offsets
from smmdn.timeutil import DAY

if TYPE_CHECKING:
    from smmdn.store import Store

log = logging.getLogger(__name__)

FORCING_SOURCE = "open-meteo"
CLIMATOLOGY_WINDOW_DAYS = 15  # +- days of year around the target day when a year of history exists
RECENT_WINDOW_DAYS = 30  # otherwise: mean of the last 30 days known
MAX_FORECAST_AGE = pd.Timedelta(hours=12)  # fetched by the same cycle is ~0 h old; yesterday's is stale


# ---------------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------------
@dataclass
class CycleInputs:
    """What one cycle feeds the model, plus what an operator needs to judge it."""

    observations: pd.DataFrame  # daily: time, site, depth_cm, sensor, vwc
    forcing: pd.DataFrame  # daily: time, site, variables (+ forcing_kind)
    sites: pd.DataFrame | None
    freshness: dict[str, Any] = field(default_factory=dict)
    stale_forcing: bool = False


def model_sites(store: Store) -> pd.DataFrame | None:
    """Static site attributes the model uses (numeric, complete columns only): coordinates, elevation and the
    registry's numeric ``attributes`` (ISMN: soil fractions, saturation). Text attributes (land cover,
    climate class) stay text: the network takes numbers only and does not encode them."""
    sites = store.read_sites()
    if sites.empty:
        return None
    frame = sites[["site", "latitude", "longitude", "elevation_m"]].copy()
    if "attributes" in sites:
        static = pd.DataFrame([
            {k: float(v) for k, v in ((a or {}).get("static") or {}).items()
             if isinstance(v, int | float) and not isinstance(v, bool)}
            for a in sites["attributes"]], index=sites.index)
        frame = pd.concat([frame, static.drop(columns=[c for c in static if c in frame])], axis=1)
    frame = frame.dropna(axis=1, how="any")
    return frame if len(frame.columns) > 1 else None


def _daily_rows(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return frame
    return frame.loc[frame["time"] == frame["time"].dt.normalize()]


FAULT_KINDS = ("sensor_fault", "flatline")
PERIOD_COLUMNS = ["site", "depth_cm", "sensor", "since", "until"]


def faulty_sensors(store: Store) -> pd.DataFrame:
    """Periods of sensors under a fault alert: ``since`` the day the fault began, ``until`` the day after its
    last faulty day (NaT while the alert is open or acknowledged).

    Why: a faulty probe's readings would teach the model its fault and, through the cluster mean that steers
    the forecast's observed state, drag the forecast onto it so its healthy siblings look wrong. The alert
    is the record; resolving it (operator, replacement, or agreeing with its siblings again) re-admits the
    sensor's new readings, while the faulty period itself stays out of training (verification leaves the
    same periods out, ``smmdn.verify.verification``).
    """
    found = alerts_db.read_alerts(store, kinds=list(FAULT_KINDS))
    if found.empty:
        return pd.DataFrame(columns=PERIOD_COLUMNS)
    found = found.loc[(found["sensor"] != "*") & found["status"].isin([*alerts_db.ACTIVE, "resolved"])]
    active = found["status"].isin(alerts_db.ACTIVE)
    until = pd.to_datetime(found["window_end"], utc=True).dt.floor("D") + DAY
    out = pd.DataFrame({"site": found["site"].astype(str), "depth_cm": found["depth_cm"].astype(float),
                        "sensor": found["sensor"].astype(str),
                        "since": pd.to_datetime(found["window_start"], utc=True).dt.floor("D"),
                        "until": until.where(~active, pd.NaT)})
    return out.sort_values([*PERIOD_COLUMNS[:4]]).reset_index(drop=True)[PERIOD_COLUMNS]


def drop_faulty(obs: pd.DataFrame, faulty: pd.DataFrame) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Daily observations without the readings of faulty sensors inside their fault periods; and what was
    left out, per period (recorded with the cycle's inputs and the model version trained on them)."""
    if obs.empty or faulty.empty:
        return obs, []
    site, depth, sensor = obs["site"].astype(str), obs["depth_cm"].astype(float), obs["sensor"].astype(str)
    times = pd.to_datetime(obs["time"], utc=True)
    drop = np.zeros(len(obs), dtype=bool)
    excluded = []
    for r in faulty.itertuples(index=False):
        open_ = pd.isna(r.until)
        hit = ((site == r.site) & (depth == float(r.depth_cm)) & (sensor == r.sensor) & (times >= r.since)
               & (open_ | (times < (r.until if not open_ else r.since)))).to_numpy()
        drop |= hit
        if hit.any():
            excluded.append({"site": r.site, "depth_cm": float(r.depth_cm), "sensor": r.sensor,
                             "since": r.since.isoformat(), "until": None if open_ else r.until.isoformat(),
                             "rows": int(hit.sum())})
    if excluded:
        log.info("left out of the model's inputs: %s", ", ".join(
            f"{e['site']} {e['depth_cm']:g} cm {e['sensor']} {e['since'][:10]}..{(e['until'] or 'open')[:10]}"
            for e in excluded))
    return obs.loc[~drop], excluded


def runs_free(obs: pd.DataFrame, faulty: pd.DataFrame, at: pd.Timestamp) -> list[dict[str, Any]]:
    """Depths whose every sensor is excluded at ``at`` (an open fault period): no observed state is left,
    so the forecast there runs free from the forcing (said in the forecast run, never silently)."""
    if obs.empty or faulty.empty:
        return []
    open_ = faulty.loc[faulty["until"].isna() & (faulty["since"] <= at)]
    if open_.empty:
        return []
    sensors = obs.assign(site=obs["site"].astype(str), depth_cm=obs["depth_cm"].astype(float),
                         sensor=obs["sensor"].astype(str)).groupby(["site", "depth_cm"])["sensor"].agg(set)
    held = open_.groupby(["site", "depth_cm"]).agg(sensors=("sensor", set), since=("since", "max"))
    out = []
    for (site, depth), row in held.iterrows():
        known = sensors.get((site, depth))
        if known and known <= row["sensors"]:
            out.append({"site": site, "depth_cm": float(depth), "since": row["since"].isoformat(),
                        "sensors": sorted(known)})
    return out


def load_inputs(store: Store, settings: Settings, cycle: CycleDay, *, history_days: int, horizon: int | None = None,
                sites: list[str] | None = None) -> CycleInputs:
    """Observations and forcing as the model should see them on ``cycle``.

    Live runs read everything stored. Replays read observations as known at ``cycle.now`` (by
    ``ingested_at``) when the store was recording then; a period backfilled later is read as stored now
    (hindsight: later revisions), and flagged. Future forcing in a replay is the weather forecast issued
    by then when one was archived; otherwise the reanalysis (hindsight: perfect weather), flagged.
    """
    horizon = horizon or settings.forecast_horizon
    start = cycle.data_end - history_days * DAY
    offsets = site_offsets(store)
    window = {"sites": sites, "start": start - DAY, "end": cycle.data_end + DAY, "exclude_flags": UNTRUSTED_FLAGS}
    daily = store.read_daily_observations(offsets, **window)
    freshness: dict[str, Any] = {"issue_time": cycle.issue.isoformat(), "replay": cycle.replay}
    if cycle.replay and not daily.empty:
        if daily["first_ingested"].min() <= cycle.now:
            daily = store.read_daily_observations(offsets, as_of=cycle.now, **window)
            freshness["observations_as_of"] = cycle.now.isoformat()
        else:
            freshness["observations_hindsight"] = "backfilled after the day: read as stored now"
    obs = daily.loc[(daily["time"] >= start) & (daily["time"] < cycle.data_end), list(OBSERVATION_COLUMNS)]
    faulty = faulty_sensors(store)
    free = runs_free(obs, faulty, cycle.data_end - DAY)
    obs, excluded = drop_faulty(obs, faulty)
    if excluded:
        freshness["excluded_sensors"] = excluded
    if free:
        freshness["runs_free"] = free
        log.warning("no observed state (every sensor excluded), the forecast runs free at: %s", ", ".join(
            f"{f['site']} {f['depth_cm']:g} cm since {f['since'][:10]}" for f in free))
    obs = obs.reset_index(drop=True)
    freshness["observations_rows"] = len(obs)
    freshness["observations_latest"] = None if obs.empty else obs["time"].max().isoformat()

    past = _daily_rows(store.read_forcing(sites=sites, start=start - 400 * DAY, end=cycle.data_end,
                                          source=FORCING_SOURCE, variables=DAILY_FORCING))
    future_end = cycle.data_end + horizon * DAY
    future = _daily_rows(store.read_forcing(
        sites=sites, start=cycle.data_end, end=future_end, source=FORCING_SOURCE, kinds=["forecast"],
        variables=DAILY_FORCING, as_of=cycle.now if cycle.replay else None))
    if cycle.replay:
        archived = _daily_rows(store.read_forcing(sites=sites, start=cycle.data_end, end=future_end,
                                                  source=FORCING_SOURCE, kinds=["archive"],
                                                  variables=DAILY_FORCING))
        if not archived.empty:
            have = set(zip(future["site"].astype(str), future["time"], strict=True)) if not future.empty else set()
            add = archived.loc[[(str(s), t) not in have for s, t in zip(archived["site"], archived["time"],
                                                                          strict=True)]]
            if not add.empty:
                freshness["forcing_hindsight"] = f"{len(add)} future site-days from the reanalysis (no forecast)"
                future = pd.concat([future, add], ignore_index=True)
    forcing = pd.concat([f for f in (past, future) if not f.empty], ignore_index=True) if not (
        past.empty and future.empty) else past
    if not cycle.replay:
        issued = store.get_watermark(FORCING_SOURCE, "forecast:daily")
        freshness["forecast_issued"] = None if issued is None else issued.isoformat()
        freshness["forecast_age_h"] = None if issued is None else round((cycle.now - issued) / pd.Timedelta(hours=1), 1)
    forcing_sites = sorted(set(obs["site"].astype(str)))
    return CycleInputs(obs, forcing, model_sites(store), freshness | {"forcing_sites": len(forcing_sites)})


# ---------------------------------------------------------------------------------------------------
# forcing freshness
# ---------------------------------------------------------------------------------------------------
def forcing_variables(forcing: pd.DataFrame) -> list[str]:
    return [c for c in forcing.columns if c in DAILY_FORCING]


def check_forcing_consistency(model_variables: list[str], forcing: pd.DataFrame) -> None:
    """The forecast's forcing must carry every variable the model was trained on (same source)."""
    missing = [v for v in model_variables if v not in forcing.columns]
    if missing:
        raise InputError(
            f"forecast forcing lacks {', '.join(missing)}, which the model was trained on",
            where="forcing", column=", ".join(missing),
            fix="request the same Open-Meteo variables for the forecast and the archive APIs",
        )


def climatology(forcing: pd.DataFrame, site: str, when: pd.Timestamp, variables: list[str]) -> dict[str, float]:
    """Expected forcing at ``when``: same time of year +-15 days when a year is stored, else the last 30 days."""
    return _climatology(forcing.loc[forcing["site"].astype(str) == site], when, variables)


def _climatology(mine: pd.DataFrame, when: pd.Timestamp, variables: list[str]) -> dict[str, float]:
    """``climatology`` of one site's own forcing rows."""
    hist = mine.loc[mine["time"] < when]
    if hist.empty:
        return {}
    span = hist["time"].max() - hist["time"].min()
    if span >= pd.Timedelta(days=365):
        doy = (hist["time"].dt.dayofyear - when.dayofyear) % 366
        near = hist.loc[(doy <= CLIMATOLOGY_WINDOW_DAYS) | (doy >= 366 - CLIMATOLOGY_WINDOW_DAYS)]
        if not near.empty:
            hist = near
    else:
        hist = hist.loc[hist["time"] >= hist["time"].max() - RECENT_WINDOW_DAYS * DAY]
    return {v: float(hist[v].mean()) for v in variables if v in hist and hist[v].notna().any()}


def fill_forcing(forcing: pd.DataFrame, sites: list[str], issue: pd.Timestamp, horizon: int,
                 variables: list[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Fill missing (site, day, variable) cells of the forecast window from climatology.

    Returns the completed frame and a report: which site-days were filled, or which sites could not be
    (no forcing history at all: such sites cannot be forecast).

    Why vectorised: the gaps of every (site, day) of the window are found in one pass over the window's
    rows, and only sites with a gap are visited one by one (each reading its own rows, grouped once), so
    the cost grows with the network, not with its square.
    """
    days = [issue + i * DAY for i in range(1, horizon + 1)]
    frame = forcing.copy()
    for v in variables:
        if v not in frame:
            frame[v] = np.nan
    site_of = frame["site"].astype(str)
    in_window = frame["time"].isin(days)
    window = frame.loc[in_window, ["time", *variables]].assign(site=site_of[in_window])
    first = window.loc[~window.duplicated(["site", "time"], keep="first")].set_index(["site", "time"])
    grid = pd.MultiIndex.from_product([list(sites), days], names=["site", "time"])
    gaps = first[variables].reindex(grid).isna().to_numpy()  # (site-day, variable); a missing row: every one
    present = grid.isin(first.index)
    n_days = len(days)
    needy = [i for i in range(len(sites)) if gaps[i * n_days:(i + 1) * n_days].any()]
    rows_of = frame.index.to_series().groupby([site_of, frame["time"]]).agg(list) if needy else None
    own_rows = dict(tuple(forcing.groupby(forcing["site"].astype(str), sort=False))) if needy else {}
    filled: dict[str, int] = {}
    impossible: list[str] = []
    new_rows = []
    edits: dict[str, list[tuple[list, float]]] = {}
    kind_rows: list = []
    for i in needy:
        site = sites[i]
        clim: dict[str, float] | None = None
        for j, d in enumerate(days):
            gap = [v for v, g in zip(variables, gaps[i * n_days + j], strict=True) if g]
            if not gap:
                continue
            if clim is None:
                mine = own_rows.get(site)
                clim = {} if mine is None else _climatology(mine, issue + DAY, variables)
            if any(v not in clim for v in gap):
                impossible.append(site)
                break
            filled[site] = filled.get(site, 0) + 1
            if not present[i * n_days + j]:
                new_rows.append({"time": d, "site": site, **{v: clim[v] for v in variables},
                                 "forcing_kind": "climatology"})
            else:
                idx = rows_of[(site, d)]
                for v in gap:
                    edits.setdefault(v, []).append((idx, clim[v]))
                kind_rows.extend(idx)
    for v, changes in edits.items():
        labels = [r for idx, _ in changes for r in idx]
        values = [value for idx, value in changes for _ in idx]
        frame.loc[labels, v] = values
    if kind_rows and "forcing_kind" in frame:
        frame.loc[kind_rows, "forcing_kind"] = "climatology"
    if new_rows:
        add = pd.DataFrame(new_rows)
        add["time"] = pd.to_datetime(add["time"], utc=True)
        frame = pd.concat([frame, add], ignore_index=True)
    frame = frame.sort_values(["site", "time"]).reset_index(drop=True)
    report: dict[str, Any] = {}
    if filled:
        report["filled_site_days"] = filled
        report["fill_method"] = (f"climatology (+-{CLIMATOLOGY_WINDOW_DAYS} days of year, else mean of the last "
                                 f"{RECENT_WINDOW_DAYS} days)")
    if impossible:
        report["no_forcing_sites"] = sorted(set(impossible))
    return frame, report


def prepare_forecast_forcing(inputs: CycleInputs, cycle: CycleDay, horizon: int,
                             variables: list[str]) -> tuple[CycleInputs, list[str]]:
    """Decide freshness for the forecast window; fill gaps (stale) and drop sites with no forcing at all.

    Returns updated inputs and the sites that can be forecast.
    """
    sites = sorted(set(inputs.observations["site"].astype(str)))
    frame, report = fill_forcing(inputs.forcing, sites, cycle.issue, horizon, variables)
    freshness = dict(inputs.freshness)
    window = frame.loc[(frame["time"] > cycle.issue) & (frame["time"] <= cycle.issue + horizon * DAY)]
    if "forcing_kind" in window:
        freshness["forcing_kinds"] = {str(k): int(v) for k, v in window["forcing_kind"].value_counts().items()}
    age = freshness.get("forecast_age_h")
    if age is not None and age > MAX_FORECAST_AGE / pd.Timedelta(hours=1):
        limit = MAX_FORECAST_AGE / pd.Timedelta(hours=1)
        report["old_forecast"] = f"latest weather forecast issued {age} h before the run (limit {limit:g} h)"
    stale = bool(report)
    if stale:
        freshness["stale_forcing_reason"] = report
        log.warning("stale forcing for the %s forecast: %s", cycle.issue.date(), report)
    usable = [s for s in sites if s not in set(report.get("no_forcing_sites", []))]
    obs = inputs.observations.loc[inputs.observations["site"].astype(str).isin(usable)]
    return CycleInputs(obs, frame, inputs.sites, freshness, stale), usable


# ---------------------------------------------------------------------------------------------------
# validation status of a cycle's ingest
# ---------------------------------------------------------------------------------------------------
def last_validation_id(store: Store) -> int:
    runs = store.validation_runs()
    return 0 if runs.empty else int(runs["id"].max())


def validation_status(store: Store, after_id: int) -> dict[str, Any]:
    """Validation runs written by this cycle's ingest: counts, failures, where their Data Docs are."""
    runs = store.validation_runs()
    runs = runs.loc[runs["id"] > after_id] if not runs.empty else runs
    quarantine = store.list_quarantine()
    failed = runs.loc[~runs["success"].astype(bool)] if not runs.empty else runs
    docs = sorted({str(d) for d in runs["data_docs"].dropna()}) if not runs.empty else []
    status = "none" if runs.empty else ("passed" if failed.empty else "issues")
    return {
        "status": status,
        "runs": len(runs),
        "failed": sorted(failed["source"].astype(str)) if not failed.empty else [],
        "open_quarantine": len(quarantine),
        "data_docs": docs[:20],
    }
