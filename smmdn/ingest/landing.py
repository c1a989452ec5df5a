"""TOA5 files in the landing directory: each processed exactly once (by sha256), bad files set aside.

The landing directory's "watermark" is the file ledger (``processed_files``): a file counts as seen
exactly when its rows are stored, in the same transaction. Readable files are validated and written
together in batches; a file that spoils its batch is found and rejected alone.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from smmdn.config import Settings
from smmdn.errors import InputError
from smmdn.ingest.batch import write_batch
from smmdn.ingest.summary import IngestSummary, Progress, classify, failed, is_environment, log, utc
from smmdn.registry import Registry

if TYPE_CHECKING:
    from smmdn.store import Store

LANDING_BATCH_ROWS = 500_000  # landing files validated and written together, up to this many rows


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
    store: Store,
    settings: Settings,
    registry: Registry,
    *,
    sites: list[str] | None = None,
    progress: Progress | None = None,
    now: pd.Timestamp | None = None,
    settle_s: float = 30.0,
    batch_rows: int = LANDING_BATCH_ROWS,
    only: set[str] | None = None,
    chunk_rows: int | None = None,
) -> list[IngestSummary]:
    """Process TOA5 files in the landing directory, each exactly once (by sha256).

    Files modified less than ``settle_s`` seconds ago are left for the next run (still uploading).

    Good files → rows stored, bad records quarantined, files moved to ``processed/``. A *data* error in a
    file (unreadable, fails validation, a value the database refuses) → that file moved to ``rejected/``
    with ``<name>.reason.txt``, a WARNING and a ``rejected`` summary; the others go on. An *environment*
    error (database down, permission, disk) judges nothing: the files stay in landing, their summaries
    say ``failed`` with ``environment=True`` (the CLI exits 3) and the next run tries again. Only
    successfully processed bytes count as seen: the same bytes dropped again after a rejection are read
    again (``smmdn ingest retry`` moves rejected files back). ``only`` limits the run to these names.

    Why batches: a network drops one file per logger per day, and validating each alone costs a Great
    Expectations run (~1 s) per file. The readable files of a run are therefore validated and written
    together (one transaction, up to ``batch_rows`` rows; one summary per batch). A batch-level
    validation failure falls back to file by file, so only the offending file is rejected. Pending
    files are written as soon as they reach ``batch_rows``, so memory does not grow with their number.

    Why streaming: a file bigger than one chunk (``chunk_rows`` observation rows, default
    ``stream.STREAM_CHUNK_ROWS``) is read once in chunks and published in its own transaction
    (``stream.ingest_streamed``): memory stays bounded whatever its size, and it is still all or nothing.
    """
    from smmdn.ingest.stream import STREAM_CHUNK_ROWS
    from smmdn.sources.toa5 import landing_files

    chunk_rows = STREAM_CHUNK_ROWS if chunk_rows is None else chunk_rows

    now = utc(now)
    landing = settings.path("landing")
    out: list[IngestSummary] = []
    pending: list[_LandingFile] = []

    def report(summary: IngestSummary) -> None:
        out.append(summary)
        if progress:
            progress(summary.line())

    candidates = [p for p in landing_files(landing, settle_s=settle_s) if only is None or p.name in only]
    for n, path in enumerate(candidates):
        summary = IngestSummary("toa5", path.name)
        try:
            opened = _open(path, registry, chunk_rows)
        except FileNotFoundError:  # taken by a concurrent run: not ours to report
            continue
        except OSError as exc:  # unreadable now (permissions, I/O): leave it, try again next run
            report(failed(summary, classify(exc)))
            continue
        if opened.streamed:  # bigger than one chunk: its own transaction, its sha256 known at the end
            report(_streamed(store, settings, registry, opened, summary, landing, sites, chunk_rows, now))
            continue
        sha = opened.sha256
        assert sha is not None
        try:
            seen = store.file_seen(sha)
        except Exception as exc:  # the database is gone: judge nothing, every file waits for the next run
            error = classify(exc, store)
            if not is_environment(error):
                raise
            for f in pending:
                report(failed(f.summary, error))
            for rest in candidates[n:]:
                report(failed(IngestSummary("toa5", rest.name), error))
            return out
        if seen or any(f.sha256 == sha for f in pending):
            summary.status = "skipped"
            summary.notes.append("already processed (same sha256)")
            _move(path, landing / "processed")
            report(summary)
            continue
        try:
            batch = opened.batch()
        except Exception as exc:
            error = classify(exc, store)
            if is_environment(error):
                report(failed(summary, error))
            else:
                report(_reject(store, landing, path, sha, summary, error))
            continue
        if sites and batch.site not in sites:
            summary.status = "skipped"
            summary.notes.append(f"site {batch.site} not selected")
            report(summary)
            continue
        summary.key = f"{batch.site}:{path.name}"
        pending.append(_LandingFile(path, sha, batch, summary))
        if sum(f.rows for f in pending if not f.alone) >= batch_rows:  # bounded: write what is pending now
            _write_pending(store, settings, registry, pending, batch_rows, now, landing, report)
            pending = []
    _write_pending(store, settings, registry, pending, batch_rows, now, landing, report)
    return out


@dataclass
class _Opened:
    """A landing file after its header and first chunk: small (read to the end), streamed, or unreadable."""

    path: Path
    reader: Any = None
    site: Any = None
    spec: Any = None
    first: Any = None
    error: Exception | None = None
    sha256: str | None = None  # known once every byte was read: small and unreadable files

    def take_first(self) -> Any:
        """The first chunk, no longer held here (a streamed file's first chunk must be freed once parsed)."""
        first, self.first = self.first, None
        return first

    @property
    def streamed(self) -> bool:
        return self.error is None and self.sha256 is None

    def batch(self) -> Any:
        """The small file's ``Toa5Batch`` (raises the error that made the file unreadable)."""
        from smmdn.sources.toa5 import to_observations

        if self.error is not None:
            raise self.error
        return to_observations(self.first, self.site.id, self.spec, where=str(self.path))


def _open(path: Path, registry: Registry, chunk_rows: int) -> _Opened:
    """Read a file's header and first chunk; ``OSError`` means the file cannot be read now."""
    from smmdn.ingest.stream import records_per_chunk
    from smmdn.sources.toa5 import open_logger_file, sha256_file

    try:
        reader, site, spec = open_logger_file(path, registry)
    except Exception as exc:
        if isinstance(exc, OSError):
            raise  # not TOA5, no mapping: judged after the ledger check, like any file
        return _Opened(path, error=exc, sha256=sha256_file(path))
    try:
        first = next(reader.chunks(records_per_chunk(spec, chunk_rows)))
        if not reader.exhausted:
            return _Opened(path, reader, site, spec, first)
        return _Opened(path, None, site, spec, first, sha256=reader.sha256())
    except OSError:
        reader.close()
        raise
    except Exception as exc:
        reader.close()
        return _Opened(path, error=exc, sha256=sha256_file(path))
    finally:
        if reader is not None and reader.exhausted:
            reader.close()


def _streamed(store: Store, settings: Settings, registry: Registry, opened: _Opened, summary: IngestSummary,
              landing: Path, sites: list[str] | None, chunk_rows: int, now: pd.Timestamp | None) -> IngestSummary:
    """A file bigger than one chunk: streamed in its own transaction, then moved (or rejected, or kept)."""
    from smmdn.ingest.stream import AlreadySeen, ingest_streamed

    reader, path = opened.reader, opened.path
    try:
        if sites and opened.site.id not in sites:
            summary.status = "skipped"
            summary.notes.append(f"site {opened.site.id} not selected")
            return summary
        summary.key = f"{opened.site.id}:{path.name}"
        try:
            summary, _ = ingest_streamed(store, settings, registry, path=path, reader=reader,
                                         first=opened.take_first(), site=opened.site, spec=opened.spec, summary=summary,
                                         chunk_rows=chunk_rows, now=now)
        except AlreadySeen:
            summary = IngestSummary("toa5", path.name, status="skipped", notes=["already processed (same sha256)"])
        except Exception as exc:
            error = classify(exc, store)
            if is_environment(error):  # judged nothing: the file stays in landing for the next run
                return failed(IngestSummary("toa5", summary.key), error)
            try:
                sha = reader.sha256()
            except OSError as read_exc:
                return failed(IngestSummary("toa5", summary.key), classify(read_exc))
            reader.close()
            return _reject(store, landing, path, sha, IngestSummary("toa5", summary.key), error)
        reader.close()
        _move(path, landing / "processed")
        return summary
    finally:
        reader.close()


def _write_pending(store: Store, settings: Settings, registry: Registry, pending: list[_LandingFile],
                   batch_rows: int, now: pd.Timestamp | None, landing: Path,
                   report: Callable[[IngestSummary], None]) -> None:
    """Validate and write the pending small files in groups; a spoiled group is retried file by file."""
    groups = _landing_groups(pending, batch_rows)
    for n, group in enumerate(groups):
        try:
            summaries = [_write_landing(store, settings, registry, group, now)]
        except Exception as exc:
            error = classify(exc, store)
            if is_environment(error):  # an outage judges no file: all stay in landing for the next run
                for rest in groups[n:]:
                    for f in rest:
                        report(failed(f.summary, error))
                break
            if len(group) == 1:
                f = group[0]
                summaries = [_reject(store, landing, f.path, f.sha256, f.summary, error)]
            else:  # one file spoils the batch: find it, keep the others
                summaries = _landing_one_by_one(store, settings, registry, group, now, landing)
        else:
            for f in group:
                _move(f.path, landing / "processed")
        for summary in summaries:
            report(summary)


def rejected_files(settings: Settings) -> list[Path]:
    """The files waiting in ``landing/rejected`` (their ``.reason.txt`` beside them)."""
    folder = settings.path("landing") / "rejected"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.endswith(".reason.txt"))


