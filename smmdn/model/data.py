"""From canonical frames to dense, scaled arrays the network trains on, and back.

Why dense ``(location, time)`` arrays: on 2 CPU cores a sequence-to-sequence formulation — long chunks
with a loss mask per step, warm-up steps excluded — costs one LSTM pass per chunk instead of one per
target day. A *location* is one (site, depth_cm); its replicate sensors are separate targets that share
the location's inputs and mixture, so the likelihood sums each replicate's observation per step.

Scaling (fitted on the training window and training locations only, saved with the model as JSON):
forcing and static attributes are standardised; targets are standardised per location with that
location's training-period mean and sd, and the predicted mixture is mapped back exactly (an affine map
of a Gaussian mixture is a Gaussian mixture). The location statistics (mean, sd, min, max) are also
static inputs, so one network-wide model knows each site's level and range. A location without enough
training observations (ungauged, ``--test-sites``) borrows the median statistics of gauged locations at
the nearest depth and is flagged through the ``has_stats`` input.

Missing forcing is never silently zero-filled: gaps are imputed per site (``smmdn.model.impute``: short
gaps interpolated, long gaps and precipitation from the site's seasonal climatology) and every variable
gets a missing-indicator channel (1 where the value was imputed); the counts are in ``Panel.report``.
Forcing-derived inputs (``smmdn.model.features``: antecedent precipitation, PET proxy, water-balance
EMAs) are appended to the forcing as ``derived:*`` variables; they never read observations.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from smmdn.errors import InputError
from smmdn.model.features import derive, derived_group, is_derived
from smmdn.model.impute import fill_gaps
from smmdn.schema import FORCING_KEY, is_daily, normalise_observations, numeric_columns, parse_times

log = logging.getLogger(__name__)
STAT_NAMES = ("mean", "sd", "min", "max")


@dataclass
class Panel:
    """Dense physical-unit arrays over locations x time (NaN = missing)."""

    times: pd.DatetimeIndex
    daily: bool
    locations: pd.DataFrame  # columns site, depth_cm (one row per location)
    sensors: list[list[str]]  # replicate labels per location
    forcing: np.ndarray  # (L, T, F) gaps imputed (model.impute); NaN only where a site lacks a variable
    forcing_missing: np.ndarray  # (L, T, F) 1 where the raw forcing was missing
    forcing_names: list[str]
    static: np.ndarray  # (L, S) raw site attributes (depth first)
    static_names: list[str]
    targets: np.ndarray  # (L, T, R) vwc per replicate
    report: dict = field(default_factory=dict)

    @property
    def keys(self) -> list[str]:
        return location_keys(self.locations)

    def index_of(self, time: pd.Timestamp) -> int:
        """Index of the first step at or after ``time``."""
        return int(self.times.searchsorted(time))


def location_keys(locations: pd.DataFrame) -> list[str]:
    return [f"{s}|{float(d):g}" for s, d in zip(locations["site"], locations["depth_cm"], strict=True)]


def read_forcing(frame: pd.DataFrame, where: str = "forcing") -> pd.DataFrame:
    """Check and coerce a forcing frame (time, site, numeric variables)."""
    missing = [c for c in FORCING_KEY if c not in frame.columns]
    if missing:
        raise InputError(
            f"missing column(s) {', '.join(missing)}", where=where, column=", ".join(missing),
            fix="forcing needs columns time, site, then numeric variables",
        )
    out = frame.copy()
    out["time"] = parse_times(out["time"], where)
    out["site"] = out["site"].astype("string")
    variables = numeric_columns(out, FORCING_KEY)
    if not variables:
        raise InputError(
            "no numeric forcing variables", where=where, column=", ".join(map(str, out.columns)),
            fix="add numeric columns such as precipitation_sum, temperature_2m_mean",
        )
    dup = out.duplicated(["time", "site"], keep="first")
    if dup.any():
        raise InputError(
            "duplicate (time, site) rows", where=where, column="time, site", rows=list(out.index[dup][:20]),
            fix="give one forcing row per site and time",
        )
    return out[["time", "site", *variables]]


def read_sites(frame: pd.DataFrame | None, where: str = "sites") -> pd.DataFrame | None:
    if frame is None:
        return None
    if "site" not in frame.columns:
        raise InputError("missing column site", where=where, column="site", fix="sites needs a site column")
    out = frame.copy()
    out["site"] = out["site"].astype("string")
    keep = ["site", *numeric_columns(out, ("site",))]
    return out[keep].drop_duplicates("site")


def _step(times: pd.Series, daily: bool) -> pd.Timedelta:
    if daily:
        return pd.Timedelta(days=1)
    diffs = pd.Series(np.sort(times.unique())).diff().dropna()
    if diffs.empty:
        return pd.Timedelta(hours=1)
    return pd.Timedelta(diffs.median())


def build_panel(
    observations: pd.DataFrame,
    forcing: pd.DataFrame,
    sites: pd.DataFrame | None = None,
    *,
    end: pd.Timestamp | None = None,
    names: tuple[str, str, str] = ("observations", "forcing", "sites"),
) -> Panel:
    """Align observations, forcing and site attributes on one regular time grid (the forcing's span)."""
    obs = normalise_observations(observations, names[0])
    frc = read_forcing(forcing, names[1])
    sts = read_sites(sites, names[2])
    daily_f = is_daily(frc["time"])
    if len(obs) and daily_f != is_daily(obs["time"]):
        raise InputError(
            "observations and forcing have different time resolutions (one daily dates, one sub-daily)",
            where=f"{names[0]}, {names[1]}", column="time", fix="give both daily (YYYY-MM-DD) or both hourly",
        )
    no_forcing = sorted(set(obs["site"].dropna()) - set(frc["site"].dropna()))
    if no_forcing:
        rows = list(obs.index[obs["site"].isin(no_forcing)][:20])
        raise InputError(
            f"site(s) without forcing: {', '.join(no_forcing[:20])}", where=names[0], column="site", rows=rows,
            fix=f"add forcing rows for these sites to {names[1]} or drop their observations",
        )
    step = _step(frc["time"], daily_f)
    t_end = frc["time"].max() if end is None else end
    times = pd.date_range(frc["time"].min(), t_end, freq=step)
    locs = (
        obs[["site", "depth_cm"]].drop_duplicates().sort_values(["site", "depth_cm"]).reset_index(drop=True)
    )
    keys = location_keys(locs)
    variables = [c for c in frc.columns if c not in FORCING_KEY]
    n_l, n_t, n_f = len(locs), len(times), len(variables)

    site_forcing: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    missing_counts = dict.fromkeys(variables, 0)
    for site, grp in frc.groupby("site", sort=False):
        g = grp.drop_duplicates("time").set_index("time")[variables].reindex(times)
        miss = g.isna().to_numpy()
        for i, v in enumerate(variables):
            missing_counts[v] += int(miss[:, i].sum())
        site_forcing[str(site)] = (fill_gaps(g, step).to_numpy(np.float64), miss.astype(np.float32))
    f_arr = np.full((n_l, n_t, n_f), np.nan)
    m_arr = np.ones((n_l, n_t, n_f), np.float32)
    for i, site in enumerate(locs["site"]):
        if str(site) in site_forcing:
            f_arr[i], m_arr[i] = site_forcing[str(site)]

    sensors: list[list[str]] = []
    obs = obs.assign(_key=location_keys(obs))
    key_index = {k: i for i, k in enumerate(keys)}
    grouped = {k: sorted(g["sensor"].astype(str).unique()) for k, g in obs.groupby("_key", sort=False)}
    sensors = [grouped.get(k, []) for k in keys]
    n_r = max((len(s) for s in sensors), default=1)
    y = np.full((n_l, n_t, n_r), np.nan)
    t_idx = times.get_indexer(obs["time"])
    outside = t_idx < 0
    l_idx = obs["_key"].map(key_index).to_numpy()
    r_idx = np.array([sensors[li].index(s) for li, s in zip(l_idx, obs["sensor"].astype(str), strict=True)])
    ok = ~outside & obs["vwc"].notna().to_numpy()
    y[l_idx[ok], t_idx[ok], r_idx[ok]] = obs["vwc"].to_numpy()[ok]

    latitude = _latitude(sts, locs)
    derived_names, derived = derive(variables, f_arr, times, latitude, pd.Timedelta(days=1) / step)
    if derived_names:  # forcing-only features; never missing (their sources are gap-filled)
        f_arr = np.concatenate([f_arr, derived], axis=-1)
        m_arr = np.concatenate([m_arr, np.zeros(derived.shape, np.float32)], axis=-1)

    static_names = ["depth_cm"]
    static = [locs["depth_cm"].to_numpy(np.float64)[:, None]]
    if sts is not None:
        attrs = [c for c in sts.columns if c != "site" and c != "depth_cm"]
        table = sts.set_index("site").reindex(locs["site"])[attrs].to_numpy(np.float64)
        static.append(table)
        static_names += attrs
    report = {
        "forcing_missing_imputed": missing_counts,
        "forcing_imputation": "short gaps interpolated; long gaps and precipitation from the site's monthly "
                              "climatology; missing-indicator channel per variable",
        "observations_outside_forcing_span": int(outside.sum()),
        "steps": n_t,
        "locations": n_l,
    }
    if sum(missing_counts.values()):
        log.info("forcing gaps imputed (indicator channels added): %s", missing_counts)
    if outside.any():
        log.warning("%d observation rows lie outside the forcing's time span and are ignored", int(outside.sum()))
    return Panel(
        times=times, daily=daily_f, locations=locs, sensors=sensors, forcing=f_arr, forcing_missing=m_arr,
        forcing_names=[*variables, *derived_names], static=np.concatenate(static, axis=1), static_names=static_names,
        targets=y,
        report=report,
    )


def _latitude(sites: pd.DataFrame | None, locations: pd.DataFrame) -> np.ndarray | None:
    """Latitude per location (degrees north) when the sites frame has one, for the PET proxy."""
    if sites is None:
        return None
    col = next((c for c in ("latitude", "lat") if c in sites.columns), None)
    if col is None:
        return None
    return sites.set_index("site").reindex(locations["site"])[col].to_numpy(np.float64)


def without_derived(panel: Panel, keep_groups: tuple[str, ...] | list[str] = ()) -> Panel:
    """The panel with the raw forcing variables and only the derived groups named (e.g. ``precip``)."""
    keep = [i for i, n in enumerate(panel.forcing_names) if not is_derived(n) or derived_group(n) in keep_groups]
    return replace(panel, forcing=panel.forcing[:, :, keep], forcing_missing=panel.forcing_missing[:, :, keep],
                   forcing_names=[panel.forcing_names[i] for i in keep])


# ----------------------------------------------------------------------------------------------------
# scalers
# ----------------------------------------------------------------------------------------------------
@dataclass
class Scalers:
    """Everything fitted on training data that inference needs; plain JSON so ``weights_only`` loads."""

    forcing_names: list[str]  # raw forcing variables the model needs (what callers must supply)
    forcing_mean: list[float]  # over forcing_names + derived_names
    forcing_std: list[float]
    static_names: list[str]
    static_mean: list[float]
    static_std: list[float]
    location_stats: dict[str, list[float]]  # key -> mean, sd, min, max (physical units)
    depth_fallback: dict[str, list[float]]  # depth -> median stats of gauged locations at that depth
    stats_mean: list[float]
    stats_std: list[float]
    location_index: dict[str, int]  # key -> embedding row (1-based; 0 = unknown)
    sd_floor: float
    derived_names: list[str] = field(default_factory=list)  # forcing-derived inputs (model.features)

    @property
    def inputs(self) -> list[str]:
        """Every forcing channel, in the order of ``forcing_mean``: raw variables, then derived ones."""
        return [*self.forcing_names, *self.derived_names]

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict) -> Scalers:
        return cls(**data)

    def stats_for(self, keys: list[str], depths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(L, 4) statistics and (L,) has_stats flags; unknown locations borrow the nearest depth's."""
        out = np.zeros((len(keys), len(STAT_NAMES)))
        has = np.zeros(len(keys))
        fb_depths = np.array([float(d) for d in self.depth_fallback]) if self.depth_fallback else np.zeros(0)
        fb_values = list(self.depth_fallback.values())
        for i, (k, d) in enumerate(zip(keys, depths, strict=True)):
            if k in self.location_stats:
                out[i], has[i] = self.location_stats[k], 1.0
            elif len(fb_depths):
                out[i] = fb_values[int(np.argmin(np.abs(fb_depths - float(d))))]
            else:
                out[i] = [0.25, 0.05, 0.1, 0.4]
        return out, has


def fit_scalers(
    panel: Panel, t_fit_end: int, train_locations: np.ndarray, *, min_obs: int = 30, sd_floor: float = 0.01
) -> Scalers:
    """Fit scalers on steps ``< t_fit_end`` of the training locations only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns -> defaults in _clean
        return _fit_scalers(panel, t_fit_end, train_locations, min_obs, sd_floor)


def _fit_scalers(panel: Panel, t_fit_end: int, train_locations: np.ndarray, min_obs: int, sd_floor: float) -> Scalers:
    keys = panel.keys
    raw = [n for n in panel.forcing_names if not is_derived(n)]
    derived = [n for n in panel.forcing_names if is_derived(n)]
    order = [panel.forcing_names.index(n) for n in (*raw, *derived)]
    f = panel.forcing[train_locations, :t_fit_end][..., order].reshape(-1, len(order))
    f_mean = np.nanmean(f, axis=0) if f.size else np.zeros(len(order))
    f_std = np.nanstd(f, axis=0) if f.size else np.ones(len(order))
    s = panel.static[train_locations]
    s_mean = np.nanmean(s, axis=0) if len(s) else np.zeros(s.shape[1])
    s_std = np.nanstd(s, axis=0) if len(s) else np.ones(s.shape[1])
    stats: dict[str, list[float]] = {}
    for li in train_locations:
        vals = panel.targets[li, :t_fit_end].ravel()
        vals = vals[~np.isnan(vals)]
        if len(vals) >= min_obs:
            stats[keys[li]] = [float(vals.mean()), float(max(vals.std(), sd_floor)), float(vals.min()),
                               float(vals.max())]
    by_depth: dict[str, list[list[float]]] = {}
    for li in train_locations:
        if keys[li] in stats:
            by_depth.setdefault(f"{float(panel.locations['depth_cm'].iloc[li]):g}", []).append(stats[keys[li]])
    fallback = {d: np.median(np.array(v), axis=0).tolist() for d, v in by_depth.items()}
    arr = np.array(list(stats.values())) if stats else np.array([[0.25, 0.05, 0.1, 0.4]])
    return Scalers(
        forcing_names=raw, derived_names=derived,
        forcing_mean=_clean(f_mean, 0.0), forcing_std=_clean(f_std, 1.0, positive=True),
        static_names=list(panel.static_names),
        static_mean=_clean(s_mean, 0.0), static_std=_clean(s_std, 1.0, positive=True),
        location_stats=stats, depth_fallback=fallback,
        stats_mean=arr.mean(axis=0).tolist(), stats_std=_clean(arr.std(axis=0), 1.0, positive=True),
        location_index={k: i + 1 for i, k in enumerate(sorted(stats))}, sd_floor=sd_floor,
    )


def _clean(a: np.ndarray, default: float, positive: bool = False) -> list[float]:
    a = np.where(np.isfinite(a), a, default)
    if positive:
        a = np.where(a > 1e-8, a, default)
    return [float(v) for v in a]


@dataclass
class Prepared:
    """Model-unit arrays of a panel under given scalers."""

    dynamic: np.ndarray  # (L, T, 2F) float32: standardised forcing (imputed gaps flagged) + indicators
    static: np.ndarray  # (L, S') float32: standardised attributes + location statistics + has_stats
    targets: np.ndarray  # (L, T, R) float32, standardised per location, NaN missing
    state: np.ndarray  # (L, T) float32: replicate-mean standardised obs lagged one step (NaN missing)
    loc: np.ndarray  # (L,) mean used for standardising (physical)
    scale: np.ndarray  # (L,) sd used for standardising (physical)
    location_index: np.ndarray  # (L,) embedding rows
    has_stats: np.ndarray  # (L,)


def prepare(panel: Panel, scalers: Scalers) -> Prepared:
    """Apply scalers; forcing variables the model was trained on must all be present."""
    missing = [v for v in scalers.inputs if v not in panel.forcing_names]
    if missing:
        raise InputError(
            f"forcing lacks variable(s) the model was trained on: {', '.join(missing)}", where="forcing",
            column=", ".join(missing), fix="provide the same forcing variables as in training",
        )
    idx = [panel.forcing_names.index(v) for v in scalers.inputs]
    f = (panel.forcing[:, :, idx] - np.array(scalers.forcing_mean)) / np.array(scalers.forcing_std)
    f = np.nan_to_num(f, nan=0.0)  # a variable a site never reports: network mean, flagged
    miss = panel.forcing_missing[:, :, idx]
    dynamic = np.concatenate([f, miss], axis=-1).astype(np.float32)

    s_idx = [panel.static_names.index(v) if v in panel.static_names else -1 for v in scalers.static_names]
    raw = np.stack([panel.static[:, i] if i >= 0 else np.full(len(panel.locations), np.nan) for i in s_idx], 1)
    st = np.nan_to_num((raw - np.array(scalers.static_mean)) / np.array(scalers.static_std), nan=0.0)
    keys = panel.keys
    stats, has = scalers.stats_for(keys, panel.locations["depth_cm"].to_numpy())
    st_stats = (stats - np.array(scalers.stats_mean)) / np.array(scalers.stats_std)
    static = np.concatenate([st, st_stats, has[:, None]], axis=1).astype(np.float32)

    loc, scale = stats[:, 0], np.maximum(stats[:, 1], scalers.sd_floor)
    targets = ((panel.targets - loc[:, None, None]) / scale[:, None, None]).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN steps stay NaN (no observation)
        mean_obs = np.nanmean(targets, axis=-1)
    state = np.full_like(mean_obs, np.nan)
    state[:, 1:] = mean_obs[:, :-1]
    index = np.array([scalers.location_index.get(k, 0) for k in keys], dtype=np.int64)
    return Prepared(dynamic, static, targets, state.astype(np.float32), loc, scale, index, has)


def sample_chunks(
    rng: np.random.Generator, locations: np.ndarray, t_lo: int, t_hi: int, seq_len: int, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random (location, start) chunks lying inside steps ``[t_lo, t_hi)``."""
    span = max(t_hi - t_lo - seq_len, 0)
    return rng.choice(locations, size=n), t_lo + rng.integers(0, span + 1, size=n)


def gather(array: np.ndarray, loc: np.ndarray, start: np.ndarray, length: int) -> np.ndarray:
    """Slices ``array[loc, start:start+length]`` stacked into (B, length, ...)."""
    steps = start[:, None] + np.arange(length)[None, :]
    return array[loc[:, None], steps]


def n_steps_per_day(panel: Panel) -> float:
    if panel.daily or len(panel.times) < 2:
        return 1.0
    return pd.Timedelta(days=1) / (panel.times[1] - panel.times[0])
