"""PNG plots for alerts and verification (matplotlib's Agg canvas directly: no pyplot state, no GUI backend).

An alert's plot is queued as a spec (``smmdn.alerts.lifecycle.plot_spec``) and drawn by the deliverer
(``spec_png``) only for a message that goes out; verification's plots are files where the caller decides.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from smmdn.alerts.detect import daily_readings, latest_before
from smmdn.store.sites import site_offsets
from smmdn.timeutil import DAY

if TYPE_CHECKING:
    from smmdn.store.store import Store

BAND_COLOR = "#3b7dd8"


def _figure(width: float = 8.0, height: float = 4.0) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=80)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def alert_png(observations: pd.DataFrame, fan: pd.DataFrame, title: str, *, highlight: str | None = None,
              future: pd.DataFrame | None = None, since: pd.Timestamp | None = None, residual: bool = False) -> bytes:
    """Recent daily observations (one line per sensor, ``highlight`` in red) over the predicted fan; with
    ``residual``, a second panel below: each sensor minus the median of its siblings (the replicate
    evidence a technician reads next to the model's).

    ``fan``/``future``: ``time, q05, q25, q50, q75, q95`` (past days: the forecast issued before each day;
    future: the latest run).
    """
    two = residual and observations["sensor"].nunique() >= 2 if len(observations) else False
    fig = _figure(8.0, 6.0 if two else 4.0)
    ax = fig.add_axes((0.09, 0.44, 0.88, 0.50) if two else (0.09, 0.14, 0.88, 0.78))
    _band(ax, observations, fan, title, highlight=highlight, future=future, since=since)
    if two:
        _residuals(fig.add_axes((0.09, 0.08, 0.88, 0.28), sharex=ax), observations, highlight, since)
    return _png(fig)


def _band(ax: Any, observations: pd.DataFrame, fan: pd.DataFrame, title: str, *, highlight: str | None,
          future: pd.DataFrame | None, since: pd.Timestamp | None) -> None:
    for frame, alpha, label in ((fan, 1.0, "predicted"), (future, 0.5, "latest forecast")):
        if frame is None or frame.empty:
            continue
        f = frame.sort_values("time")
        ax.fill_between(f["time"], f["q05"], f["q95"], color=BAND_COLOR, alpha=0.18 * alpha, lw=0,
                        label=f"{label} 5-95 %")
        ax.fill_between(f["time"], f["q25"], f["q75"], color=BAND_COLOR, alpha=0.35 * alpha, lw=0,
                        label=f"{label} 25-75 %")
        ax.plot(f["time"], f["q50"], color=BAND_COLOR, lw=1, ls="--", alpha=alpha)
    for sensor, grp in observations.sort_values("time").groupby("sensor"):
        hot = highlight is not None and str(sensor) == str(highlight)
        ax.plot(grp["time"], grp["vwc"], marker="o", ms=3, lw=1.8 if hot else 1.0,
                color="#d62728" if hot else "#444444", alpha=1.0 if hot or highlight is None else 0.6,
                label=f"sensor {sensor}")
    if since is not None:
        ax.axvline(since, color="#d62728", lw=0.8, ls=":")
    ax.set_title(title, fontsize=10)
    ax.set_ylabel("vwc (m3/m3)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # nothing to label when the window holds no data
        ax.legend(fontsize=7, loc="upper left")
    for tick in ax.get_xticklabels():
        tick.set_rotation(20)


def sibling_residuals(observations: pd.DataFrame) -> pd.DataFrame:
    """Per day and sensor: its value minus the median of the other sensors that day (``time, sensor, residual``)."""
    wide = observations.pivot_table(index="time", columns="sensor", values="vwc", aggfunc="mean")
    out = []
    for sensor in wide.columns:
        others = wide.drop(columns=[sensor])
        out.append(pd.DataFrame({"time": wide.index, "sensor": sensor,
                                 "residual": (wide[sensor] - others.median(axis=1)).to_numpy()}))
    return pd.concat(out, ignore_index=True).dropna() if out else pd.DataFrame(columns=["time", "sensor", "residual"])


def _residuals(ax: Any, observations: pd.DataFrame, highlight: str | None, since: pd.Timestamp | None) -> None:
    res = sibling_residuals(observations)
    for sensor, grp in res.groupby("sensor"):
        hot = highlight is not None and str(sensor) == str(highlight)
        ax.plot(grp["time"], grp["residual"], marker=".", lw=1.8 if hot else 0.8,
                color="#d62728" if hot else "#888888", label=f"{sensor} − siblings' median")
    ax.axhline(0.0, color="k", lw=0.6)
    if since is not None:
        ax.axvline(since, color="#d62728", lw=0.8, ls=":")
    ax.set_ylabel("residual (m3/m3)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", ncol=3)
    for tick in ax.get_xticklabels():
        tick.set_rotation(20)


def _spec_frames(store: Store, spec: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """Daily observations at the spec's site and depth, the predicted fan and the latest forecast."""
    site, depth = str(spec["site"]), float(spec["depth_cm"])
    day = pd.Timestamp(spec["day"])
    lo, hi = day - int(spec["days"]) * DAY, day + DAY
    raw = store.read_observations(sites=[site], start=lo - DAY, end=hi + DAY)
    days = daily_readings(raw, site_offsets(store))
    forecasts = store.read_forecasts(sites=[site], start=lo, end=hi + 16 * DAY)
    obs = days.loc[(days["site"] == site) & (days["depth_cm"] == depth) & (days["time"] >= lo) & (days["time"] < hi)]
    past = latest_before(forecasts)
    fan = past.loc[(past["site"] == site) & (past["depth_cm"] == depth) & (past["valid_time"] >= lo)
                   & (past["valid_time"] < hi)] if not past.empty else past
    future = None
    if not forecasts.empty:
        mine = forecasts.loc[(forecasts["site"].astype(str) == site) & (forecasts["depth_cm"] == depth)
                             & (forecasts["issue_time"] <= day)]
        if not mine.empty:
            latest = mine.loc[mine["issue_time"] == mine["issue_time"].max()]
            future = latest.loc[latest["valid_time"] >= day].rename(columns={"valid_time": "time"})
    fan = fan.rename(columns={"valid_time": "time"}) if len(fan) else fan
    return obs[["time", "sensor", "vwc"]].dropna(), fan, future


def spec_png(store: Store, spec: dict[str, Any]) -> bytes:
    """Draw a queued plot spec: the daily observations at the alert's site and depth over the predicted fan
    (the forecast issued before each day), the latest forecast from the plotted day on and, for a sensor,
    its residual vs its siblings. A digest's spec (``panels``) draws one panel per incident."""
    if "panels" in spec:
        panels = spec["panels"]
        fig = _figure(8.0, 2.6 * len(panels) + 0.4)
        for i, panel in enumerate(panels):
            obs, fan, future = _spec_frames(store, panel)
            top = 1 - (i + 1) / len(panels)
            ax = fig.add_axes((0.09, top + 0.08 / len(panels), 0.88, 0.78 / len(panels)))
            _band(ax, obs, fan, str(panel["title"]), highlight=None if panel["sensor"] == "*" else str(panel["sensor"]),
                  future=future, since=pd.Timestamp(panel["since"]) if panel.get("since") else None)
        return _png(fig)
    obs, fan, future = _spec_frames(store, spec)
    return alert_png(obs, fan, str(spec["title"]), highlight=None if spec["sensor"] == "*" else str(spec["sensor"]),
                     future=future, since=pd.Timestamp(spec["since"]) if spec.get("since") else None,
                     residual=bool(spec.get("residual")))


def reliability_png(pit: np.ndarray, coverage: pd.DataFrame | None = None, title: str = "reliability") -> bytes:
    """PIT histogram (flat when calibrated) and nominal vs observed coverage per lead."""
    fig = _figure(9.0, 3.6)
    ax = fig.add_subplot(1, 2, 1)
    pit = np.asarray(pit, dtype=float)
    pit = pit[np.isfinite(pit)]
    counts, edges = np.histogram(pit, bins=10, range=(0, 1))
    dens = counts / max(len(pit), 1) * 10
    ax.bar(edges[:-1], dens, width=0.1, align="edge", color=BAND_COLOR, alpha=0.7, edgecolor="white")
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xlabel("PIT")
    ax.set_ylabel("density")
    ax.set_title(f"{title}: PIT (n={len(pit)})", fontsize=10)
    ax2 = fig.add_subplot(1, 2, 2)
    if coverage is not None and not coverage.empty:
        ax2.plot(coverage["lead"], coverage["coverage_90"], marker="o", label="coverage 90 %")
        ax2.plot(coverage["lead"], coverage["coverage_50"], marker="s", label="coverage 50 %")
        ax2.axhline(0.9, color="C0", lw=0.8, ls="--")
        ax2.axhline(0.5, color="C1", lw=0.8, ls="--")
        ax2.set_xlabel("lead (days)")
        ax2.set_ylim(0, 1)
        ax2.legend(fontsize=7)
    ax2.set_title("coverage per lead", fontsize=10)
    return _png(fig)


def skill_png(daily: pd.DataFrame, title: str = "CRPS per lead over time") -> bytes:
    """Mean CRPS per valid day, one line per lead (``time, lead, crps``)."""
    fig = _figure(8.0, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    for lead, grp in daily.sort_values("time").groupby("lead"):
        ax.plot(grp["time"], grp["crps"], marker=".", lw=1, label=f"lead {lead}")
    ax.set_ylabel("CRPS (m3/m3)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=4)
    fig.autofmt_xdate()
    return _png(fig)