def retry_rejected(
    store: Store,
    settings: Settings,
    registry: Registry,
    names: Sequence[str] = (),
    *,
    all_rejected: bool = False,
    progress: Progress | None = None,
    now: pd.Timestamp | None = None,
) -> list[IngestSummary]:
    """Move rejected files (by name, or all) back to landing and process them now.

    Why: after the cause of a rejection is fixed (a registry mapping, a parser), the file must be
    ingested like any other; its bytes never counted as seen. The last rejection's reason stays in
    ``processed_files``; the stale ``.reason.txt`` goes, and a new one is written if it fails again.
    """
    available = {p.name: p for p in rejected_files(settings)}
    if all_rejected:
        chosen = list(available.values())
    else:
        if not names:
            raise InputError("nothing to retry", where="ingest retry", fix="name rejected files or pass --all-rejected")
        unknown = [n for n in names if Path(n).name not in available]
        if unknown:
            shown = ", ".join(sorted(available)[:10]) or "none"
            raise InputError(f"not in {settings.path('landing') / 'rejected'}: {', '.join(unknown)}",
                             where="ingest retry", rows=unknown, fix=f"name a rejected file (there: {shown})")
        chosen = [available[Path(n).name] for n in names]
    landing = settings.path("landing")
    moved = set()
    for path in chosen:
        target = _move(path, landing)
        path.with_name(path.name + ".reason.txt").unlink(missing_ok=True)
        moved.add(target.name)
    if not moved:
        return []
    return ingest_landing(store, settings, registry, progress=progress, now=now, settle_s=0.0, only=moved)


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


