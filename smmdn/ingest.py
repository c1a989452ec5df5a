"""Ingest orchestration: fetch → validate → write clean rows + quarantine in one transaction → watermark.

These are the library functions the Prefect flows call (Prefect only arranges them). Why this order:
the watermark moves only after the rows it covers are committed, so a crash or a failed write means the
next run fetches the same rows again, and idempotent upserts make the repeat harmless. One failing
source or site is reported in its summary and does not stop the others.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import requests

from smmdn.config import Settings
from smmdn.errors import InputError, SourceError
from smmdn.quality.rules import ForcingRules, ObservationRules
from smmdn.registry import Registry, Site

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
HISTORY_CONTEXT = pd.Timedelta(days=3)  # stored rows that give spike/flatline/gap checks their context
LANDING_BATCH_ROWS = 500_000  # landing files validated and written together, up to this many rows


@dataclass
class IngestSummary:
    """What one source (and key: site, file or request group) brought in."""

    source: str
    key: str
    status: str = "ok"  # ok | empty | failed | rejected | skipped
    fetched: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0
    flagged: int = 0
    forcing_inserted: int = 0
    forcing_updated: int = 0
    watermark_before: pd.Timestamp | None = None
    watermark_after: pd.Timestamp | None = None
    validation_run: int | None = None
    data_docs: str | None = None
    error: str | None = None
    retryable: bool = False  # True for source (network/upstream) failures; bad data will not heal by retrying
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One line for logs and the CLI."""
        head = f"{self.source}[{self.key}] {self.status}"
        if self.status in ("failed", "rejected"):
            return f"{head}: {self.error}"
        parts = [f"fetched {self.fetched}", f"new {self.inserted}", f"updated {self.updated}",
                 f"quarantined {self.quarantined}", f"flagged {self.flagged}"]
        if self.forcing_inserted or self.forcing_updated:
            parts.append(f"forcing new {self.forcing_inserted} updated {self.forcing_updated}")
        if self.watermark_after is not None:
            parts.append(f"watermark {self.watermark_after.isoformat()}")
        return f"{head}: " + ", ".join(parts)


def _utc(value: Any) -> pd.Timestamp | None:
    """Timestamps from callers (CLI strings, flow parameters) as UTC; naive ones are taken as UTC."""
    if value is None:
        return None
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def load_sites(store: Any, registry: Registry) -> tuple[Any, Any]:
    """Upsert the registry's sites and sensors in one transaction → (sites WriteResult, sensors WriteResult)."""
    sites, sensors = registry.sites_frame(), registry.sensors_frame()
    with store.transaction() as tx:
        s = tx.upsert_sites(sites)
        n = tx.upsert_sensors(sensors) if not sensors.empty else None
    return s, n


def registry_from_settings(settings: Settings) -> Registry:
    """The registry named by ``SMMDN_REGISTRY_FILE`` (an ``InputError`` when unset)."""
    from smmdn.registry import load_registry

    if not settings.registry_file:
        raise InputError("no site registry configured", where="settings",
                         fix="set SMMDN_REGISTRY_FILE (see smmdn/registry/example.yaml)")
    return load_registry(settings.registry_file)


def observation_rules(registry: Registry) -> ObservationRules:
    return ObservationRules(vwc_max=registry.defaults.vwc_max, vwc_max_by_site=registry.vwc_max())


def _docs_dir(settings: Settings, source: str) -> Path:
    return settings.path("artifact") / "data-docs" / source


def _new_watermark(old: pd.Timestamp | None, frames: Iterable[pd.DataFrame], now: pd.Timestamp) -> pd.Timestamp | None:
    """Latest fetched time that is not in the future; never moves backwards."""
    latest = old
    for f in frames:
        if f is None or f.empty or "time" not in f:
            continue
        t = pd.to_datetime(f["time"], utc=True, errors="coerce")
        t = t[t <= now + pd.Timedelta(days=1)]
        if not t.empty and (latest is None or t.max() > latest):
            latest = t.max()
    return latest


