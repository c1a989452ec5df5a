"""A real daily cycle trains the production preset, and its model version says so (``smmdn models show``).

The flow tests shrink the network (``TINY``, as the demo does): the version must record exactly those
changes from the preset and nothing else, and must not claim the preset's backtest figures for them.
"""

from __future__ import annotations

import json

import pytest

from tests.flows.conftest import HISTORY, TINY, Ops, run_daily

pytestmark = [pytest.mark.postgres, pytest.mark.prefect, pytest.mark.slow]


def test_daily_cycle_records_the_production_preset(ops: Ops, capsys: pytest.CaptureFixture[str]) -> None:
    from smmdn.cli import main
    from smmdn.config import get_settings
    from smmdn.model.presets import config_hash, load_preset, preset_config

    summary = run_daily(ops, HISTORY)
    version = summary["training"]["version"]
    row = ops.store().model_versions().set_index("version").loc[version]
    recorded = row["metrics"]
    settings = get_settings()
    # what the cycle should have trained: the preset, the cycle's Settings, the tests' shrink
    expected = preset_config("production", components=settings.mixture_components, sigma_floor=settings.sigma_floor,
                             horizon=settings.forecast_horizon, progress=False, **TINY)
    assert recorded["preset"] == "production"
    got = {k: v for k, v in recorded["config"].items() if k != "seed"}
    assert got == {k: v for k, v in expected.to_dict().items() if k != "seed"}
    assert recorded["config_hash"] == config_hash(expected)
    assert recorded["preset_hash"] == config_hash(preset_config("production"))
    changed = set(recorded["changes_from_preset"])
    shrunk = {k for k, v in TINY.items() if k != "device" and load_preset("production")["settings"][k] != v}
    assert changed == shrunk | {"horizon"}  # SMMDN_FORECAST_HORIZON=3 in the flow tests; the preset says 7
    assert recorded["matches_preset"] is False and recorded["preset_backtest"] is None

    capsys.readouterr()
    assert main(["models", "show", version, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == version and shown["metrics"]["config_hash"] == recorded["config_hash"]
    assert main(["models", "show", version]) == 0
    text = capsys.readouterr().out
    assert "preset               production" in text and recorded["config_hash"] in text
    assert "changed hidden" in text and "not applicable" in text
    assert main(["models", "show", "no-such-version"]) == 2
