"""Parsers of the shared USCRN daily CSV and the COSMOS-UK portal export (real files when present)."""

from __future__ import annotations

from pathlib import Path

import pytest

from smmdn.errors import InputError
from smmdn.schema import normalise_observations
from smmdn.sources.cosmos import parse_cosmos_csv
from smmdn.sources.uscrn_csv import read_uscrn_daily_csv

SHARED = Path(__file__).resolve().parents[2] / "../shared/data"
COSMOS = SHARED / "cosmos-uk/SPENF-2016-11-24-2021-09-05.csv"
USCRN = SHARED / "uscrn-daily-2020/uscrn_daily01_2020.csv"

HEADER = """timestamp,06/09/2021 10:33,,,
site-id,SPENF,,,
site-name,Spen Farm,,,
parameter-id,PRECIPITATION_LEVEL2_TOTAL,TA_LEVEL2_MEAN,TDT1_VWC_LEVEL2_MEAN,TDT2_VWC_LEVEL2_MEAN
parameter-name,Total precipitation,Mean air temperature (1 day),Mean TDT 1 soil VWC (1 day),Mean TDT 2 soil VWC (1 day)
parameter-units,mm,Deg Celsius,%,%
"""


def test_cosmos_inline_percent_to_fraction_and_replicates() -> None:
    text = HEADER + "24/11/2016,0,5.4,28.2,28.4\n25/11/2016,1.2,5.1,,28.3\n"
    obs, forcing = parse_cosmos_csv(text, "inline.csv")
    assert sorted(obs["sensor"].unique()) == ["TDT1", "TDT2"]
    assert obs["depth_cm"].unique().tolist() == [10.0]
    assert obs.loc[obs["sensor"] == "TDT1", "vwc"].tolist() == [pytest.approx(0.282)]
    assert forcing["time"].tolist() == ["2016-11-24", "2016-11-25"]
    assert {"precipitation_sum", "temperature_2m_mean"} <= set(forcing.columns)


def test_cosmos_bad_dates_named() -> None:
    with pytest.raises(InputError, match="dd/mm/yyyy") as err:
        parse_cosmos_csv(HEADER + "2016-11-24,0,5.4,28.2,28.4\n", "x.csv")
    assert "x.csv" in str(err.value)


@pytest.mark.skipif(not COSMOS.exists(), reason="../shared/data/cosmos-uk absent")
def test_cosmos_real_export() -> None:
    obs, forcing = parse_cosmos_csv(COSMOS.read_text(encoding="utf-8"), COSMOS.name)
    assert len(forcing) == 1747
    assert obs["vwc"].between(0, 1).all()
    normalise_observations(obs)  # canonical


@pytest.mark.skipif(not USCRN.exists(), reason="../shared/data/uscrn-daily-2020 absent")
def test_uscrn_daily_csv() -> None:
    obs, forcing, sites = read_uscrn_daily_csv(USCRN)
    assert set(obs["depth_cm"].unique()) == {5, 10, 20, 50, 100}
    assert obs["sensor"].unique().tolist() == ["avg"]
    assert obs["site"].str.len().eq(5).all() and "03047" in set(obs["site"])  # leading zeros kept
    assert forcing["site"].nunique() == 143
    assert "precipitation_sum" in forcing.columns and "local standard time" in sites["time_reference"].iloc[0]
