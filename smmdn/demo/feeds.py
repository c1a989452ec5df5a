"""The demo's data feeds, in the real wire formats so the real adapters read them.

- ``write_toa5_day``: one Campbell TOA5 file per site and day into the landing directory (logger clock
  in local standard time, ``NAN`` for missing values), as a logger upload would leave it;
- ``WeatherServer``: a local ``http.server`` on 127.0.0.1 answering Open-Meteo's forecast, archive and
  historical-forecast requests in Open-Meteo's JSON layout, from the simulated weather, as of a
  settable "today" (forecasts come with errors that grow with lead time);
- ``registry_yaml``: the site registry that maps TOA5 columns and forcing coordinates.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pandas as pd

from smmdn.demo.simulate import DEPTHS_CM, SENSORS, SimSite, forecast_weather

STATION_PREFIX = "Demo_"


def column_name(depth: float, sensor: str) -> str:
    return f"VWC_{int(depth)}cm_{sensor}"


def registry_yaml(sites: Sequence[SimSite], utc_offset_hours: int = 0) -> str:
    """A registry for the simulated sites (TOA5 loggers + Open-Meteo forcing)."""
    lines = ["# smmdn demo registry (simulated network)", "version: demo-1", "defaults:", "  vwc_max: 0.8", "sites:"]
    for s in sites:
        lines += [
            f"  - id: {s.site}", f"    name: Simulated site {s.site}", f"    lat: {s.latitude}",
            f"    lon: {s.longitude}", "    elevation_m: 400", f"    tags: [network:demo, team:field-{s.site[-1]}]",
            f"    lst_utc_offset_hours: {utc_offset_hours}", "    sensors:",
        ]
        lines += [f"      - {{depth_cm: {int(d)}, sensor: {x}}}" for d in DEPTHS_CM for x in SENSORS]
        lines += ["    sources:", "      toa5:", f"        station: {STATION_PREFIX}{s.site}", "        table: Hourly",
                  f"        utc_offset_hours: {utc_offset_hours}", "        columns:"]
        lines += [f"          {column_name(d, x)}: {{depth_cm: {int(d)}, sensor: {x}}}" for d in DEPTHS_CM
                  for x in SENSORS]
        lines += ["    forcing:", f"      open_meteo: {{latitude: {s.latitude}, longitude: {s.longitude}}}"]
    return "\n".join(lines) + "\n"


def write_toa5_day(landing: Path, site: str, readings: pd.DataFrame, day: pd.Timestamp,
                   utc_offset_hours: int = 0, days: int = 1) -> Path | None:
    """Write ``site``'s readings of ``days`` days from ``day`` (UTC) as one TOA5 file (a logger upload)."""
    mine = readings.loc[(readings["site"] == site) & (readings["time"] >= day)
                        & (readings["time"] < day + pd.Timedelta(days=days))]
    if mine.empty:
        return None
    wide = mine.assign(col=[column_name(d, s) for d, s in zip(mine["depth_cm"], mine["sensor"], strict=True)]
                       ).pivot_table(index="time", columns="col", values="vwc", aggfunc="first").sort_index()
    cols = [column_name(d, s) for d in DEPTHS_CM for s in SENSORS]
    wide = wide.reindex(columns=cols)
    wide.index = wide.index + pd.Timedelta(hours=utc_offset_hours)
    return write_toa5_file(landing, f"{STATION_PREFIX}{site}", "Hourly", wide, day)


def write_toa5_file(landing: Path, station: str, table: str, wide: pd.DataFrame, day: pd.Timestamp,
                    processing: str = "Smp") -> Path:
    """One TOA5 upload of ``wide`` (logger-local times × columns in m3/m3, ``NAN`` where missing) named
    ``<station>_<table>_<day>.dat``, written whole (``.part`` then renamed) and dated an hour back, past the
    landing directory's settle time."""
    cols = list(wide.columns)
    header = [
        f'"TOA5","{station}","CR1000X","4242","CR1000X.Std.06","CPU:soil.CR1X","1234","{table}"',
        ",".join(f'"{c}"' for c in ["TIMESTAMP", "RECORD", *cols]),
        ",".join(f'"{u}"' for u in ["TS", "RN", *(["m^3/m^3"] * len(cols))]),
        ",".join(f'"{p}"' for p in ["", "", *([processing] * len(cols))]),
    ]
    body = []
    for i, (t, row) in enumerate(zip(wide.index, wide.itertuples(index=False), strict=True)):
        values = ["NAN" if pd.isna(v) else f"{v:.4f}" for v in row]
        body.append(",".join([f'"{t:%Y-%m-%d %H:%M:%S}"', str(i), *values]))
    landing.mkdir(parents=True, exist_ok=True)
    path = landing / f"{station}_{table}_{day:%Y%m%d}.dat"
    tmp = path.with_suffix(".part")
    tmp.write_text("\r\n".join(header + body) + "\r\n", encoding="utf-8")
    tmp.rename(path)
    stamp = time.time() - 3600  # uploaded a while ago: past the landing directory's settle time
    os.utime(path, (stamp, stamp))
    return path


