"""How numbers read in human-facing text (messages, artifacts, the CLI's tables).

Water content is rounded to the probes' resolution (``SMMDN_VWC_RESOLUTION``, 0.001 m3/m3 by default): a
field technician reads 0.305, not 0.30512871. Scores in the same unit (CRPS, interval widths) get one digit
more so that two close scores still compare. Coordinates carry hemisphere letters, never a sign."""

from __future__ import annotations

import math
from typing import Any

DEFAULT_VWC_RESOLUTION = 0.001


def vwc_digits(resolution: float = DEFAULT_VWC_RESOLUTION) -> int:
    """Decimal places that show ``resolution`` (0.001 → 3, 0.005 → 3, 0.01 → 2)."""
    if not resolution > 0:
        raise ValueError(f"vwc resolution must be positive, got {resolution!r}")
    return max(0, math.ceil(-math.log10(resolution) - 1e-9))


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def round_vwc(value: float, resolution: float = DEFAULT_VWC_RESOLUTION) -> float:
    """``value`` on the resolution's grid (0.3051 with 0.005 → 0.305), as a float with no float noise."""
    return round(round(float(value) / resolution) * resolution, vwc_digits(resolution))


def vwc(value: Any, resolution: float = DEFAULT_VWC_RESOLUTION) -> str:
    """Water content as text on the resolution's grid; ``-`` when there is none."""
    if _missing(value):
        return "-"
    return f"{round_vwc(value, resolution):.{vwc_digits(resolution)}f}"


def score(value: Any, resolution: float = DEFAULT_VWC_RESOLUTION) -> str:
    """A score in water-content units (CRPS, width) with one digit more than the readings."""
    if _missing(value):
        return "-"
    return f"{float(value):.{vwc_digits(resolution) + 1}f}"


def coordinates(lat: float, lon: float, *, degree: str = "") -> str:
    """``35.9595 N 86.5420 W``: unsigned degrees with hemisphere letters, as maps and GPS units show them."""
    lat, lon = float(lat), float(lon)
    return (f"{abs(lat):.4f}{degree} {'N' if lat >= 0 else 'S'} "
            f"{abs(lon):.4f}{degree} {'E' if lon >= 0 else 'W'}")


def plain(value: Any) -> str:
    """A value for a person: ``DEMO01 5 cm c`` for a series key, ``pending 1, sent 3`` for counts, never
    a Python repr."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {plain(v)}" for k, v in value.items()) or "none"
    if isinstance(value, list | tuple | set):
        parts = [plain(v) for v in value]
        if isinstance(value, tuple) and len(value) == 3 and isinstance(value[1], int | float):
            return f"{parts[0]} {float(value[1]):g} cm {parts[2]}"  # (site, depth_cm, sensor)
        return ", ".join(parts) or "none"
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.6g}"
    return "-" if value is None else str(value)
