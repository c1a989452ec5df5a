"""A self-contained HTML page per site: every depth's plot inline (data URIs), the latest forecast per lead,
the open alerts. No scripts or styles from anywhere else, so it works offline and as an e-mail attachment.
"""

from __future__ import annotations

import base64
import html

import pandas as pd

from smmdn.display import DEFAULT_VWC_RESOLUTION, coordinates, vwc
from smmdn.views.fan import depth_png
from smmdn.views.site import SiteView

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem;color:#222;max-width:70rem}
h1{font-size:1.4rem;margin:0 0 .2rem} .meta{color:#555;margin:0 0 1rem}
figure{margin:1rem 0 2rem} figure img{max-width:100%;border:1px solid #ddd}
figcaption{color:#555;font-size:.85rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0 1.5rem} th,td{border:1px solid #ddd;padding:.2rem .5rem;
text-align:right} th{background:#f3f5f8} td.l,th.l{text-align:left}
.alert{color:#b00020}
"""
# Marks the page once every plot has decoded (a browser test reads it; people never notice it).
CHECK = ("<script>addEventListener('load',()=>{const i=[...document.images];"
         "document.body.dataset.plotsDecoded=i.filter(x=>x.complete&&x.naturalWidth>0).length+'/'+i.length})</script>")


def _coords(info: dict) -> str:
    lat, lon = info.get("latitude"), info.get("longitude")
    if lat is None or lon is None or pd.isna(lat) or pd.isna(lon):
        return ""
    return coordinates(lat, lon, degree="°")


def _forecast_table(view: SiteView, depth: float, resolution: float) -> str:
    f = view.future.loc[view.future["depth_cm"] == depth].sort_values("time")
    if f.empty:
        return "<p>No complete forecast for this depth.</p>"
    rows = "".join(f"<tr><td class=l>{pd.Timestamp(r.time).date()}</td><td>{int(r.lead)}</td>"
                   f"<td>{vwc(r.q05, resolution)}</td><td>{vwc(r.q50, resolution)}</td>"
                   f"<td>{vwc(r.q95, resolution)}</td></tr>" for r in f.itertuples())
    return ("<table><tr><th class=l>day</th><th>lead</th><th>q05</th><th>median</th><th>q95</th></tr>"
            f"{rows}</table>")


def site_page(view: SiteView, resolution: float = DEFAULT_VWC_RESOLUTION) -> str:
    """The page for ``view`` (one figure and one forecast table per depth)."""
    name = view.info.get("name") or ""
    issued = view.issue_time
    alerts = "".join(
        f"<li class=alert>#{a.id} {html.escape(str(a.kind))} at {float(a.depth_cm):g} cm, "
        f"{'all sensors' if a.sensor == '*' else 'sensor ' + html.escape(str(a.sensor))}, since "
        f"{pd.Timestamp(a.window_start).date()}</li>" for a in view.alerts.itertuples())
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>smmdn — {html.escape(view.site)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(view.site)} {html.escape(str(name))}</h1>",
        f"<p class=meta>{_coords(view.info)} · observations {view.start.date()} to "
        f"{(view.end - pd.Timedelta(days=1)).date()} · latest forecast issued "
        f"{issued.date() if issued is not None else 'never'}</p>",
        f"<h2>Open alerts</h2><ul>{alerts or '<li>none</li>'}</ul>",
    ]
    for depth in view.depths:
        png = base64.b64encode(depth_png(view, depth)).decode("ascii")
        parts.append(f"<h2>{depth:g} cm</h2><figure><img class=plot alt='{html.escape(view.site)} {depth:g} cm' "
                     f"src='data:image/png;base64,{png}'><figcaption>Bands: the mixture's central 50 % and 90 % "
                     f"intervals, from the forecast issued the day before each past day and from the latest "
                     f"forecast ahead; lines: each replicate sensor's daily mean; bars: daily rain."
                     f"</figcaption></figure>")
        parts.append(_forecast_table(view, depth, resolution))
    parts.append(CHECK)
    parts.append("</body></html>")
    return "\n".join(parts)