class WeatherServer:
    """Open-Meteo-compatible JSON from simulated weather, on 127.0.0.1 (port chosen by the OS).

    ``today`` is the simulated date: the archive answers only for days before it, forecasts start at it.
    ``down`` makes every request answer HTTP 503 (an outage, for the degradation path).
    """

    def __init__(self, sites: Sequence[SimSite], weather: pd.DataFrame, seed: int = 0) -> None:
        self.by_coord = {(round(s.latitude, 4), round(s.longitude, 4)): s.site for s in sites}
        self.weather = weather
        self.seed = seed
        self.today = pd.Timestamp(weather["time"].min())
        self.down = False
        self.requests = 0
        self._httpd: ThreadingHTTPServer | None = None
        self.url = ""

    # -- answers ------------------------------------------------------------------------------------
    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict | list]:
        lats = [round(float(x), 4) for x in query.get("latitude", [""])[0].split(",") if x]
        lons = [round(float(x), 4) for x in query.get("longitude", [""])[0].split(",") if x]
        variables = query.get("daily", [""])[0].split(",")
        items = []
        for lat, lon in zip(lats, lons, strict=True):
            site = self.by_coord.get((lat, lon))
            if site is None:
                return 400, {"error": True, "reason": f"no data for {lat},{lon}"}
            mine = self.weather.loc[self.weather["site"] == site]
            if path.endswith("/archive") or path.startswith("/historical-forecast"):
                start = pd.Timestamp(query["start_date"][0], tz="UTC")
                end = min(pd.Timestamp(query["end_date"][0], tz="UTC"), self.today - pd.Timedelta(days=1))
                rows = mine.loc[(mine["time"] >= start) & (mine["time"] <= end)]
            else:
                days = int(query.get("forecast_days", ["16"])[0])
                rows = forecast_weather(mine, self.today, days, self.seed)
            items.append(self._item(lat, lon, rows, variables))
        return 200, items if len(items) > 1 else items[0]

    @staticmethod
    def _item(lat: float, lon: float, rows: pd.DataFrame, variables: list[str]) -> dict:
        daily: dict[str, list] = {"time": [f"{t:%Y-%m-%d}" for t in rows["time"]]}
        for v in variables:
            daily[v] = [None if pd.isna(x) else float(x) for x in rows[v]] if v in rows else [None] * len(rows)
        return {"latitude": lat, "longitude": lon, "generationtime_ms": 0.1, "utc_offset_seconds": 0,
                "timezone": "GMT", "timezone_abbreviation": "GMT", "elevation": 400.0,
                "daily_units": {"time": "iso8601"}, "daily": daily}

    # -- server ----------------------------------------------------------------------------------
    def start(self) -> WeatherServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                server.requests += 1
                if server.down:
                    status, payload = 503, {"error": True, "reason": "simulated outage"}
                else:
                    try:
                        status, payload = server.answer(parts.path, parse_qs(parts.query))
                    except (KeyError, ValueError) as exc:
                        status, payload = 400, {"error": True, "reason": str(exc)}
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def settings_env(self) -> dict[str, str]:
        """``SMMDN_*`` URLs pointing the real Open-Meteo adapter at this server."""
        return {
            "SMMDN_OPEN_METEO_URL": f"{self.url}/v1/forecast",
            "SMMDN_OPEN_METEO_ARCHIVE_URL": f"{self.url}/archive/v1/archive",
            "SMMDN_OPEN_METEO_HISTORICAL_FORECAST_URL": f"{self.url}/historical-forecast/v1/forecast",
        }
