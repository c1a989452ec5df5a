"""The site registry: a versioned YAML file saying which sites exist, what they measure and who feeds them.

Why a file: field teams review changes to it like code (versions, diffs), and every adapter reads the
same mapping (USCRN station file, COSMOS site id, SensorThings datastreams, TOA5 columns, forcing
coordinates) instead of guessing from the data. ``smmdn sites load`` copies it into the database.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from smmdn.errors import InputError

DEFAULT_VWC_MAX = 0.8


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SensorSpec(_Strict):
    depth_cm: float = Field(gt=0)
    sensor: str = Field(min_length=1)
    active_from: str | None = None
    active_to: str | None = None
    depth_from_cm: float | None = Field(None, ge=0, description="top of the measured layer (ISMN depth_from)")
    depth_to_cm: float | None = Field(None, ge=0, description="bottom of the measured layer (ISMN depth_to)")


class UscrnSource(_Strict):
    station_file: str = Field(min_length=1, description="STATE_Name part of CRNH0203-YYYY-<...>.txt")
    wban: str | None = None
    product: Literal["hourly02", "daily01"] = "hourly02"
    sensor: str = "avg"


class CosmosSource(_Strict):
    site_id: str = Field(min_length=1)
    resolution: Literal["1day", "1hour", "30min"] = "1day"


class DatastreamSpec(_Strict):
    id: int | str
    depth_cm: float = Field(gt=0)
    sensor: str = Field(min_length=1)


class SensorThingsSource(_Strict):
    datastreams: list[DatastreamSpec] = Field(min_length=1)


class Toa5Column(_Strict):
    depth_cm: float = Field(gt=0)
    sensor: str = Field(min_length=1)
    unit: Literal["fraction", "percent"] = "fraction"


class Toa5Source(_Strict):
    station: str = Field(min_length=1, description="station name on the TOA5 environment line")
    table: str | None = Field(None, description="table name on the TOA5 environment line (any if empty)")
    utc_offset_hours: float = Field(ge=-14, le=14, description="logger clock offset: local = UTC + offset")
    columns: dict[str, Toa5Column] = Field(min_length=1)


class IsmnSource(_Strict):
    network: str = Field(min_length=1, description="ISMN network name (the archive's top folder)")
    station: str = Field(min_length=1, description="ISMN station name (as in the archive)")


class Sources(_Strict):
    uscrn: UscrnSource | None = None
    cosmos: CosmosSource | None = None
    sensorthings: SensorThingsSource | None = None
    toa5: Toa5Source | None = None
    ismn: IsmnSource | None = None


FEEDS = ("uscrn", "cosmos", "sensorthings", "toa5", "ismn")


class OpenMeteoForcing(_Strict):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class Forcing(_Strict):
    open_meteo: OpenMeteoForcing | None = None


class Site(_Strict):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    name: str
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    elevation_m: float | None = None
    tags: list[str] = Field(default_factory=list)
    timezone: str = "UTC"
    lst_utc_offset_hours: float | None = Field(
        None, ge=-14, le=14, description="local standard time of daily labels (USCRN daily01)"
    )
    time_label_note: str | None = None
    vwc_max: float | None = Field(None, gt=0, le=1)
    sensors: list[SensorSpec] = Field(default_factory=list)
    sources: Sources = Field(default_factory=Sources)
    forcing: Forcing = Field(default_factory=Forcing)
    attributes: dict[str, float | str | None] = Field(
        default_factory=dict, description="static site attributes (ISMN: soil fractions, land cover, climate)")

    @model_validator(mode="after")
    def _sensors_unique(self) -> Site:
        keys = [(s.depth_cm, s.sensor) for s in self.sensors]
        if len(keys) != len(set(keys)):
            raise ValueError(f"site {self.id}: duplicate (depth_cm, sensor) in sensors")
        return self


class Defaults(_Strict):
    vwc_max: float = Field(DEFAULT_VWC_MAX, gt=0, le=1)
    depths_cm: list[float] = Field(default_factory=list)


class Registry(_Strict):
    version: int | str
    defaults: Defaults = Field(default_factory=Defaults)
    sites: list[Site] = Field(min_length=1)

    @model_validator(mode="after")
    def _ids_unique(self) -> Registry:
        ids = [s.id for s in self.sites]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate site id(s): {', '.join(dupes)}")
        return self

    # -- look-ups -------------------------------------------------------------------------------
    def site(self, site_id: str) -> Site:
        for s in self.sites:
            if s.id == site_id:
                return s
        raise InputError(f"unknown site {site_id!r}", where="registry", fix="add it to the registry file")

    def select(self, ids: list[str] | None) -> list[Site]:
        """Sites named in ``ids`` (all when None); unknown ids are an error, not silently skipped."""
        if not ids:
            return list(self.sites)
        return [self.site(i) for i in ids]

    def vwc_max(self) -> dict[str, float]:
        """Per-site physical vwc limit (override or default) for validation."""
        return {s.id: s.vwc_max if s.vwc_max is not None else self.defaults.vwc_max for s in self.sites}

    # -- frames for the store -------------------------------------------------------------------
    def sites_frame(self) -> pd.DataFrame:
        rows = []
        for s in self.sites:
            feeds = [name for name in FEEDS if getattr(s.sources, name)]
            rows.append(
                {
                    "site": s.id,
                    "name": s.name,
                    "latitude": s.lat,
                    "longitude": s.lon,
                    "elevation_m": s.elevation_m,
                    "timezone": (f"LST UTC{s.lst_utc_offset_hours:+g}" if s.lst_utc_offset_hours is not None
                                 else s.timezone),
                    "tags": list(s.tags),
                    "source": ",".join(feeds) or "manual",
                    "attributes": {
                        "registry_version": str(self.version),
                        "timezone": s.timezone,
                        "lst_utc_offset_hours": s.lst_utc_offset_hours,
                        "time_label_note": s.time_label_note,
                        "vwc_max": s.vwc_max if s.vwc_max is not None else self.defaults.vwc_max,
                        "sources": s.sources.model_dump(exclude_none=True),
                        "forcing": s.forcing.model_dump(exclude_none=True),
                        **({"static": dict(s.attributes)} if s.attributes else {}),
                    },
                }
            )
        return pd.DataFrame(rows)

    def sensors_frame(self) -> pd.DataFrame:
        rows = []
        for s in self.sites:
            feeds = [name for name in FEEDS if getattr(s.sources, name)]
            for spec in s.sensors:
                rows.append(
                    {
                        "site": s.id,
                        "depth_cm": spec.depth_cm,
                        "sensor": spec.sensor,
                        "active_from": pd.Timestamp(spec.active_from, tz="UTC") if spec.active_from else None,
                        "active_to": pd.Timestamp(spec.active_to, tz="UTC") if spec.active_to else None,
                        "source": ",".join(feeds) or "manual",
                        "attributes": {k: v for k in ("depth_from_cm", "depth_to_cm")
                                       if (v := getattr(spec, k)) is not None},
                    }
                )
        cols = ["site", "depth_cm", "sensor", "active_from", "active_to", "source", "attributes"]
        return pd.DataFrame(rows, columns=cols)


def parse_registry(text: str, where: str = "registry") -> Registry:
    """Parse and check registry YAML; every problem is an ``InputError`` naming the field."""
    import yaml

    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML: {exc}", where=where, fix="fix the YAML syntax") from exc
    if not isinstance(raw, dict):
        raise InputError("registry must be a mapping with 'version' and 'sites'", where=where)
    try:
        return Registry.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise InputError(
            f"invalid registry: {first['msg']}", where=where, column=loc or None,
            fix=f"{exc.error_count()} problem(s); see smmdn/registry/example.yaml for the layout",
        ) from exc


def load_registry(path: str | Path) -> Registry:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read registry: {exc}", where=str(p), fix="check the path") from exc
    return parse_registry(text, where=str(p))


def merge_sites(existing: str | None, entries: list[dict[str, object]], where: str = "registry") -> str:
    """Registry YAML with ``entries`` (site mappings) added or replacing sites of the same id; the version
    is bumped (an int by one; a text version gets ``+1`` appended).

    Checked with ``parse_registry`` before it is returned, so a caller never writes an invalid file.
    """
    import yaml

    raw: dict[str, object] = yaml.safe_load(existing) if existing else {}
    if not isinstance(raw, dict):
        raise InputError("registry must be a mapping with 'version' and 'sites'", where=where)
    sites = [s for s in raw.get("sites") or [] if isinstance(s, dict)]  # type: ignore[union-attr]
    new_ids = {str(e["id"]) for e in entries}
    merged = [s for s in sites if str(s.get("id")) not in new_ids] + list(entries)
    version = raw.get("version", 0)
    raw["version"] = version + 1 if isinstance(version, int) else f"{version}+1"
    raw["sites"] = merged
    text = yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)
    parse_registry(text, where=where)
    return text


def example_registry_path() -> Path:
    return Path(__file__).parent / "registry" / "example.yaml"
