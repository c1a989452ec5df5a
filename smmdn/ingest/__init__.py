"""Ingest: fetch → validate → write clean rows + quarantine in one transaction → watermark.

These are the library functions the Prefect flows call (Prefect only arranges them). ``pipeline`` holds
the one pipeline and the table of timed sources, ``landing`` the TOA5 landing directory (a file ledger
instead of a watermark), ``stream`` large files in bounded memory, ``batch`` the atomic write of one
batch, ``summary`` what a step reports and how failures are judged. One failing source, site or file is
reported in its summary and does not stop the others.
"""

from smmdn.ingest.batch import HISTORY_CONTEXT, load_sites, observation_rules, registry_from_settings, write_batch
from smmdn.ingest.landing import (
    LANDING_BATCH_ROWS,
    _LandingFile,
    _move,
    ingest_landing,
    rejected_files,
    retry_rejected,
)
from smmdn.ingest.pipeline import SENSOR_SOURCES, ingest_forcing, ingest_ismn, ingest_sensors
from smmdn.ingest.summary import IngestSummary, Progress, classify, is_environment

__all__ = [
    "HISTORY_CONTEXT",
    "LANDING_BATCH_ROWS",
    "SENSOR_SOURCES",
    "IngestSummary",
    "Progress",
    "_LandingFile",
    "_move",
    "classify",
    "ingest_forcing",
    "ingest_ismn",
    "ingest_landing",
    "ingest_sensors",
    "is_environment",
    "load_sites",
    "observation_rules",
    "registry_from_settings",
    "rejected_files",
    "retry_rejected",
    "write_batch",
]