def _write_landing(store: Store, settings: Settings, registry: Registry, group: list[_LandingFile],
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


def _landing_one_by_one(store: Store, settings: Settings, registry: Registry, group: list[_LandingFile],
                        now: pd.Timestamp | None, landing: Path) -> list[IngestSummary]:
    out = []
    for n, f in enumerate(group):
        try:
            summary = _write_landing(store, settings, registry, [f], now)
        except Exception as exc:
            error = classify(exc, store)
            if is_environment(error):
                out.extend(failed(rest.summary, error) for rest in group[n:])
                break
            out.append(_reject(store, landing, f.path, f.sha256, f.summary, error))
        else:
            _move(f.path, landing / "processed")
            out.append(summary)
    return out


def _reject(store: Store, landing: Path, path: Path, sha: str, summary: IngestSummary,
            exc: Exception) -> IngestSummary:
    """Move an unusable file to ``rejected/`` with its reason beside it and in ``processed_files``.

    The record keeps the reason (also after a later successful retry); it does not make the bytes
    "seen": a fixed pipeline or ``smmdn ingest retry`` processes them again.
    """
    summary.status, summary.error = "rejected", str(exc)
    summary.notes.append("moved to rejected/; after a fix: smmdn ingest retry " + path.name)
    target = _move(path, landing / "rejected")
    target.with_name(target.name + ".reason.txt").write_text(str(exc) + "\n", encoding="utf-8")
    try:
        store.record_file("toa5", str(target), sha, "rejected", reason=str(exc))
    except Exception as record_exc:  # the reason file beside it still tells the operator
        log.warning("could not record the rejection of %s: %s", path.name, classify(record_exc))
    log.warning("%s", summary.line())
    return summary


def _move(path: Path, folder: Path) -> Path:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
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
