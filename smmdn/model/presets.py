"""Named training presets kept as data (``preset_files/NAME.json``), and the provenance a model version records.

Why data, not code: ``smmdn tune`` writes the chosen settings with its study's summary, the daily cycle
and ``smmdn backtest --preset NAME`` read the same file, so what runs every morning is what was measured.
A preset file holds ``settings`` (every ``TrainConfig`` field that changes behaviour), ``search_space``
(what ``smmdn tune`` may vary), ``study`` (the summary of the study that chose it, or null) and
``backtest`` (figures measured with exactly these settings, or null).

The config hash leaves out what does not change what is learnt from given data: the device, the
progress bar and the seed (a seed is a replicate of a preset, not another preset).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from smmdn.model.train import TrainConfig

PRESET_DIR = Path(__file__).resolve().parent / "preset_files"
PRODUCTION = "production"
NOT_HASHED = ("device", "progress", "seed")
# settings added after hashes were recorded: left out of the hash while at their default, so a config
# that does not use them keeps the hash it had (production.json's recorded figures stay attached)
HASHED_IF_SET = ("level_prior_steps", "anomaly_cap_floor", "range_margin")


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def load_preset(name: str, directory: Path | None = None) -> dict[str, Any]:
    """The preset file's content; ``ValueError`` naming the known presets when there is none."""
    path = (directory or PRESET_DIR) / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"unknown preset {name!r}: known presets are {', '.join(preset_names()) or 'none'}")
    return json.loads(path.read_text(encoding="utf-8"))


def preset_config(name: str, **settings: Any) -> TrainConfig:
    """``TrainConfig`` of a preset with ``settings`` on top (unknown setting names are an error)."""
    values = {**load_preset(name)["settings"], **settings}
    known = set(TrainConfig.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown training setting(s): {', '.join(unknown)}")
    return TrainConfig(**values)


def config_hash(config: TrainConfig | dict) -> str:
    """Short sha256 of the behaviour-changing settings (sorted JSON)."""
    values = config.to_dict() if isinstance(config, TrainConfig) else dict(config)
    values = TrainConfig.from_dict(values).to_dict()  # the same field set whatever the source
    for key in NOT_HASHED:
        values.pop(key, None)
    defaults = TrainConfig()
    for key in HASHED_IF_SET:
        if values.get(key) == getattr(defaults, key):
            values.pop(key, None)
    blob = json.dumps(values, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def changes_from_preset(config: TrainConfig, name: str) -> dict[str, dict[str, Any]]:
    """Settings of ``config`` that differ from the preset: ``{field: {"preset": a, "used": b}}``."""
    want = preset_config(name).to_dict()
    got = config.to_dict()
    return {k: {"preset": want[k], "used": got[k]} for k in want if k not in NOT_HASHED and want[k] != got[k]}


def provenance(config: TrainConfig, name: str = PRODUCTION) -> dict[str, Any]:
    """What a model version records about its training settings: the preset, both hashes, the changes, the
    full config, and the preset's measured backtest figures only when the config is exactly the preset's."""
    preset = load_preset(name)
    own, reference = config_hash(config), config_hash(preset_config(name))
    return {
        "preset": name,
        "config_hash": own,
        "preset_hash": reference,
        "matches_preset": own == reference,
        "changes_from_preset": changes_from_preset(config, name),
        "config": config.to_dict(),
        "preset_backtest": preset.get("backtest") if own == reference else None,
    }
