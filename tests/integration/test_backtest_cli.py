"""``smmdn backtest`` end to end, in-process, on a small slice of the shared USCRN data."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from smmdn.cli import main

SHARED = Path(__file__).resolve().parents[2] / "../shared"
USCRN = SHARED / "data/uscrn-daily-2020/uscrn_daily01_2020.csv"
pytestmark = pytest.mark.skipif(not USCRN.exists(), reason="../shared/data/uscrn-daily-2020 absent")
SITES = ["03047", "03048", "03054"]
METRIC_KEYS = {"kge", "kge_2012", "spearman", "rmse", "crps", "crps_skill", "coverage_50", "coverage_90", "width_90"}


@pytest.fixture(scope="module")
def slice_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from smmdn.sources.uscrn_csv import read_uscrn_daily_csv

    obs, forcing, sites = read_uscrn_daily_csv(USCRN)
    d = tmp_path_factory.mktemp("uscrn")
    obs[obs["site"].isin(SITES)].to_csv(d / "observations.csv", index=False)
    forcing[forcing["site"].isin(SITES)].to_csv(d / "forcing.csv", index=False)
    sites[sites["site"].isin(SITES)].to_csv(d / "sites.csv", index=False)
    return d


def _args(d: Path, out: Path, *extra: str, obs: str = "observations.csv", forcing: str = "forcing.csv") -> list[str]:
    return ["backtest", "--observations", str(d / obs), "--forcing", str(d / forcing), "--sites",
            str(d / "sites.csv"), "--test-start", "2020-10-01", "--test-end", "2020-10-31", "--max-epochs", "2",
            "--out", str(out), *extra]


def test_simulation_backtest_writes_contract(slice_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "sim"
    assert main(_args(slice_dir, out, "--test-sites", "03054", "--save-model", str(tmp_path / "model"))) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["overall"]["median"]) >= METRIC_KEYS and set(metrics["overall"]["mean"]) >= METRIC_KEYS
    assert {"climatology", "persistence"} <= set(metrics["baselines"])
    assert metrics["forcing"] == "observed weather"
    series = metrics["per_series"]
    assert {s["site"] for s in series} >= {"03054"}  # the ungauged test site is predicted and scored
    assert all(set(s) >= METRIC_KEYS for s in series)
    pred = pd.read_csv(out / "predictions.csv", dtype={"site": str})
    k = metrics["components"]
    expected = ["time", "site", "depth_cm", "sensor", "observed", "mean", "sd", "q05", "q25", "q50", "q75", "q95",
                *[f"weight_{i}" for i in range(k)], *[f"mean_{i}" for i in range(k)],
                *[f"sigma_{i}" for i in range(k)]]
    assert list(pred.columns) == expected
    assert pred["time"].min() == "2020-10-01" and pred["time"].max() == "2020-10-31"
    assert (pred["q05"] <= pred["q50"]).all() and (pred["q50"] <= pred["q95"]).all()
    assert pred[[f"weight_{i}" for i in range(k)]].sum(axis=1).between(0.999, 1.001).all()


def test_fine_tune_from_saved_model(slice_dir: Path, tmp_path: Path) -> None:
    assert main(_args(slice_dir, tmp_path / "a", "--save-model", str(tmp_path / "model"))) == 0
    out = tmp_path / "tuned"
    assert main(_args(slice_dir, out, "--init-model", str(tmp_path / "model"))) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_series"] > 0 and metrics["overall"]["median"]["crps"] is not None
    assert 1 <= metrics["fine_tune"]["epochs_run"] <= 2  # --max-epochs caps fine-tuning as well


def test_forecast_backtest_per_lead(slice_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "fc"
    assert main(_args(slice_dir, out, "--mode", "forecast", "--horizon", "3")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["per_lead"]) == {"1", "2", "3"}
    assert set(metrics["per_lead"]["1"]) >= METRIC_KEYS
    pred = pd.read_csv(out / "predictions.csv", dtype={"site": str})
    assert list(pred.columns[-2:]) == ["issue_time", "lead"]
    assert sorted(pred["lead"].unique()) == [1, 2, 3]
    assert (pd.to_datetime(pred["time"]) > pd.to_datetime(pred["issue_time"])).all()


def _write(d: Path, name: str, frame: pd.DataFrame) -> str:
    frame.to_csv(d / name, index=False)
    return name


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing_column", "missing column"),
        ("percent", "percent"),
        ("no_test_data", "no observations in the test period"),
        ("no_forcing", "without forcing"),
    ],
)
def test_bad_input_exits_nonzero_with_clear_message(
    slice_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, message: str
) -> None:
    obs = pd.read_csv(slice_dir / "observations.csv", dtype={"site": str, "sensor": str})
    forcing = pd.read_csv(slice_dir / "forcing.csv", dtype={"site": str})
    d = tmp_path
    (d / "sites.csv").write_text((slice_dir / "sites.csv").read_text())
    o_name, f_name = "obs.csv", "forcing.csv"
    _write(d, f_name, forcing)
    if case == "missing_column":
        _write(d, o_name, obs.drop(columns=["vwc"]))
    elif case == "percent":
        _write(d, o_name, obs.assign(vwc=obs["vwc"] * 100))
    elif case == "no_test_data":
        _write(d, o_name, obs[obs["time"] < "2020-09-01"])
    else:
        _write(d, o_name, obs)
        _write(d, f_name, forcing[forcing["site"] != SITES[0]])
    code = main(_args(d, d / "out", obs=o_name, forcing=f_name))
    err = capsys.readouterr().err
    assert code != 0
    assert message in err and "fix:" in err
    assert not (d / "out" / "metrics.json").exists()


def test_hourly_replicates_without_sites_file_in_both_modes(tmp_path: Path) -> None:
    """Generic input: hourly instants, unknown extra forcing, two replicate sensors, no sites file."""
    import numpy as np

    rng = np.random.default_rng(0)
    times = pd.date_range("2021-05-01", periods=24 * 50, freq="h", tz="UTC")
    obs, frc = [], []
    for site in ("H1", "H2"):
        rain = rng.gamma(0.3, 2.0, len(times)) * (rng.random(len(times)) < 0.05)
        store = np.zeros(len(times))
        for t in range(1, len(times)):
            store[t] = 0.995 * store[t - 1] + 0.002 * rain[t]
        frc.append(pd.DataFrame({"time": times.strftime("%Y-%m-%dT%H:%M:%S+00:00"), "site": site,
                                 "precipitation": rain, "mystery_index": rng.normal(size=len(times))}))
        for sensor in ("a", "b"):
            obs.append(pd.DataFrame({"time": times.strftime("%Y-%m-%dT%H:%M:%S+00:00"), "site": site,
                                     "depth_cm": 10, "sensor": sensor,
                                     "vwc": 0.2 + store + rng.normal(0, 0.005, len(times))}))
    pd.concat(obs).to_csv(tmp_path / "obs.csv", index=False)
    pd.concat(frc).to_csv(tmp_path / "frc.csv", index=False)
    for mode in ("simulation", "forecast"):
        out = tmp_path / mode
        args = ["backtest", "--observations", str(tmp_path / "obs.csv"), "--forcing", str(tmp_path / "frc.csv"),
                "--test-start", "2021-06-15T00:00:00+00:00", "--test-end", "2021-06-17T23:00:00+00:00",
                "--max-epochs", "1", "--mode", mode, "--horizon", "6",
                "--out", str(out)]
        assert main(args) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["n_series"] == 4
        assert metrics["replicates"]["locations_with_replicates"] == 2
        pred = pd.read_csv(out / "predictions.csv")
        assert pred["time"].str.endswith("+00:00").all()
        if mode == "forecast":
            assert set(metrics["per_lead"]) == {str(h) for h in range(1, 7)}


def test_preset_flag_refuses_a_mode_it_does_not_train_and_unknown_presets(
        slice_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_args(slice_dir, tmp_path / "a", "--preset", "production", "--mode", "simulation")) == 2
    assert "forecast-mode preset" in capsys.readouterr().err
    assert main(_args(slice_dir, tmp_path / "b", "--preset", "nightly")) == 2
    assert "unknown preset 'nightly'" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # nothing partial written
