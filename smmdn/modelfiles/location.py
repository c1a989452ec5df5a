"""Where model files live: the shared storage root and the URIs under it."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from smmdn.config import Settings


def storage_root(settings: Settings) -> str:
    """The shared storage URL without a trailing slash (``file://`` URL of ``model_dir`` when unset)."""
    if settings.shared_storage_url:
        return settings.shared_storage_url.rstrip("/")
    return settings.path("model").resolve().as_uri()


def local_path(url: str) -> Path | None:
    """The filesystem path of a ``file://`` URL (or a bare path); None for remote schemes."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        return Path(url2pathname(parsed.path)) if parsed.scheme else Path(url)
    return None


def model_uri(settings: Settings, version: str) -> str:
    return f"{storage_root(settings)}/models/{version}"


def results_uri(settings: Settings) -> str:
    """Where Prefect persists flow and task results (both worker kinds read them)."""
    return f"{storage_root(settings)}/prefect-results"
