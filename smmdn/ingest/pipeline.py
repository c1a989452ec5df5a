"""The one ingest pipeline, fetch → validate → write → watermark, and the table of sources it runs.

Every timed source goes through ``run_row``: read its watermark, fetch from there (minus a look-back),
validate and write the batch with its quarantine and new watermark in one transaction
(``batch.write_batch``). What differs per source is a row of ``SENSOR_SOURCES`` (how to fetch and parse,
which registry block, which watermark), or, for the two sources whose unit is not a site, the
``fetch`` handed to ``run_row``: Open-Meteo forcing (one request group per API and resolution, its
watermark the last issue or archive day) and ISMN archives (read once, one batch per site). TOA5 landing
files have a file ledger (sha256) instead of a watermark: ``landing.ingest_landing``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import requests

from smmdn.config import Settings
from smmdn.errors import InputError, SourceError
from smmdn.ingest.batch import write_batch
from smmdn.ingest.summary import IngestSummary, Progress, failed, log, run, utc
from smmdn.registry import Registry, Site

if TYPE_CHECKING:
    from smmdn.store import Store


@dataclass(frozen=True)
class Fetched:
    """What a fetch brought: frames for ``write_batch``, or ``up_to_date`` when there was nothing to ask for."""

    observations: pd.DataFrame | None = None
    forcing: pd.DataFrame | None = None
    forcing_kind: str = "observed"
    issue_time: pd.Timestamp | None = None
    up_to_date: bool = False


@dataclass(frozen=True)
class Window:
    """What one run asks a source for: rows after ``start`` (None: the source's default) up to ``until``."""

    session: requests.Session
    settings: Settings
    start: pd.Timestamp | None
    until: pd.Timestamp | None


Fetch = Callable[[pd.Timestamp | None, pd.Timestamp | None], Fetched]  # (watermark, fetch start) → Fetched


def watermark(store: Store, source: str, key: str, since: pd.Timestamp | None) -> pd.Timestamp | None:
    """``since`` when given (a backfill), else the stored watermark."""
    return since if since is not None else store.get_watermark(source, key)


def fetch_start(wm: pd.Timestamp | None, since: pd.Timestamp | None,
                lookback: pd.Timedelta | None) -> pd.Timestamp | None:
    """Where a fetch starts: the watermark, minus the look-back unless a backfill names its own start."""
    if since is not None or wm is None or not lookback:
        return wm
    return wm - lookback


def run_row(store: Store, settings: Settings, registry: Registry, *, source: str, key: str, fetch: Fetch,
            since: pd.Timestamp | None = None, lookback: pd.Timedelta | None = None,
            progress: Progress | None = None, now: pd.Timestamp | None = None,
            summary: IngestSummary | None = None) -> IngestSummary:
    """Fetch → validate → write → watermark for one (source, key); a failure is its summary, not the run's."""
    wm = watermark(store, source, key, since)
    start = fetch_start(wm, since, lookback)
    if summary is None:
        summary = IngestSummary(source, key)
    summary.watermark_before = wm
    out = summary

    def body() -> IngestSummary:
        got = fetch(wm, start)
        if got.up_to_date:
            out.status = "empty"
            out.notes.append("up to date")
            return out
        return write_batch(store, settings, source=source, key=key, registry=registry,
                           observations=got.observations, forcing=got.forcing, forcing_kind=got.forcing_kind,
                           issue_time=got.issue_time, watermark_before=wm, now=now, summary=out)

    return run(summary, progress, body)


# --- the sensor networks: one row per wire format, one batch per site -------------------------------
def _fetch_uscrn(site: Site, cfg: Any, w: Window) -> Fetched:
    from smmdn.sources.uscrn import fetch_uscrn

    obs, forcing = fetch_uscrn(w.session, w.settings, site.id, station_file=cfg.station_file, product=cfg.product,
                               wban=cfg.wban, sensor=cfg.sensor, since=w.start, until=w.until)
    return Fetched(obs, forcing)


def _fetch_sensorthings(site: Site, cfg: Any, w: Window) -> Fetched:
    from smmdn.sources.sensorthings import fetch_sensorthings

    triples = [(d.id, d.depth_cm, d.sensor) for d in cfg.datastreams]
    return Fetched(fetch_sensorthings(w.session, w.settings, site.id, triples, since=w.start, until=w.until))


def _fetch_cosmos(site: Site, cfg: Any, w: Window) -> Fetched:
    from smmdn.sources.cosmos_http import fetch_cosmos

    obs, forcing = fetch_cosmos(w.session, w.settings, site.id, site_id=cfg.site_id, resolution=cfg.resolution,
                                since=w.start, until=w.until)
    return Fetched(obs, forcing)


@dataclass(frozen=True)
class SensorSource:
    """A row of the table: the store's name for the source, the site's registry block, how to fetch it.

    The watermark of every row is (name, site id): the latest stored time of that site from that source.
    """

    name: str
    config: Callable[[Site], Any]
    fetch: Callable[[Site, Any, Window], Fetched]


SENSOR_SOURCES: tuple[SensorSource, ...] = (
    SensorSource("uscrn", lambda s: s.sources.uscrn, _fetch_uscrn),
    SensorSource("sensorthings", lambda s: s.sources.sensorthings, _fetch_sensorthings),
    SensorSource("cosmos", lambda s: s.sources.cosmos, _fetch_cosmos),
)


def ingest_sensors(
    store: Store,
    settings: Settings,
    registry: Registry,
    since: pd.Timestamp | None = None,
    until: pd.Timestamp | None = None,
    sites: list[str] | None = None,
    *,
    session: requests.Session | None = None,
    progress: Progress | None = None,
    now: pd.Timestamp | None = None,
    lookback: pd.Timedelta | None = None,
    landing: bool = True,
) -> list[IngestSummary]:
    """Ingest every sensor source of the selected sites (and the TOA5 landing directory).

    ``since`` overrides the stored watermarks (backfill); the watermark never moves backwards.
    ``lookback`` re-reads that much before each watermark, so values a network revises after
    publication are picked up (upserts count them as updated; unchanged rows cost nothing).
    ``landing=False`` skips the TOA5 landing directory (call ``ingest_landing`` once instead when
    fanning out per site).
    """
    from smmdn.ingest.landing import ingest_landing
    from smmdn.sources.http import make_session

    since, until, now = utc(since), utc(until), utc(now)
    session = session or make_session(settings)
    selected = registry.select(sites)
    out: list[IngestSummary] = []
    for site in selected:
        for row in SENSOR_SOURCES:
            cfg = row.config(site)
            if cfg is None:
                continue

            def fetch(wm: pd.Timestamp | None, start: pd.Timestamp | None, row: SensorSource = row,
                      site: Site = site, cfg: Any = cfg) -> Fetched:
                return row.fetch(site, cfg, Window(session, settings, start, until))

            out.append(run_row(store, settings, registry, source=row.name, key=site.id, fetch=fetch, since=since,
                               lookback=lookback, progress=progress, now=now))
    if landing and any(s.sources.toa5 is not None for s in selected):
        out.extend(ingest_landing(store, settings, registry, sites=[s.id for s in selected], progress=progress,
                                  now=now))
    return out


# --- Open-Meteo forcing: one request group per API and resolution -----------------------------------
def ingest_forcing(
    store: Store,
    settings: Settings,
    registry: Registry,
    since: pd.Timestamp | None = None,
    until: pd.Timestamp | None = None,
    sites: list[str] | None = None,
    *,
    api: str = "forecast",
    resolution: str = "daily",
    variables: list[str] | None = None,
    forecast_days: int | None = None,
    past_days: int | None = None,
    session: requests.Session | None = None,
    progress: Progress | None = None,
    now: pd.Timestamp | None = None,
) -> list[IngestSummary]:
    """Fetch Open-Meteo forcing for the selected sites in one batched request set and store it.

    ``api="forecast"`` stores kind ``forecast`` with ``issue_time`` = the fetch hour; ``archive`` and
    ``historical-forecast`` store kind ``archive`` for (since or watermark, until or yesterday].
    """
    from smmdn.sources.http import make_session
    from smmdn.sources.open_meteo import ATTRIBUTION, KIND_FOR_API, Location, fetch_open_meteo

    since, until = utc(since), utc(until)
    session = session or make_session(settings)
    current = utc(now) if now is not None else pd.Timestamp.now(tz="UTC")
    assert current is not None
    locations = [
        Location(s.id, s.forcing.open_meteo.latitude, s.forcing.open_meteo.longitude, s.lst_utc_offset_hours or 0.0)
        for s in registry.select(sites) if s.forcing.open_meteo is not None
    ]
    source, key = "open-meteo", f"{api}:{resolution}"
    if not locations:
        summary = IngestSummary(source, key, watermark_before=watermark(store, source, key, since))
        summary.status = "empty"
        summary.notes.append("no site has forcing.open_meteo")
        return [summary]
    kind = KIND_FOR_API[api]
    summary = IngestSummary(source, key, notes=[ATTRIBUTION])

    def fetch(wm: pd.Timestamp | None, start: pd.Timestamp | None) -> Fetched:
        if api == "forecast":
            frame = fetch_open_meteo(session, settings, locations, api="forecast", resolution=resolution,
                                     variables=variables, forecast_days=forecast_days, past_days=past_days)
            return Fetched(forcing=frame, forcing_kind=kind, issue_time=current.floor("h"))
        end = until if until is not None else current.normalize() - pd.Timedelta(days=1)
        first = wm + pd.Timedelta(days=1) if wm is not None else end - pd.Timedelta(days=30)
        if first.normalize() > end.normalize():
            return Fetched(up_to_date=True)
        frame = fetch_open_meteo(session, settings, locations, api=api, resolution=resolution,
                                 variables=variables, start=first, end=end)
        return Fetched(forcing=frame, forcing_kind=kind)

    return [run_row(store, settings, registry, source=source, key=key, fetch=fetch, since=since,
                    progress=progress, now=current, summary=summary)]


# --- ISMN archives: read once, one batch per registry site ------------------------------------------
def ingest_ismn(
    store: Store,
    settings: Settings,
    registry: Registry,
    archive: str | Path,
    *,
    networks: list[str] | None = None,
    stations: list[str] | None = None,
    since: pd.Timestamp | None = None,
    progress: Progress | None = None,
    now: pd.Timestamp | None = None,
) -> list[IngestSummary]:
    """Ingest an ISMN archive (zip or folder) for the registry's sites with ``sources.ismn``.

    One batch per site: readings after the site's watermark (``since`` overrides it), validated with
    ISMN's flags applied (``quality/ismn_flags.py``), written with their quarantine and watermark in one
    transaction. The same archive ingested twice changes nothing: every reading is at or before the
    watermark the first run left. Stations of the archive without a registry site are reported as
    skipped (``smmdn sites import ismn`` writes their entries). An unreadable archive fails as one batch
    and writes nothing.
    """
    from smmdn.sources.ismn import read_ismn

    since, now = utc(since), utc(now)
    mapped = {(s.sources.ismn.network, s.sources.ismn.station): s for s in registry.sites if s.sources.ismn}
    head = IngestSummary("ismn", Path(archive).name)
    out: list[IngestSummary] = []

    def report(summary: IngestSummary) -> None:
        out.append(summary)
        if progress:
            progress(summary.line())

    try:
        data = read_ismn(archive, networks=networks, stations=stations, work_dir=settings.home / "tmp")
    except (SourceError, InputError) as exc:
        report(failed(head, exc))
        return out
    origin = data.origin if data.origin is not None else pd.DataFrame(index=data.observations.index)
    frame = data.observations.join(origin)
    for row in data.sites.to_dict("records"):
        site = mapped.get((row["network"], row["station"]))
        if site is None:
            skipped = IngestSummary("ismn", str(row["site"]), status="skipped")
            skipped.notes.append(f"station {row['network']}/{row['station']} is not in the registry "
                                 f"(smmdn sites import ismn {archive})")
            report(skipped)
            continue
        obs = frame[frame["site"] == row["site"]].assign(site=site.id)

        def fetch(wm: pd.Timestamp | None, start: pd.Timestamp | None, obs: pd.DataFrame = obs) -> Fetched:
            new = obs if wm is None else obs[obs["time"] > wm]
            return Fetched(new.reset_index(drop=True)) if not new.empty else Fetched(up_to_date=True)

        report(run_row(store, settings, registry, source="ismn", key=site.id, fetch=fetch, since=since, now=now))
    if data.missing:
        log.info("ismn[%s]: %d readings without a value (not kept)", head.key, data.missing)
    return out
