"""Validate one batch and write it atomically: clean rows, both quarantines, validation run, watermark.

Why this order: the watermark moves only after the rows it covers are committed, so a crash or a failed
write means the next run fetches the same rows again, and idempotent upserts make the repeat harmless.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from smmdn.config import Settings
from smmdn.errors import InputError
from smmdn.ingest.summary import IngestSummary
from smmdn.quality.rules import ForcingRules, ObservationRules
from smmdn.registry import Registry

if TYPE_CHECKING:
    from smmdn.store import Store

HISTORY_CONTEXT = pd.Timedelta(days=3)  # stored rows that give spike/flatline/gap checks their context


def load_sites(store: Store, registry: Registry) -> tuple[Any, Any]:
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
    """The registry's physical limits as validation rules."""
    return ObservationRules(vwc_max=registry.defaults.vwc_max, vwc_max_by_site=registry.vwc_max())


def docs_dir(settings: Settings, source: str) -> Path:
    """Where a source's Data Docs go."""
    return settings.path("artifact") / "data-docs" / source


def new_watermark(old: pd.Timestamp | None, frames: Iterable[pd.DataFrame | None],
                  now: pd.Timestamp) -> pd.Timestamp | None:
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


def open_quarantine(store: Store, table: str, source: str) -> pd.DataFrame:
    """The source's rows still open in quarantine for ``table`` (read once, filtered many times)."""
    existing = store.list_quarantine(table=table, released=False)
    return existing[existing["source"] == source]


def not_yet_quarantined(store: Store, frame: pd.DataFrame, table: str, source: str,
                        existing: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows not already open in quarantine (same source, site, time and reason).

    Why: a backfill or a ``lookback`` re-read fetches the same bad rows again; the quarantine must not
    pile up copies. Rows without a usable time are always kept (TOA5 files are deduplicated by sha256).
    ``existing`` (from ``open_quarantine``) spares a streamed file one read of the quarantine per chunk.
    """
    if frame.empty or "time" not in frame.columns or "site" not in frame.columns:
        return frame
    if existing is None:
        existing = open_quarantine(store, table, source)
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
    store: Store,
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
    docs = docs_dir(settings, source)
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
    new_wm = new_watermark(watermark_before, [observations, forcing], now)
    if forcing_kind == "forecast" and issue_time is not None:
        new_wm = issue_time if watermark_before is None else max(issue_time, watermark_before)
    # Filter repeats before the transaction: the write transaction then only writes.
    obs_q = not_yet_quarantined(store, obs_result.quarantined, "observations", source) if obs_result else None
    forcing_q = None
    if forcing_result is not None:
        forcing_q = not_yet_quarantined(store, forcing_result.quarantined, "forcing", source).assign(kind=forcing_kind)
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
            assert extra_quarantine is not None
            summary.quarantined += tx.write_quarantine(extra_quarantine, table="observations", source=source)
        if new_wm is not None and advance_watermark:
            tx.set_watermark(watermark_source or source, key, new_wm)
        results = [r for r in (obs_result, forcing_result) if r is not None]
        summary.validation_run = tx.write_validation_run(
            f"{source}:{key}", all(r.success for r in results) and not has_extra,
            {r.table: r.summary for r in results} | ({"unreadable_rows": len(extra_quarantine)}
                                                      if has_extra and extra_quarantine is not None else {}),
            results[0].data_docs if results else None,
        )
        for path, sha in processed_files:
            tx.record_file(source, path, sha, "processed")
    summary.watermark_after = new_wm
    summary.data_docs = next((r.data_docs for r in (obs_result, forcing_result) if r and r.data_docs), None)
    return summary
