"""Presets as data and config hashes; the KGE tail and skill-vs-persistence summaries of the backtest."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from smmdn.model.presets import changes_from_preset, config_hash, load_preset, preset_config, provenance
from smmdn.model.train import recommended_config
from smmdn.verify.metrics import kge, kge_parts, kge_tail, skill_vs_persistence


def test_production_is_the_forecast_daily_task_preset_and_hashes_ignore_seed_and_device() -> None:
    prod = preset_config("production")
    assert prod.mode == "forecast"
    task = recommended_config("forecast", True)
    study = load_preset("production")["study"]  # the forecast task preset with what `smmdn tune` chose
    assert config_hash(prod) == config_hash(dataclasses.replace(task, **study["best"]["settings"]))
    assert study["best"]["config_hash"] == config_hash(prod) == load_preset("production")["backtest"]["config_hash"]
    assert config_hash(preset_config("production", seed=4, device="cpu", progress=True)) == config_hash(prod)
    assert config_hash(preset_config("production", hidden=32)) != config_hash(prod)
    with pytest.raises(ValueError, match="unknown preset"):
        load_preset("no-such")
    with pytest.raises(ValueError, match="unknown training setting"):
        preset_config("production", hiddn=3)


def test_provenance_claims_backtest_figures_only_for_the_exact_preset() -> None:
    exact = provenance(preset_config("production", seed=9))
    assert exact["matches_preset"] and exact["changes_from_preset"] == {}
    assert exact["preset_backtest"] == load_preset("production")["backtest"]
    shrunk = provenance(preset_config("production", hidden=8))
    assert not shrunk["matches_preset"] and shrunk["preset_backtest"] is None
    assert changes_from_preset(preset_config("production", hidden=8), "production") == {
        "hidden": {"preset": 64, "used": 8}}


def test_kge_parts_rebuild_kge() -> None:
    rng = np.random.default_rng(0)
    obs = 0.2 + 0.05 * np.sin(np.arange(100) / 9)
    sim = 0.9 * obs + 0.03 + rng.normal(0, 0.005, 100)
    p = kge_parts(sim, obs)
    rebuilt = 1 - np.sqrt((p["kge_r"] - 1) ** 2 + (p["kge_alpha"] - 1) ** 2 + (p["kge_beta"] - 1) ** 2)
    assert rebuilt == pytest.approx(kge(sim, obs))


def _row(i: int, kge_value: float, **extra: float) -> dict:
    return {"site": f"S{i}", "depth_cm": 10.0, "sensor": "a", "kge": kge_value, "n": 100, "n_train": 200,
            "obs_sd": 0.05, "kge_r": 0.9, "kge_alpha": 0.95, "kge_beta": 1.0, **extra}


def test_kge_tail_names_the_worst_and_what_they_share() -> None:
    rows = [_row(i, 0.5 + i / 100) for i in range(40)]
    rows[3] = _row(3, -1.5, kge_beta=2.4, n_train=40, depth_cm=100.0)  # biased, short, deep
    rows[7] = _row(7, -0.8, kge_beta=1.8, obs_sd=0.004, depth_cm=100.0)
    rows[9] = _row(9, float("nan"))
    tail = kge_tail(rows)
    assert tail["n_series"] == 40 and tail["n_undefined"] == 1
    assert [w["site"] for w in tail["worst"][:3]] == ["S9", "S3", "S7"]  # undefined first: never hidden
    assert tail["worst"][1]["reasons"][0].startswith("bias (beta 2.40")
    assert "short history (40 training days)" in tail["worst"][1]["reasons"]
    assert any(r.startswith("little variance") for r in tail["worst"][2]["reasons"])
    finite = np.array([r["kge"] for r in rows if np.isfinite(r["kge"])])
    assert tail["mean"] == pytest.approx(finite.mean()) and tail["p10"] == pytest.approx(np.percentile(finite, 10))
    assert tail["traits"]["deep"]["share_of_tail"] > tail["traits"]["deep"]["share_of_all"]
    assert tail["traits"]["bias_dominant"]["share_of_tail"] > 2 * tail["traits"]["bias_dominant"]["share_of_all"]


def test_skill_vs_persistence_per_lead_and_target() -> None:
    per_lead = {str(h): {"crps_skill_persistence": 0.1 * h, "mean": {"crps": 1.0}, "mean_crps_persistence": 2.0,
                         "share_beating_persistence": 0.8} for h in range(1, 4)}
    out = skill_vs_persistence(per_lead)
    assert out["per_lead"]["2"]["skill_of_mean_crps"] == pytest.approx(0.5)
    assert out["ahead_at_every_lead"] and not out["target_met_at_every_lead"]  # lead 1 and 2 below 0.25
    per_lead["1"]["crps_skill_persistence"] = -0.01
    assert not skill_vs_persistence(per_lead)["ahead_at_every_lead"]
