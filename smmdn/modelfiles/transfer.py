"""Writing a trained model to shared storage and reading it back (remote URLs through a local cache)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from smmdn.config import Settings
from smmdn.modelfiles.location import local_path, model_uri


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
