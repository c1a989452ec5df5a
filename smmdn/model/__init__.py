"""The model: Gaussian-mixture LSTM (see ``smmdn.model.api`` for the high-level API flows call).

Public API (imported lazily so ``import smmdn.model.mixture`` does not pull in torch):

- ``fit(observations, forcing, sites, config, *, train_end, test_sites=(), seed=None) -> TrainedModel``
- ``fine_tune(model, observations, forcing, sites, *, train_end=None, recent_steps=None, epochs=None,
  lr=None) -> TrainedModel``
- ``TrainedModel.save(dir)``, ``load_model(dir) -> TrainedModel``
- ``predict_forecast(model, observations, forcing, sites, issue_time, horizon) -> DataFrame``
- ``predict_simulation(model, observations, forcing, sites, start, end) -> DataFrame``
- ``score_window(model, observations, forcing, sites, start, end, *, horizon=None) -> {"crps", "n"}``
- ``TrainConfig`` (all settings; JSON in checkpoints)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "fit": "smmdn.model.api",
    "fine_tune": "smmdn.model.api",
    "predict_forecast": "smmdn.model.api",
    "predict_simulation": "smmdn.model.api",
    "score_window": "smmdn.model.api",
    "TrainedModel": "smmdn.model.checkpoint",
    "load_model": "smmdn.model.checkpoint",
    "TrainConfig": "smmdn.model.train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'smmdn.model' has no attribute {name!r}")
