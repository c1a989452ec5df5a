"""``smmdn data convert`` on the real files in ``../shared/data``: canonical CSVs that the backtest accepts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from smmdn.cli import main

DATA = Path(__file__).resolve().parents[2] / "../shared/data"
USCRN = DATA / "uscrn-daily-2020/uscrn_daily01_2020.csv"
COSMOS = DATA / "cosmos-uk/SPENF-2016-11-24-2021-09-05.csv"


def _read(out: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    kinds = {"site": str, "sensor": str}
    return (pd.read_csv(out / "observations.csv", dtype=kinds), pd.read_csv(out / "forcing.csv", dtype=kinds),
            pd.read_csv(out / "sites.csv", dtype=kinds))


@pytest.mark.skipif(not COSMOS.exists(), reason="../shared/data/cosmos-uk absent")
def test_cosmos_converts_percent_to_m3m3_with_two_replicates_at_10_cm(tmp_path: Path) -> None:
    assert main(["data", "convert", "cosmos", "--input", str(COSMOS), "--out", str(tmp_path)]) == 0
    obs, forcing, sites = _read(tmp_path)
    point = obs[obs["sensor"].isin(["TDT1", "TDT2"])]
    assert set(point["sensor"]) == {"TDT1", "TDT2"} and set(point["depth_cm"]) == {10}
    assert obs["vwc"].dropna().between(0, 1).all()
    raw = pd.read_csv(COSMOS, skiprows=[0, 1, 2, 4, 5])  # header row 3 holds the parameter ids
    raw_tdt1 = raw["TDT1_VWC_LEVEL2_MEAN"].dropna() / 100
    tdt1 = point[point["sensor"] == "TDT1"]["vwc"].dropna()
    assert len(tdt1) == len(raw_tdt1)  # nothing dropped
    assert tdt1.to_numpy() == pytest.approx(raw_tdt1.to_numpy(), abs=1e-9)
    assert {"time", "site"} <= set(forcing.columns) and len(forcing) > 1000
    assert len(sites) == 1 and sites["site"].iloc[0] in set(obs["site"])


@pytest.mark.skipif(not USCRN.exists(), reason="../shared/data/uscrn-daily-2020 absent")
def test_uscrn_converts_five_depths_meteorology_and_coordinates(tmp_path: Path) -> None:
    assert main(["data", "convert", "uscrn-daily", "--input", str(USCRN), "--out", str(tmp_path)]) == 0
    obs, forcing, sites = _read(tmp_path)
    assert set(obs["depth_cm"]) == {5, 10, 20, 50, 100}
    assert obs["site"].str.len().eq(5).all()  # WBAN ids keep their leading zeros
    assert obs["vwc"].dropna().between(0, 1).all()
    assert {"latitude", "longitude"} <= set(sites.columns) and sites["site"].is_unique
    assert set(obs["site"]) <= set(forcing["site"]) and set(obs["site"]) <= set(sites["site"])
    numeric = forcing.drop(columns=["time", "site"]).select_dtypes("number").columns
    assert len(numeric) >= 4  # station meteorology as forcing (temperature, precipitation, radiation, humidity)


def test_missing_input_exits_nonzero_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main(["data", "convert", "cosmos", "--input", str(tmp_path / "nope.csv"), "--out", str(out)])
    assert code != 0
    assert "input file not found" in capsys.readouterr().err
    assert not out.exists()
