"""One depth of one site as a PNG: the 50 % and 90 % bands of the mixture, every replicate, rain, open alerts.

Readable on purpose: concise date labels (no overlap), a legend outside the data that names each band by
its level, rain as bars on its own axis (the messages speak of rain), open alerts shaded from their start.
"""

from __future__ import annotations

import io
from typing import Any

import pandas as pd

from smmdn.views.site import SiteView

BAND = "#3b7dd8"
RAIN = "#7fb3d5"
ALERT = "#d62728"
SENSOR_COLORS = ("#222222", "#8c564b", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf")


def _figure() -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 5.2), dpi=90)
    FigureCanvasAgg(fig)
    return fig


def _bands(ax: Any, frame: pd.DataFrame, label: str, alpha: float) -> None:
    if frame.empty:
        return
    f = frame.sort_values("time")
    ax.fill_between(f["time"], f["q05"], f["q95"], color=BAND, alpha=0.16 * alpha, lw=0,
                    label=f"{label}: 90 % (q05–q95)")
    ax.fill_between(f["time"], f["q25"], f["q75"], color=BAND, alpha=0.38 * alpha, lw=0,
                    label=f"{label}: 50 % (q25–q75)")
    ax.plot(f["time"], f["q50"], color=BAND, lw=1.0, ls="--", alpha=alpha, label=f"{label}: median")


def depth_png(view: SiteView, depth: float) -> bytes:
    """The PNG of ``depth`` at ``view.site``."""
    import matplotlib.dates as mdates

    fig = _figure()
    ax = fig.add_axes((0.08, 0.36, 0.82, 0.57))
    past = view.past.loc[view.past["depth_cm"] == depth]
    future = view.future.loc[view.future["depth_cm"] == depth]
    _bands(ax, past, "forecast of the day before", 1.0)
    _bands(ax, future, "latest forecast", 0.6)
    obs = view.observations.loc[view.observations["depth_cm"] == depth]
    alerts = view.alerts.loc[view.alerts["depth_cm"].astype(float) == depth] if not view.alerts.empty else view.alerts
    flagged = {str(s) for s in alerts["sensor"]} if len(alerts) else set()
    for i, (sensor, grp) in enumerate(obs.sort_values("time").groupby("sensor")):
        hot = str(sensor) in flagged
        ax.plot(grp["time"], grp["vwc"], marker="o", ms=2.5, lw=2.0 if hot else 1.0,
                color=SENSOR_COLORS[i % len(SENSOR_COLORS)],
                label=f"sensor {sensor} observed" + (" (open alert)" if hot else ""))
    strip = ax.get_xaxis_transform()  # x in data, y in axes: alert bars along the top, never over the data
    for i, a in enumerate(alerts.itertuples()):
        start = max(pd.Timestamp(a.window_start), view.start)
        who = "all sensors" if a.sensor == "*" else f"sensor {a.sensor}"
        y = 1.0 - 0.035 * (i + 1)
        ax.plot([start, view.end], [y, y], transform=strip, color=ALERT, lw=3, solid_capstyle="butt",
                alpha=0.85 - 0.1 * (i % 4), label=f"open alert #{a.id} since {start.date()}: {a.kind}, {who}")
    if len(alerts):  # head room for the alert bars
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, hi + (hi - lo) * 0.045 * (len(alerts) + 1))
    ax.axvline(view.end, color="#555555", lw=0.8, ls=":", label="issue time")
    ax.set_ylabel("soil moisture (m3/m3)")
    ax.set_title(f"{view.site} {depth:g} cm", fontsize=10, loc="left")
    ax.grid(alpha=0.3)
    locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    handles, labels = ax.get_legend_handles_labels()
    if not view.rain.empty:
        rain = ax.twinx()
        rain.bar(view.rain["time"], view.rain["rain_mm"], width=0.8, color=RAIN, alpha=0.5, label="rain (mm/day)")
        rain.set_ylabel("rain (mm/day)")
        top = float(view.rain["rain_mm"].max() or 0.0)
        rain.set_ylim(0, max(top * 3, 5.0))  # bars in the lower third: they hardly cover the soil-moisture lines
        rain.set_zorder(ax.get_zorder() - 1)
        ax.patch.set_visible(False)
        more = rain.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    if handles:
        fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=7,
                   frameon=False)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
