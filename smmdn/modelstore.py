"""Model artifacts and flow results on storage shared by CPU and GPU hosts (``Settings.shared_storage_url``).

Why a URL: the GPU worker that trains and the CPU worker that forecasts are different machines (or
pods); both must read the same checkpoint by the ``artifact_uri`` recorded in ``model_versions``.
``file:///mnt/smmdn`` (an NFS/PVC mount) is read in place; any other fsspec URL (``s3://…``,
``gs://…``, ``memory://`` in tests) is copied to a local cache on first load. Unset: ``model_dir``.
"""

from __future__ import annotations

import shutil
import tempfile
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


def save_model(model: object, settings: Settings, version: str) -> str:
    """Write ``model`` (a ``TrainedModel``) under the shared root; returns its URI."""
    uri = model_uri(settings, version)
    path = local_path(uri)
    if path is not None:
        model.save(path)  # type: ignore[attr-defined]
        return uri
    import fsspec

    with tempfile.TemporaryDirectory() as tmp:
        model.save(tmp)  # type: ignore[attr-defined]
        fs, root = fsspec.core.url_to_fs(uri)
        for file in Path(tmp).iterdir():
            fs.put_file(str(file), f"{root}/{file.name}")
    return uri


def load_model_uri(uri: str, settings: Settings) -> object:
    """Load a ``TrainedModel`` from its URI (remote ones through a local cache under ``model_dir``)."""
    from smmdn.model import load_model

    path = local_path(uri)
    if path is not None:
        return load_model(path)
    import fsspec

    fs, root = fsspec.core.url_to_fs(uri)
    cache = settings.path("model") / "cache" / Path(root).name
    if not (cache / "weights.pt").exists():
        tmp = cache.with_suffix(".part")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for remote in fs.ls(root, detail=False):
            fs.get_file(remote, str(tmp / Path(remote).name))
        shutil.rmtree(cache, ignore_errors=True)
        tmp.rename(cache)
    return load_model(cache)
