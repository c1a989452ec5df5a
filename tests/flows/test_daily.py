"""The daily cycle end to end under Prefect: cold start, idempotent reruns, degradation, champion rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.flows.conftest import HISTORY, Ops, artifacts, run_daily

pytestmark = [pytest.mark.postgres, pytest.mark.prefect, pytest.mark.slow]


def test_cold_start_cycle_then_rerun_adds_nothing(ops: Ops) -> None:
    summary = run_daily(ops, HISTORY)
    store = ops.store()
    assert summary["cold_start"] is True
    assert summary["training"]["kind"] == "full" and summary["training"]["status"] == "promoted"
    versions = store.model_versions()
    assert list(versions["status"]) == ["champion"]
    fc = summary["forecast"]
    assert fc["status"] == "complete" and not fc["stale_forcing"]
    latest = store.latest_forecasts()
    assert len(latest) == 2 * 3 * 3 == fc["rows"]  # 2 sites x 3 depths x 3 leads
    assert {"mean", "sd", "q05", "q95", "weight_0", "mean_0", "sigma_0"} <= set(latest.columns)
    assert (latest["q05"] <= latest["q95"]).all()
    runs = store.forecast_runs()
    assert runs.iloc[0]["status"] == "complete" and runs.iloc[0]["model_version"] == versions.iloc[0]["version"]
    assert runs.iloc[0]["validation"]["status"] in ("passed", "issues")
    assert artifacts("daily-summary") and artifacts("daily-cycle")
    assert "Daily cycle" in artifacts("daily-summary")[0].data

    counts = {t: store.count(t) for t in ("forecasts", "forecast_runs", "model_versions", "observations")}
    again = run_daily(ops, HISTORY)  # same day again: nothing new
    assert again["training"]["status"] == "exists" and again["forecast"]["status"] == "exists"
    assert {t: store.count(t) for t in counts} == counts


def test_forcing_down_retries_then_issues_flagged_stale(ops: Ops) -> None:
    run_daily(ops, HISTORY)
    ops.weather.down = True
    before = ops.weather.requests
    summary = run_daily(ops, HISTORY + 1)
    failed = [r for r in summary["ingest"]["failed"] if "forcing" in r["source"]]
    assert len(failed) == 2  # forecast and historical-forecast APIs both down
    assert ops.weather.requests - before >= 4  # each retried once by the task (SMMDN_HTTP_RETRIES=1)
    fc = summary["forecast"]
    assert fc["status"] == "complete" and fc["stale_forcing"] is True
    assert "old_forecast" in fc["freshness"]["stale_forcing_reason"]  # yesterday's forecast, flagged
    run = ops.store().forecast_runs().set_index("run_id").loc[fc["run_id"]]
    assert bool(run["stale_forcing"]) and "stale" in run["message"]
    assert len(ops.store().latest_forecasts()) == 18  # still issued for every series


def _poison(kind: str):  # type: ignore[no-untyped-def]
    """A training substitute: the real fine-tune, then weights made NaN / zeroed."""
    from smmdn.cycle import champion

    real = champion._fit

    def fit(k, champ, inputs, end, config):  # type: ignore[no-untyped-def]
        model = real(k, champ, inputs, end, config)
        with torch.no_grad():
            for p in model.network.parameters():
                p.fill_(float("nan")) if kind == "nan" else p.mul_(0).add_(torch.randn_like(p) * 3)
        return model

    return fit


def test_nan_training_keeps_champion(ops: Ops, monkeypatch: pytest.MonkeyPatch) -> None:
    from smmdn.cycle import champion

    first = run_daily(ops, HISTORY)["training"]["version"]
    monkeypatch.setattr(champion, "_fit", _poison("nan"))
    summary = run_daily(ops, HISTORY + 1)
    assert summary["training"]["status"] == "rejected" and "NaN" in summary["training"]["reason"]
    store = ops.store()
    assert store.champion()["version"] == first
    assert summary["forecast"]["model_version"] == first and summary["forecast"]["status"] == "complete"
    rejected = store.model_versions().set_index("version").loc[summary["training"]["version"]]
    assert rejected["status"] == "rejected" and "NaN" in rejected["note"]


def test_worse_challenger_is_not_promoted(ops: Ops, monkeypatch: pytest.MonkeyPatch) -> None:
    from smmdn.cycle import champion

    first = run_daily(ops, HISTORY)["training"]["version"]
    monkeypatch.setattr(champion, "_fit", _poison("noise"))
    tr = run_daily(ops, HISTORY + 1)["training"]
    assert np.isfinite(tr["challenger_crps"]) and tr["challenger_crps"] > tr["champion_crps"]
    assert tr["status"] == "rejected" and "worse than champion" in tr["reason"]
    assert ops.store().champion()["version"] == first
