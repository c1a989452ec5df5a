"""What one ingest step brought in, and how any failure is judged (the input's fault or the environment's).

Why its own module: every row of the source table and the landing directory report the same summary
and fail the same way, so a failing source or file is reported and does not stop the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from smmdn.errors import EnvironmentFault, InputError, SmmdnError, SourceError, SourceUnreachable

if TYPE_CHECKING:
    from smmdn.store import Store

log = logging.getLogger("smmdn.ingest")  # one logger name for the whole package (operators filter on it)
Progress = Callable[[str], None]


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
    environment: bool = False  # the database, disk or permissions failed (CLI exit 3); the input was not judged
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


def utc(value: Any) -> pd.Timestamp | None:
    """Timestamps from callers (CLI strings, flow parameters) as UTC; naive ones are taken as UTC."""
    if value is None:
        return None
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def classify(exc: BaseException, store: Store = None) -> SmmdnError:
    """Any exception as an smmdn error: the data's fault (``InputError``) or the environment's.

    Database exceptions are translated by the store (a refused value is the data's fault, a lost
    connection the environment's); ``OSError`` (permission, disk full) is the environment; anything
    else raised while reading or checking one file is taken as that file's fault, so a parser bug
    triggered by odd bytes rejects one file (retryable with ``smmdn ingest retry``) instead of the run.
    """
    from smmdn.store.errors import translate

    if isinstance(exc, SmmdnError):
        return exc
    translated = translate(exc, getattr(store, "engine", None))  # names the database (password masked)
    if translated is not None:
        return translated
    if isinstance(exc, OSError):
        return EnvironmentFault(f"{type(exc).__name__}: {exc}",
                                fix="check permissions and free space of the path named, then rerun")
    return InputError(f"unexpected {type(exc).__name__} while reading: {exc}",
                      fix="inspect the file; after a fix run `smmdn ingest retry`")


def is_environment(exc: BaseException) -> bool:
    """True when the failure is not the input's (nothing may be rejected because of it)."""
    return isinstance(exc, EnvironmentFault | SourceUnreachable)


def failed(summary: IngestSummary, exc: Exception) -> IngestSummary:
    """Mark a summary failed, saying whether a retry can help and whether the environment is at fault."""
    summary.status, summary.error = "failed", str(exc)
    summary.retryable = isinstance(exc, SourceError | EnvironmentFault)
    summary.environment = isinstance(exc, EnvironmentFault | SourceUnreachable)
    log.warning("%s", summary.line())
    return summary


def run(summary: IngestSummary, progress: Progress | None, body: Callable[[], IngestSummary]) -> IngestSummary:
    """Run one step: smmdn errors and environment failures become a failed summary, bugs propagate."""
    try:
        summary = body()
    except (SourceError, InputError, EnvironmentFault) as exc:
        summary = failed(summary, exc)
    except Exception as exc:  # a database or disk failure: say so, never a raw traceback
        error = classify(exc)
        if not is_environment(error):
            raise
        summary = failed(summary, error)
    else:
        log.info("%s", summary.line())
    if progress:
        progress(summary.line())
    return summary
