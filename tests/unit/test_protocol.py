"""The backtest's protocol, enforced: the test period is read only for scoring.

Poisoning every test-period observation (+0.3 m3/m3) must not change a single simulation-mode prediction
(training, early stopping, scalers and spread calibration all happen before ``--test-start``). In forecast
mode the observed state is an input up to each issue time, so only observations after an issue may be
poisoned: forecasts issued before them must not change, and forecasts issued after them must (else the
test could not fail).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smmdn.verify.backtest import BacktestOptions, run_backtest
from tests.unit.synthetic import make_frames

TEST_START = "2021-11-01"
TINY = dict(hidden=8, seq_len=60, warmup=10, batch_size=32, chunks_per_location=4, max_epochs=3, valid_steps=40,
            patience=2, min_epochs=1, members=1, embedding_dim=4, device="cpu")
POISON = 0.3
MIXTURE = ["mean", "sd", "q05", "q50", "q95", "weight_0", "mean_0", "sigma_0"]


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, ...]:
    return make_frames(n_sites=3, days=400)


def _poisoned(obs: pd.DataFrame, after: str) -> pd.DataFrame:
    out = obs.copy()
    late = pd.to_datetime(out["time"], utc=True) >= pd.Timestamp(after, tz="UTC")
    out.loc[late, "vwc"] = out.loc[late, "vwc"] + POISON
    assert late.sum() > 100
    return out


def _predictions(obs: pd.DataFrame, frc: pd.DataFrame, sites: pd.DataFrame, out: Path, mode: str) -> pd.DataFrame:
    opts = BacktestOptions(test_start=TEST_START, mode=mode, horizon=3, seed=5, config_overrides=TINY,
                           min_test_obs=5)
    run_backtest(obs, frc, sites, out, opts)
    return pd.read_csv(out / "predictions.csv", dtype={"site": str, "sensor": str})


def test_simulation_predictions_ignore_the_test_period(frames: tuple[pd.DataFrame, ...], tmp_path: Path) -> None:
    obs, frc, sites = frames
    clean = _predictions(obs, frc, sites, tmp_path / "clean", "simulation")
    poisoned = _predictions(_poisoned(obs, TEST_START), frc, sites, tmp_path / "poisoned", "simulation")
    assert len(clean) == len(poisoned) > 0
    np.testing.assert_array_equal(clean[MIXTURE].to_numpy(), poisoned[MIXTURE].to_numpy())
    assert np.nanmean(poisoned["observed"] - clean["observed"]) == pytest.approx(POISON, abs=1e-6)  # it was seen


def test_forecasts_ignore_observations_after_their_issue(frames: tuple[pd.DataFrame, ...], tmp_path: Path) -> None:
    obs, frc, sites = frames
    cut = "2021-11-20"  # observations from this day on are poisoned
    clean = _predictions(obs, frc, sites, tmp_path / "clean", "forecast")
    poisoned = _predictions(_poisoned(obs, cut), frc, sites, tmp_path / "poisoned", "forecast")
    assert len(clean) == len(poisoned) > 0
    before = pd.to_datetime(clean["issue_time"]) < pd.Timestamp(cut)  # issued with only clean observations seen
    assert before.sum() > 0 and (~before).sum() > 0
    np.testing.assert_array_equal(clean.loc[before, MIXTURE].to_numpy(), poisoned.loc[before, MIXTURE].to_numpy())
    shift = (poisoned.loc[~before, "mean"] - clean.loc[~before, "mean"]).abs().mean()
    assert shift > 0.05  # later issues do see the poisoned state: the check above could have failed
