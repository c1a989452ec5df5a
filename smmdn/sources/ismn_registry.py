"""Registry entries for the stations of an ISMN archive (``smmdn sites import ismn``).

Why entries and not rows in the database: the registry file is what field teams review; an import
writes what a person would have typed, and ``smmdn sites load`` takes it from there. Forcing comes from
Open-Meteo's archive at the station's coordinates (ISMN archives carry no usable forcing).
"""

from __future__ import annotations

import math

import pandas as pd

from smmdn.sources.ismn import IsmnData

STATIC_NUMERIC = ("clay_fraction", "sand_fraction", "silt_fraction", "organic_carbon_fraction", "saturation")
STATIC_TEXT = ("land_cover", "climate_class")


def _number(value: object) -> float | None:
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def registry_entries(data: IsmnData) -> list[dict[str, object]]:
    """One registry site mapping per station of ``data`` (sensors, ``sources.ismn``, Open-Meteo forcing)."""
    entries = []
    for row in data.sites.to_dict("records"):
        sensors = data.sensors[data.sensors["site"] == row["site"]]
        attributes: dict[str, object] = {k: v for k in STATIC_NUMERIC if (v := _number(row.get(k))) is not None}
        attributes |= {k: str(row[k]) for k in STATIC_TEXT if isinstance(row.get(k), str)}
        lat, lon = round(float(row["latitude"]), 6), round(float(row["longitude"]), 6)
        entry: dict[str, object] = {
            "id": row["site"],
            "name": f"{row['network']} {row['station']}",
            "lat": lat,
            "lon": lon,
            "elevation_m": _number(row.get("elevation_m")),
            "tags": ["ismn", str(row["network"])],
            "timezone": "UTC",
            "sensors": [
                {"depth_cm": float(s["depth_cm"]), "sensor": str(s["sensor"]),
                 "depth_from_cm": float(s["depth_from_cm"]), "depth_to_cm": float(s["depth_to_cm"])}
                for s in sensors.sort_values(["depth_cm", "sensor"]).to_dict("records")
            ],
            "sources": {"ismn": {"network": str(row["network"]), "station": str(row["station"])}},
            "forcing": {"open_meteo": {"latitude": lat, "longitude": lon}},
        }
        if attributes:
            entry["attributes"] = attributes
        entries.append(entry)
    return entries


def station_sites(data: IsmnData) -> pd.DataFrame:
    """(network, station, site) of every station read."""
    return data.sites[["network", "station", "site"]].copy()
