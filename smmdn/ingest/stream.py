"""One large landing file in bounded memory: chunks parsed, validated and staged; published at once.

Why: a 200 MB logger file read whole (each record a Python list, read twice, all frames kept) took
12.7 GB. Here the file is read once, block by block, with its sha256 computed on the way; one chunk of
records is parsed and validated at a time (Great Expectations per chunk, Data Docs for the first), its
clean rows staged in a temporary table and its bad rows quarantined, all in one transaction that is
committed only after the last chunk: the staged rows are merged into ``observations`` and the file is
recorded as processed together. A file that fails half-way leaves nothing (the caller rejects it or
keeps it in landing, exactly as for a small file); bytes already processed under another name are
rolled back and reported as skipped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from smmdn.config import Settings
from smmdn.ingest.batch import HISTORY_CONTEXT, docs_dir, not_yet_quarantined, observation_rules, open_quarantine
from smmdn.ingest.summary import IngestSummary
from smmdn.registry import Registry, Site, Toa5Source

if TYPE_CHECKING:
    from smmdn.store import Store

STREAM_CHUNK_ROWS = 250_000  # observation rows (records × mapped columns) parsed and validated at a time
SERIES = ["site", "depth_cm", "sensor"]


class AlreadySeen(Exception):
    """The streamed bytes were processed before (under another name): nothing of this run is kept."""

    def __init__(self, sha256: str) -> None:
        super().__init__(sha256)
        self.sha256 = sha256


def records_per_chunk(spec: Toa5Source, chunk_rows: int) -> int:
    """Records per chunk so that a chunk holds about ``chunk_rows`` observation rows."""
    return max(1, int(chunk_rows) // max(1, len(spec.columns)))


def _tail(history: pd.DataFrame | None, clean: pd.DataFrame) -> pd.DataFrame:
    """The last ``HISTORY_CONTEXT`` of what came before plus this chunk's clean rows: the next chunk's
    spike/flatline/gap context (bounded by time, not by the file's length)."""
    rows = clean[[*SERIES, "time", "vwc"]]
    if history is not None and not history.empty:
        rows = pd.concat([history[[*SERIES, "time", "vwc"]].astype({"site": object, "sensor": object}),
                          rows.astype({"site": object, "sensor": object})], ignore_index=True)
    t = pd.to_datetime(rows["time"], utc=True)
    return rows.loc[t >= t.max() - HISTORY_CONTEXT].reset_index(drop=True)


def _one_at_a_time(first: list[Any], rest: Iterator[Any]) -> Iterator[Any]:
    """``first``'s one chunk, then ``rest``, keeping no reference to a chunk already handed out.

    Why not ``itertools.chain([first], rest)``: chain keeps its arguments, so the list with the first
    chunk (tens of MB of Python objects) lived until the last chunk; a chunk held beside the one being
    parsed doubles the peak and fragments the allocator's arenas (RSS crept with every chunk).
    """
    yield first.pop()
    yield from rest


def ingest_streamed(store: Store, settings: Settings, registry: Registry, *, path: Path, reader: Any,
                    first: Any, site: Site, spec: Toa5Source, summary: IngestSummary,
                    chunk_rows: int = STREAM_CHUNK_ROWS, now: pd.Timestamp | None = None) -> tuple[IngestSummary, str]:
    """Stream ``reader`` (a ``sources.toa5.Toa5Reader`` whose first chunk ``first`` is read) into the store.

    Returns (summary, sha256). Raises what a small file would (``InputError``/``SourceError`` for the
    data, database errors for the environment) with nothing written, or ``AlreadySeen``.
    """
    from smmdn.quality.validate import validate_observations
    from smmdn.sources.toa5 import to_observations, unreadable_times_error
    from smmdn.store.staging import staged_observations

    now = now if now is not None else pd.Timestamp.now(tz="UTC")
    rules, docs, where = observation_rules(registry), docs_dir(settings, "toa5"), f"toa5:{summary.key}"
    existing = open_quarantine(store, "observations", "toa5")
    chunks = _one_at_a_time([first], reader.chunks(records_per_chunk(spec, chunk_rows)))
    del first  # from here on only the loop holds a chunk: one kept for the whole file is memory the next can't use
    history: pd.DataFrame | None = None
    data_docs: str | None = None
    records = bad_times = missing = unreadable = rows = clean = quarantined = 0
    reasons: Counter[str] = Counter()
    first_lines: list[int] = []
    first_stamp = ""
    parsed = 0
    with store.transaction() as tx, staged_observations(tx, "toa5") as stage:
        for chunk in chunks:  # not enumerate(): its reused (n, chunk) tuple holds a chunk while the next is read
            n, parsed = parsed, parsed + 1
            if n == 0 and chunk.records:
                first_stamp, first_lines = chunk.records[0][0], chunk.line_numbers[:10]
            batch = to_observations(chunk, site.id, spec, where=str(path), refuse_unreadable_times=False)
            records += len(chunk.records)
            bad_times += batch.bad_times
            missing += batch.missing_values
            unreadable += len(batch.bad_rows)
            if not batch.observations.empty:
                if history is None:
                    t0 = batch.observations["time"].min()
                    history = store.read_observations(sites=[site.id], start=t0 - HISTORY_CONTEXT, end=t0)
                result = validate_observations(batch.observations, rules, now=now,
                                               docs_dir=docs if n == 0 else None, history=history, where=where)
                data_docs = data_docs or result.data_docs
                stage.add(result.clean)
                if not result.clean.empty:
                    history = _tail(history, result.clean)
                fresh = not_yet_quarantined(store, result.quarantined, "observations", "toa5", existing)
                summary.quarantined += tx.write_quarantine(fresh, table="observations", source="toa5")
                summary.flagged += int((result.clean["quality_flag"] != "ok").sum())
                rows += result.summary["rows"]
                clean += result.summary["clean"]
                quarantined += result.summary["quarantined"]
                reasons.update(result.summary["quarantine_reasons"])
            if not batch.bad_rows.empty:
                summary.quarantined += tx.write_quarantine(batch.bad_rows, table="observations", source="toa5")
            summary.fetched += len(batch.observations) + len(batch.bad_rows)
            # drop this chunk's records and frames before the next is read: the loop variables would hold
            # them until the generator yields, two chunks at once at the peak
            chunk = batch = result = None  # type: ignore[assignment]
        if records and bad_times == records:
            raise unreadable_times_error(first_stamp, first_lines, spec, str(path))
        sha = reader.sha256()
        if store.file_seen(sha):
            raise AlreadySeen(sha)
        written, repeats = stage.publish()
        summary.inserted, summary.updated, summary.unchanged = written.inserted, written.updated, written.unchanged
        summary.quarantined += repeats
        if repeats:
            reasons.update({"duplicate(across chunks)": repeats})
        observations = {"table": "observations", "rows": rows, "clean": clean - repeats,
                        "quarantined": quarantined + repeats, "flagged": summary.flagged,
                        "quarantine_reasons": dict(sorted(reasons.items())), "chunks": parsed,
                        "success": quarantined + repeats == 0}
        success = observations["success"] and not unreadable
        summary.validation_run = tx.write_validation_run(
            where, bool(success), {"observations": observations} | ({"unreadable_rows": unreadable}
                                                                    if unreadable else {}), data_docs)
        tx.record_file("toa5", str(path), sha, "processed")
    summary.data_docs = data_docs
    summary.notes.append(f"streamed: {records} records in {parsed} chunk(s), published at once")
    if missing:
        summary.notes.append(f"{missing} NAN values (missing at the logger)")
    if not rows and not unreadable:
        summary.status = "empty"
    return summary, sha