def _not_yet_quarantined(store: Any, frame: pd.DataFrame, table: str, source: str) -> pd.DataFrame:
    """Rows not already open in quarantine (same source, site, time and reason).

    Why: a backfill or a ``lookback`` re-read fetches the same bad rows again; the quarantine must not
    pile up copies. Rows without a usable time are always kept (TOA5 files are deduplicated by sha256).
    """
    if frame.empty or "time" not in frame.columns or "site" not in frame.columns:
        return frame
    existing = store.list_quarantine(table=table, released=False)
    existing = existing[existing["source"] == source]
    if existing.empty:
        return frame

    def keys(sites: pd.Series, times: pd.Series, reasons: pd.Series) -> pd.Series:
        t = pd.to_datetime(times, utc=True, errors="coerce", format="mixed")
        iso = t.dt.strftime("%Y-%m-%dT%H:%M:%S").fillna("")
        return sites.astype(str) + "|" + iso + "|" + reasons.astype(str)

    seen = set(keys(existing["site"], existing["time"], existing["reason"]))
    mine = keys(frame["site"], frame["time"], frame["reason"])
    has_time = ~mine.str.contains(r"\|\|", regex=True)
    return frame[~(has_time & mine.isin(seen))]


def write_batch(
    store: Any,
    settings: Settings,
    *,
    source: str,
    key: str,
    registry: Registry,
    observations: pd.DataFrame | None,
    forcing: pd.DataFrame | None = None,
    forcing_kind: str = "observed",
    issue_time: pd.Timestamp | None = None,
    watermark_before: pd.Timestamp | None = None,
    watermark_source: str | None = None,
    now: pd.Timestamp | None = None,
    summary: IngestSummary | None = None,
    extra_quarantine: pd.DataFrame | None = None,
    processed_files: Sequence[tuple[str, str]] = (),
    advance_watermark: bool = True,
) -> IngestSummary:
    """Validate and write one batch atomically (observations, forcing, both quarantines, watermark).

    ``extra_quarantine`` holds rows the parser could not read (e.g. broken TOA5 records);
    ``processed_files`` = [(path, sha256), …] are recorded in the same transaction, so a file counts
    as processed exactly when its rows are stored.
    """
    from smmdn.quality.validate import validate_forcing, validate_observations

    now = now if now is not None else pd.Timestamp.now(tz="UTC")
    summary = summary or IngestSummary(source, key, watermark_before=watermark_before)
    docs = _docs_dir(settings, source)
    obs_result = forcing_result = None
    summary.fetched = (0 if observations is None else len(observations)) + (0 if forcing is None else len(forcing))
    if observations is not None and not observations.empty:
        history = None
        series_sites = sorted(observations["site"].astype(str).unique())
        t0 = pd.to_datetime(observations["time"], utc=True, errors="coerce").min()
        if pd.notna(t0):
            history = store.read_observations(sites=series_sites, start=t0 - HISTORY_CONTEXT, end=t0)
        obs_result = validate_observations(observations, observation_rules(registry), now=now,
                                           docs_dir=docs, history=history, where=f"{source}:{key}")
    if forcing is not None and not forcing.empty:
        forcing_result = validate_forcing(forcing, ForcingRules(allow_future=forcing_kind == "forecast"),
                                          now=now, docs_dir=docs, where=f"{source}:{key}:forcing")
    has_extra = extra_quarantine is not None and not extra_quarantine.empty
    if obs_result is None and forcing_result is None and not has_extra:
        summary.status = "empty"
        for path, sha in processed_files:
            store.record_file(source, path, sha, "processed")
        return summary
    new_wm = _new_watermark(watermark_before, [observations, forcing], now)
    if forcing_kind == "forecast" and issue_time is not None:
        new_wm = issue_time if watermark_before is None else max(issue_time, watermark_before)
    # Filter repeats before the transaction: the write transaction then only writes.
    obs_q = _not_yet_quarantined(store, obs_result.quarantined, "observations", source) if obs_result else None
    forcing_q = None
    if forcing_result is not None:
        forcing_q = _not_yet_quarantined(store, forcing_result.quarantined, "forcing", source).assign(kind=forcing_kind)
        if issue_time is not None and "issue_time" not in forcing_q:
            forcing_q = forcing_q.assign(issue_time=issue_time.isoformat())
    with store.transaction() as tx:
        if obs_result is not None:
            if not obs_result.clean.empty:
                w = tx.write_observations(obs_result.clean, source=source)
                summary.inserted, summary.updated = w.inserted, w.updated
                summary.unchanged = getattr(w, "unchanged", 0)
            summary.quarantined += tx.write_quarantine(obs_q, table="observations", source=source)
            summary.flagged = int((obs_result.clean["quality_flag"] != "ok").sum())
        if forcing_result is not None:
            if not forcing_result.clean.empty:
                w = tx.write_forcing(forcing_result.clean, source=source, kind=forcing_kind, issue_time=issue_time)
                summary.forcing_inserted, summary.forcing_updated = w.inserted, w.updated
            summary.quarantined += tx.write_quarantine(forcing_q, table="forcing", source=source)
        if has_extra:
            summary.quarantined += tx.write_quarantine(extra_quarantine, table="observations", source=source)
        if new_wm is not None and advance_watermark:
            tx.set_watermark(watermark_source or source, key, new_wm)
        results = [r for r in (obs_result, forcing_result) if r is not None]
        summary.validation_run = tx.write_validation_run(
            f"{source}:{key}", all(r.success for r in results) and not has_extra,
            {r.table: r.summary for r in results} | ({"unreadable_rows": len(extra_quarantine)} if has_extra
                                                      else {}),
            results[0].data_docs if results else None,
        )
        for path, sha in processed_files:
            tx.record_file(source, path, sha, "processed")
    summary.watermark_after = new_wm
    summary.data_docs = next((r.data_docs for r in (obs_result, forcing_result) if r and r.data_docs), None)
    return summary


