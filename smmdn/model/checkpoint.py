"""A trained model and its directory: weights, config, scalers, metrics, data fingerprint.

Why plain JSON beside a bare ``state_dict``: ``torch.load(weights_only=True)`` then loads the weights
without unpickling arbitrary objects, so a crafted checkpoint (a pickle with ``__reduce__``) is refused
instead of executing code.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from smmdn.errors import ModelError
from smmdn.model.data import Scalers
from smmdn.model.levels import SeriesCorrection
from smmdn.model.network import MixtureEnsemble, MixtureLSTM, NetworkConfig, build_network
from smmdn.model.train import TrainConfig

FORMAT_VERSION = 1
FILES = ("weights.pt", "model.json", "scalers.json", "metrics.json", "fingerprint.json")


@dataclass
class TrainedModel:
    """Network + everything needed to run it on new frames (scalers frozen at training time)."""

    network: MixtureLSTM | MixtureEnsemble
    config: TrainConfig
    scalers: Scalers
    spread: float = 1.0  # post-hoc spread factor fitted on the validation window
    spread_per_lead: list[float] = field(default_factory=list)  # forecast mode: one factor per lead
    spread_per_location: dict[str, float] = field(default_factory=dict)  # location key -> factor
    spread_by_distance: list[float] = field(default_factory=list)  # simulation: per block after the training end
    spread_distance_block: int = 0  # steps per block of ``spread_by_distance``
    correction: SeriesCorrection = field(default_factory=SeriesCorrection)  # simulation: per-series mean
    metrics: dict = field(default_factory=dict)
    fingerprint: dict = field(default_factory=dict)

    @property
    def components(self) -> int:
        return self.network.n_components

    def save(self, directory: str | Path) -> Path:
        """Write the model directory (created if needed); returns it."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in self.network.state_dict().items()}
        torch.save(state, out / "weights.pt")
        meta = {
            "format_version": FORMAT_VERSION,
            "train_config": self.config.to_dict(),
            "network_config": self.network.config.to_dict(),
            "spread": self.spread,
            "spread_per_lead": list(self.spread_per_lead),
            "spread_per_location": dict(self.spread_per_location),
            "spread_by_distance": list(self.spread_by_distance),
            "spread_distance_block": int(self.spread_distance_block),
        }
        if self.correction:
            meta["correction"] = self.correction.to_dict()
        _write_json(out / "model.json", meta)
        _write_json(out / "scalers.json", self.scalers.to_dict())
        _write_json(out / "metrics.json", self.metrics)
        _write_json(out / "fingerprint.json", self.fingerprint)
        _owner_only(out)
        return out


def _owner_only(directory: Path) -> None:
    """Weights and scalers are state: readable by their owner only (the directory 0700, files 0600)."""
    directory.chmod(0o700)
    for file in directory.iterdir():
        if file.is_file():
            file.chmod(0o600)


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, default=_json_default), encoding="utf-8")


def _json_default(value: object) -> object:
    if hasattr(value, "item"):
        return value.item()  # numpy scalars
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def load_model(directory: str | Path) -> TrainedModel:
    """Load a model directory written by ``TrainedModel.save``; refuses anything but plain tensors."""
    d = Path(directory)
    missing = [f for f in FILES[:3] if not (d / f).is_file()]
    if missing:
        raise ModelError(f"{d} is not a model directory: missing {', '.join(missing)}")
    try:
        state = torch.load(d / "weights.pt", map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, EOFError) as exc:
        raise ModelError(
            f"refusing to load {d / 'weights.pt'}: not a plain tensor state_dict (weights_only load failed: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}). Only load checkpoints you trust "
            "and that smmdn wrote."
        ) from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"refusing to load {d / 'weights.pt'}: expected a dict of tensors")
    meta = json.loads((d / "model.json").read_text(encoding="utf-8"))
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{d}: unsupported model format {meta.get('format_version')!r}")
    net = build_network(NetworkConfig(**meta["network_config"]))
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(f"{d}: weights do not match the stored network config: {exc}") from exc
    scalers = Scalers.from_dict(json.loads((d / "scalers.json").read_text(encoding="utf-8")))

    def opt(name: str) -> dict:
        p = d / name
        return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}

    return TrainedModel(
        network=net, config=TrainConfig.from_checkpoint(meta["train_config"]), scalers=scalers,
        spread=float(meta.get("spread", 1.0)), spread_per_lead=[float(f) for f in meta.get("spread_per_lead", [])],
        spread_per_location={str(k): float(v) for k, v in meta.get("spread_per_location", {}).items()},
        spread_by_distance=[float(f) for f in meta.get("spread_by_distance", [])],
        spread_distance_block=int(meta.get("spread_distance_block", 0)),
        correction=SeriesCorrection.from_dict(meta.get("correction")),
        metrics=opt("metrics.json"), fingerprint=opt("fingerprint.json"),
    )


def fingerprint(observations: pd.DataFrame, forcing: pd.DataFrame, sites: pd.DataFrame | None) -> dict:
    """Content hash and extent of the training data (which data made this model)."""
    h = hashlib.sha256()
    for frame in (observations, forcing, sites):
        if frame is None:
            continue
        ordered = frame.reindex(sorted(frame.columns), axis=1)
        h.update(pd.util.hash_pandas_object(ordered, index=False).to_numpy().tobytes())
    return {
        "sha256": h.hexdigest(),
        "observation_rows": len(observations),
        "forcing_rows": len(forcing),
        "time_min": str(observations["time"].min()) if len(observations) else None,
        "time_max": str(observations["time"].max()) if len(observations) else None,
        "sites": int(observations["site"].nunique()) if len(observations) else 0,
    }
