"""``smmdn tune`` end to end on a tiny synthetic network: a real Optuna study (3 trials, 2 folds)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pandas as pd
import pytest

from smmdn.cli import main
from smmdn.model.presets import load_preset
from smmdn.model.tune import fold_windows
from tests.unit.synthetic import make_frames

optuna = pytest.importorskip("optuna")  # the `tune` extra; `test` installs it

TRAIN_END = "2021-11-01"
FIXED = {"hidden": 8, "seq_len": 60, "warmup": 10, "batch_size": 32, "chunks_per_location": 4, "max_epochs": 2,
         "valid_steps": 30, "patience": 1, "min_epochs": 1, "horizon": 3, "device": "cpu"}


def test_folds_end_at_the_training_end_and_do_not_overlap() -> None:
    end = pd.Timestamp(TRAIN_END, tz="UTC")
    windows = fold_windows(end, 3, 10)
    assert windows[-1][1] == end and windows[0][0] == end - pd.Timedelta(days=30)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(windows))


def test_tiny_study_writes_study_summary_and_preset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    obs, frc, sites = make_frames(n_sites=3, days=400)
    late = pd.to_datetime(obs["time"], utc=True) >= pd.Timestamp(TRAIN_END, tz="UTC")
    obs.loc[late, "vwc"] = 5.0  # were they read, fold CRPS would be far above 0.2: the study must not see them
    for name, frame in (("obs", obs), ("frc", frc), ("sites", sites)):
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    out = tmp_path / "study"
    args = ["tune", "--observations", str(tmp_path / "obs.csv"), "--forcing", str(tmp_path / "frc.csv"),
            "--sites", str(tmp_path / "sites.csv"), "--train-end", TRAIN_END, "--trials", "3", "--folds", "2",
            "--fold-days", "14", "--set", json.dumps(FIXED), "--out", str(out)]
    assert main(args) == 0
    assert "best trial" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_trials"] == 3 and summary["n_complete"] >= 1
    assert summary["folds"][-1][1] == TRAIN_END
    space = load_preset("production")["search_space"]
    assert set(summary["search_space"]) == set(space) - set(FIXED)
    first = summary["trials"][0]  # the preset's own settings come first
    preset = load_preset("production")["settings"]
    assert first["settings"] == {k: preset[k] for k in summary["search_space"]}
    for t in summary["trials"]:
        if t["state"] == "COMPLETE":
            assert len(t["fold_crps"]) == 2 and 0 < t["value"] < 0.2
    chosen = json.loads((out / "preset.json").read_text())
    assert chosen["settings"] == {**preset, **summary["best"]["settings"]}
    assert chosen["study"]["best"] == summary["best"] and chosen["backtest"] is None
    study = optuna.load_study(study_name=summary["study"], storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(out / "study.jsonl"))))
    assert len(study.trials) == 3 and study.best_value == pytest.approx(summary["best"]["value"])
