"""Thresholds for validation, in one place so operators can read and tune them.

Physical ranges follow the canonical units (DESIGN.md "Contracts"): vwc m3/m3, temperature degC,
relative humidity %, shortwave radiation W/m2 (hourly) or MJ/m2 (daily sum), precipitation mm.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# variable -> (min, max); a value outside is physically impossible (or a unit error) → quarantine.
FORCING_RANGES: dict[str, tuple[float, float]] = {
    "precipitation": (0.0, 300.0),  # mm/h; world record ~305 mm in one hour
    "precipitation_sum": (0.0, 2000.0),  # mm/day
    "rain": (0.0, 300.0),
    "rain_sum": (0.0, 2000.0),
    "temperature_2m": (-90.0, 60.0),
    "temperature_2m_mean": (-90.0, 60.0),
    "temperature_2m_max": (-90.0, 60.0),
    "temperature_2m_min": (-90.0, 60.0),
    "relative_humidity_2m": (0.0, 105.0),  # sensors overshoot 100 % a little in fog
    "relative_humidity_2m_mean": (0.0, 105.0),
    "shortwave_radiation": (0.0, 1500.0),  # W/m2; solar constant 1361
    "shortwave_radiation_sum": (0.0, 45.0),  # MJ/m2/day; top of atmosphere ≤ ~43
    "et0_fao_evapotranspiration": (0.0, 30.0),
    "wind_speed_10m": (0.0, 120.0),  # m/s
}


@dataclass(frozen=True)
class ObservationRules:
    """Limits for soil-moisture observations. ``vwc_max_by_site`` overrides ``vwc_max`` per site."""

    vwc_min: float = 0.0
    vwc_max: float = 0.8
    vwc_max_by_site: dict[str, float] = field(default_factory=dict)
    future_tolerance_s: float = 600.0  # clock skew allowed for sub-daily instants
    max_gap_steps: float = 6.0  # gap before a reading, in units of the series' usual step
    spike_threshold: float = 0.05  # m3/m3 jump that reverses at the next reading
    spike_rebound: float = 0.8  # the reversal must undo at least this fraction of the jump
    flatline_min_readings: int = 24  # identical consecutive readings before "stuck"
    flatline_min_hours: float = 24.0
    min_rows: int = 1


@dataclass(frozen=True)
class ForcingRules:
    ranges: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(FORCING_RANGES))
    allow_future: bool = False  # weather forecasts are in the future by definition
    future_tolerance_s: float = 600.0
    min_rows: int = 1
