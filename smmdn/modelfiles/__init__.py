"""Model artifacts and flow results on storage shared by CPU and GPU hosts (``Settings.shared_storage_url``).

Why a URL: the GPU worker that trains and the CPU worker that forecasts are different machines (or
pods); both must read the same checkpoint by the ``artifact_uri`` recorded in ``model_versions``.
``file:///mnt/smmdn`` (an NFS/PVC mount) is read in place; any other fsspec URL (``s3://…``,
``gs://…``, ``memory://`` in tests) is copied to a local cache on first load. Unset: ``model_dir``.
Files only (fsspec), no SQL: the model *registry* is ``smmdn.store.models``.
"""

from smmdn.modelfiles.location import local_path, model_uri, results_uri, storage_root
from smmdn.modelfiles.transfer import load_model_uri, save_model

__all__ = ["load_model_uri", "local_path", "model_uri", "results_uri", "save_model", "storage_root"]
