"""What every flow shares: settings, store and registry handles, and operator artifacts.

Flows stay thin: each task calls one library function and returns a small JSON-able summary (persisted,
so a retried or resumed parent does not redo finished work and the UI shows what each step returned).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from smmdn.config import Settings, get_settings


def settings() -> Settings:
    return get_settings()


def store(cfg: Settings | None = None) -> Any:
    from smmdn.store import Store

    return Store((cfg or settings()).resolved_database_url)


def registry(cfg: Settings | None = None) -> Any:
    from smmdn.ingest import registry_from_settings

    return registry_from_settings(cfg or settings())


def logger() -> Any:
    return get_run_logger()


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys: lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


def table(key: str, rows: Sequence[dict[str, Any]], description: str) -> None:
    """A keyed table artifact (same key every run, so the UI shows its history)."""
    clean = [{k: (v if isinstance(v, int | float | str | bool) or v is None else str(v)) for k, v in r.items()}
             for r in rows]
    create_table_artifact(key=artifact_key(key), table=clean, description=description)


def markdown(key: str, text: str, description: str) -> None:
    create_markdown_artifact(key=artifact_key(key), markdown=text, description=description)