def _failed(summary: IngestSummary, exc: Exception) -> IngestSummary:
    summary.status, summary.error = "failed", str(exc)
    summary.retryable = isinstance(exc, SourceError)
    log.warning("%s", summary.line())
    return summary


def _run(summary: IngestSummary, progress: Progress | None, body: Callable[[], IngestSummary]) -> IngestSummary:
    try:
        summary = body()
    except (SourceError, InputError) as exc:
        summary = _failed(summary, exc)
    else:
        log.info("%s", summary.line())
    if progress:
        progress(summary.line())
    return summary


# --------------------------------------------------------------------------------------------------
def ingest_sensors(
    store: Any,
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
    from smmdn.sources.http import make_session

    since, until, now = _utc(since), _utc(until), _utc(now)
    session = session or make_session(settings)
    selected = registry.select(sites)
    out: list[IngestSummary] = []
    for site in selected:
        if site.sources.uscrn is not None:
            out.append(_ingest_uscrn(store, settings, registry, site, session, since, until, progress, now,
                                      lookback))
        if site.sources.sensorthings is not None:
            out.append(_ingest_sensorthings(store, settings, registry, site, session, since, until, progress, now,
                                      lookback))
        if site.sources.cosmos is not None:
            out.append(_ingest_cosmos(store, settings, registry, site, session, since, until, progress, now,
                                      lookback))
    if landing and any(s.sources.toa5 is not None for s in selected):
        out.extend(ingest_landing(store, settings, registry, sites=[s.id for s in selected], progress=progress,
                                  now=now))
    return out


def _fetch_start(wm: pd.Timestamp | None, since: pd.Timestamp | None,
                 lookback: pd.Timedelta | None) -> pd.Timestamp | None:
    if since is not None or wm is None or not lookback:
        return wm
    return wm - lookback


def _watermark(store: Any, source: str, key: str, since: pd.Timestamp | None) -> pd.Timestamp | None:
    return since if since is not None else store.get_watermark(source, key)


def _ingest_uscrn(store, settings, registry, site: Site, session, since, until, progress, now,  # type: ignore[no-untyped-def]
                   lookback=None):
    from smmdn.sources.uscrn import fetch_uscrn

    cfg = site.sources.uscrn
    assert cfg is not None
    wm = _watermark(store, "uscrn", site.id, since)
    start = _fetch_start(wm, since, lookback)
    summary = IngestSummary("uscrn", site.id, watermark_before=wm)

    def body() -> IngestSummary:
        obs, forcing = fetch_uscrn(session, settings, site.id, station_file=cfg.station_file, product=cfg.product,
                                   wban=cfg.wban, sensor=cfg.sensor, since=start, until=until)
        return write_batch(store, settings, source="uscrn", key=site.id, registry=registry, observations=obs,
                           forcing=forcing, forcing_kind="observed", watermark_before=wm, now=now,
                           summary=summary)

    return _run(summary, progress, body)


def _ingest_sensorthings(store, settings, registry, site: Site, session, since, until, progress, now,  # type: ignore[no-untyped-def]
                   lookback=None):
    from smmdn.sources.sensorthings import fetch_sensorthings

    cfg = site.sources.sensorthings
    assert cfg is not None
    wm = _watermark(store, "sensorthings", site.id, since)
    start = _fetch_start(wm, since, lookback)
    summary = IngestSummary("sensorthings", site.id, watermark_before=wm)

    def body() -> IngestSummary:
        triples = [(d.id, d.depth_cm, d.sensor) for d in cfg.datastreams]
        obs = fetch_sensorthings(session, settings, site.id, triples, since=start, until=until)
        return write_batch(store, settings, source="sensorthings", key=site.id, registry=registry,
                           observations=obs, watermark_before=wm, now=now, summary=summary)

    return _run(summary, progress, body)


def _ingest_cosmos(store, settings, registry, site: Site, session, since, until, progress, now,  # type: ignore[no-untyped-def]
                   lookback=None):
    cfg = site.sources.cosmos
    assert cfg is not None
    wm = _watermark(store, "cosmos", site.id, since)
    start = _fetch_start(wm, since, lookback)
    summary = IngestSummary("cosmos", site.id, watermark_before=wm)

    def body() -> IngestSummary:
        from smmdn.sources.cosmos_http import fetch_cosmos

        obs, forcing = fetch_cosmos(session, settings, site.id, site_id=cfg.site_id, resolution=cfg.resolution,
                                    since=start, until=until)
        return write_batch(store, settings, source="cosmos", key=site.id, registry=registry, observations=obs,
                           forcing=forcing, forcing_kind="observed", watermark_before=wm, now=now,
                           summary=summary)

    return _run(summary, progress, body)


# --------------------------------------------------------------------------------------------------
@dataclass
class _LandingFile:
    path: Path
    sha256: str
    batch: Any  # smmdn.sources.toa5.Toa5Batch
    summary: IngestSummary

    @property
    def rows(self) -> int:
        return len(self.batch.observations) + len(self.batch.bad_rows)

    @property
    def alone(self) -> bool:
        """Validated on its own: a file in percent would pass unnoticed inside a batch of fractions."""
        from smmdn.quality.validate import VWC_FRACTION_MEDIAN_MAX

        vwc = pd.to_numeric(self.batch.observations.get("vwc", pd.Series(dtype=float)), errors="coerce")
        return bool(vwc.median() > VWC_FRACTION_MEDIAN_MAX) if vwc.notna().any() else False


def ingest_landing(
    store: Any,
    settings: Settings,
    registry: Registry,
    *,
    sites: list[str] | None = None,
    progress: Progress | None = None,
    now: pd.Timestamp | None = None,
    settle_s: float = 30.0,
    batch_rows: int = LANDING_BATCH_ROWS,
) -> list[IngestSummary]:
    """Process TOA5 files in the landing directory, each exactly once (by sha256).

    Files modified less than ``settle_s`` seconds ago are left for the next run (still uploading).

    Good files → rows stored, bad records quarantined, files moved to ``processed/``. Unreadable file →
    moved to ``rejected/`` with ``<name>.reason.txt``. A file already seen (same bytes) is moved to
    ``processed/`` without being read again.

    Why batches: a network drops one file per logger per day, and validating each alone costs a Great
    Expectations run (~1 s) per file. The readable files of a run are therefore validated and written
    together (one transaction, up to ``batch_rows`` rows; one summary per batch). A batch-level
    validation failure falls back to file by file, so only the offending file is rejected.
    """
    from smmdn.sources.toa5 import landing_files, read_logger_file, sha256_bytes

    now = _utc(now)
    landing = settings.path("landing")
    out: list[IngestSummary] = []
    pending: list[_LandingFile] = []

    def report(summary: IngestSummary) -> None:
        out.append(summary)
        if progress:
            progress(summary.line())

    for path in landing_files(landing, settle_s=settle_s):
        summary = IngestSummary("toa5", path.name)
        try:
            sha = sha256_bytes(path.read_bytes())
        except FileNotFoundError:  # taken by a concurrent run: not ours to report
            continue
        except OSError as exc:  # unreadable now: try again next run
            out.append(_failed(summary, SourceError(f"{path}: {exc}")))
            continue
        if store.file_seen(sha) or any(f.sha256 == sha for f in pending):
            summary.status = "skipped"
            summary.notes.append("already processed (same sha256)")
            _move(path, landing / "processed")
            report(summary)
            continue
        try:
            _, batch = read_logger_file(path, registry)
        except FileNotFoundError:
            continue
        except (SourceError, InputError) as exc:
            report(_reject(store, landing, path, sha, summary, exc))
            continue
        if sites and batch.site not in sites:
            summary.status = "skipped"
            summary.notes.append(f"site {batch.site} not selected")
            report(summary)
            continue
        summary.key = f"{batch.site}:{path.name}"
        pending.append(_LandingFile(path, sha, batch, summary))

    for group in _landing_groups(pending, batch_rows):
        try:
            summaries = [_write_landing(store, settings, registry, group, now)]
        except (SourceError, InputError) as exc:
            if len(group) == 1:
                f = group[0]
                summaries = [_reject(store, landing, f.path, f.sha256, f.summary, exc)]
            else:  # one file spoils the batch: find it, keep the others
                summaries = _landing_one_by_one(store, settings, registry, group, now, landing)
        else:
            for f in group:
                _move(f.path, landing / "processed")
        for summary in summaries:
            report(summary)
    return out


def _landing_groups(files: list[_LandingFile], batch_rows: int) -> list[list[_LandingFile]]:
    groups: list[list[_LandingFile]] = []
    size = 0
    alone = [[f] for f in files if f.alone]
    for f in files:
        if f.alone:
            continue
        if not groups or size + f.rows > batch_rows:
            groups.append([])
            size = 0
        groups[-1].append(f)
        size += f.rows
    return groups + alone


def _write_landing(store: Any, settings: Settings, registry: Registry, group: list[_LandingFile],
                   now: pd.Timestamp | None) -> IngestSummary:
    """Validate and write a group of landing files in one transaction (raises ``InputError`` for the batch)."""
    if len(group) == 1:
        summary = group[0].summary
    else:
        names = [f.path.name for f in group]
        summary = IngestSummary("toa5", f"landing:{len(group)} files")
        more = f" … (+{len(names) - 20})" if len(names) > 20 else ""
        summary.notes.append("files: " + ", ".join(names[:20]) + more)
    frames = [f.batch.observations for f in group if not f.batch.observations.empty]
    bad = [f.batch.bad_rows for f in group if not f.batch.bad_rows.empty]
    summary = write_batch(store, settings, source="toa5", key=summary.key, registry=registry,
                          observations=pd.concat(frames, ignore_index=True) if frames else None,
                          now=now, summary=summary,
                          extra_quarantine=pd.concat(bad, ignore_index=True) if bad else None,
                          processed_files=[(str(f.path), f.sha256) for f in group], advance_watermark=False)
    summary.fetched += sum(len(f.batch.bad_rows) for f in group)
    missing = sum(f.batch.missing_values for f in group)
    if missing:
        summary.notes.append(f"{missing} NAN values (missing at the logger)")
    return summary


def _landing_one_by_one(store: Any, settings: Settings, registry: Registry, group: list[_LandingFile],
                        now: pd.Timestamp | None, landing: Path) -> list[IngestSummary]:
    out = []
    for f in group:
        try:
            summary = _write_landing(store, settings, registry, [f], now)
        except (SourceError, InputError) as exc:
            out.append(_reject(store, landing, f.path, f.sha256, f.summary, exc))
        else:
            _move(f.path, landing / "processed")
            out.append(summary)
    return out


def _reject(store: Any, landing: Path, path: Path, sha: str, summary: IngestSummary,
            exc: Exception) -> IngestSummary:
    """Move an unusable file to ``rejected/`` with its reason beside it; record it so it is not retried."""
    summary.status, summary.error = "rejected", str(exc)
    target = _move(path, landing / "rejected")
    target.with_name(target.name + ".reason.txt").write_text(str(exc) + "\n", encoding="utf-8")
    store.record_file("toa5", str(path), sha, "rejected", reason=str(exc))
    log.warning("%s", summary.line())
    return summary


def _move(path: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    n = 1
    while target.exists():
        target = folder / f"{path.stem}.{n}{path.suffix}"
        n += 1
    try:
        shutil.move(str(path), target)
    except FileNotFoundError:  # moved by a concurrent run meanwhile
        log.info("%s already moved", path)
    return target


# --------------------------------------------------------------------------------------------------
def ingest_forcing(
    store: Any,
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
    from smmdn.sources.open_meteo import ATTRIBUTION, KIND_FOR_API, Location, fetch_open_meteo, issue_time_now

    since, until = _utc(since), _utc(until)
    session = session or make_session(settings)
    now = _utc(now) if now is not None else pd.Timestamp.now(tz="UTC")
    locations = [
        Location(s.id, s.forcing.open_meteo.latitude, s.forcing.open_meteo.longitude, s.lst_utc_offset_hours or 0.0)
        for s in registry.select(sites) if s.forcing.open_meteo is not None
    ]
    source = "open-meteo"
    key = f"{api}:{resolution}"
    wm = _watermark(store, source, key, since)
    summary = IngestSummary(source, key, watermark_before=wm)
    if not locations:
        summary.status = "empty"
        summary.notes.append("no site has forcing.open_meteo")
        return [summary]
    kind = KIND_FOR_API[api]
    summary.notes.append(ATTRIBUTION)

    def body() -> IngestSummary:
        issue_time = None
        if api == "forecast":
            issue_time = issue_time_now() if now is None else now.floor("h")
            frame = fetch_open_meteo(session, settings, locations, api="forecast", resolution=resolution,  # type: ignore[arg-type]
                                     variables=variables, forecast_days=forecast_days, past_days=past_days)
        else:
            end = until if until is not None else now.normalize() - pd.Timedelta(days=1)
            start = wm + pd.Timedelta(days=1) if wm is not None else end - pd.Timedelta(days=30)
            if start.normalize() > end.normalize():
                summary.status = "empty"
                summary.notes.append("up to date")
                return summary
            frame = fetch_open_meteo(session, settings, locations, api=api, resolution=resolution,  # type: ignore[arg-type]
                                     variables=variables, start=start, end=end)
        return write_batch(store, settings, source=source, key=key, registry=registry, observations=None,
                           forcing=frame, forcing_kind=kind, issue_time=issue_time, watermark_before=wm,
                           now=now, summary=summary)

    return [_run(summary, progress, body)]


# --------------------------------------------------------------------------------------------------
def ingest_ismn(
    store: Any,
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

    since, now = _utc(since), _utc(now)
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
        report(_failed(head, exc))
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
        report(_ingest_ismn_site(store, settings, registry, site, obs, since, now))
    if data.missing:
        log.info("ismn[%s]: %d readings without a value (not kept)", head.key, data.missing)
    return out


def _ingest_ismn_site(store: Any, settings: Settings, registry: Registry, site: Site, obs: pd.DataFrame,
                      since: pd.Timestamp | None, now: pd.Timestamp | None) -> IngestSummary:
    wm = _watermark(store, "ismn", site.id, since)
    summary = IngestSummary("ismn", site.id, watermark_before=wm)

    def body() -> IngestSummary:
        new = obs if wm is None else obs[obs["time"] > wm]
        if new.empty:
            summary.status = "empty"
            summary.notes.append("up to date")
            return summary
        return write_batch(store, settings, source="ismn", key=site.id, registry=registry,
                           observations=new.reset_index(drop=True), watermark_before=wm, now=now, summary=summary)

    return _run(summary, progress=None, body=body)
