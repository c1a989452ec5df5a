"""``smmdn validate`` end to end in-process: files, exit codes 0/1/2 and the report layout (a contract)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from smmdn.cli import main

CLEAN = """time,site,depth_cm,sensor,vwc
2024-06-01,s1,10,avg,0.21
2024-06-02,s1,10,avg,0.22
2024-06-03,s1,10,avg,0.215
2024-06-01T06:00:00Z,s2,5,a,0.30
2024-06-01T07:00:00+00:00,s2,5,a,0.31
"""
FORCING = """time,site,precipitation_sum,temperature_2m_mean
2024-06-01,s1,0.0,15.2
2024-06-02,s1,3.4,14.1
"""


def _run(tmp_path: Path, obs: str, forcing: str | None = None, *extra: str) -> tuple[int, Path]:
    (tmp_path / "obs.csv").write_text(obs)
    args = ["validate", "--observations", str(tmp_path / "obs.csv"), "--report", str(tmp_path / "report")]
    if forcing is not None:
        (tmp_path / "forcing.csv").write_text(forcing)
        args += ["--forcing", str(tmp_path / "forcing.csv")]
    return main([*args, *extra]), tmp_path / "report"


def test_clean_files_exit_0_with_full_report(tmp_path: Path) -> None:
    code, report = _run(tmp_path, CLEAN, FORCING)
    assert code == 0
    summary = json.loads((report / "summary.json").read_text())
    assert summary["success"] is True and summary["exit_code"] == 0
    for table in ("observations", "forcing"):
        for name, entry in summary[table]["expectations"].items():
            assert {"success", "unexpected_count"} <= set(entry), name
    assert summary["observations"]["expectations"]["vwc_within_limits"] == {
        **summary["observations"]["expectations"]["vwc_within_limits"], "success": True, "unexpected_count": 0}
    assert pd.read_csv(report / "quarantine.csv").empty
    assert (report / "data_docs" / "index.html").exists()


def test_bad_rows_exit_1_and_are_listed_with_reasons(tmp_path: Path) -> None:
    bad = CLEAN + "2024-06-04,s1,10,avg,0.95\n2024-06-01,s1,10,avg,0.21\n2099-01-01,s1,10,avg,0.2\n"
    code, report = _run(tmp_path, bad, None, "--vwc-max", "0.9")
    assert code == 1
    q = pd.read_csv(report / "quarantine.csv", dtype=str)
    assert list(q.columns[:2]) == ["table", "line"] and q.columns[-1] == "reason"
    assert sorted(q["line"].astype(int)) == [7, 8, 9]  # CSV line numbers, header = line 1
    assert q.loc[q["line"] == "7", "vwc"].iloc[0] == "0.95"
    assert q["reason"].str.contains("vwc_out_of_range").sum() == 1
    assert q["reason"].str.contains("future_time").sum() == 1
    summary = json.loads((report / "summary.json").read_text())
    assert summary["observations"]["quarantined"] == 3 and summary["exit_code"] == 1


def test_registry_overrides_site_limit(tmp_path: Path) -> None:
    reg = tmp_path / "reg.yaml"
    reg.write_text("version: 1\nsites:\n  - {id: s1, name: S1, lat: 1, lon: 2, vwc_max: 0.2}\n")
    code, report = _run(tmp_path, CLEAN, None, "--registry", str(reg))
    assert code == 1  # 0.21 / 0.22 / 0.215 exceed the 0.2 override at s1; s2 keeps the default
    assert json.loads((report / "summary.json").read_text())["observations"]["quarantined"] == 3


@pytest.mark.parametrize(
    ("obs", "forcing", "needle"),
    [
        ("time,site,depth_cm,sensor\n2024-06-01,s1,10,a\n", None, "missing column"),
        ("time,site,depth_cm,sensor,vwc\n", None, "empty batch"),
        ("", None, "empty file"),
        ("time,site,depth_cm,sensor,vwc\n2024-06-01,s1,10,a,21.0\n2024-06-02,s1,10,a,22.0\n", None, "percent"),
        ("\x00\x01\x02garbage\n\"unclosed,", None, ""),
        ("time,site,depth_cm,sensor,vwc\nmonday,s1,10,a,0.2\n", None, "no usable row"),
        (CLEAN, "time,precipitation_sum\n2024-06-01,1\n", "missing column"),
    ],
)
def test_unusable_batches_exit_2_and_write_no_rows(tmp_path: Path, obs: str, forcing: str | None,
                                                   needle: str) -> None:
    code, report = _run(tmp_path, obs, forcing)
    assert code == 2
    summary = json.loads((report / "summary.json").read_text())
    assert summary["exit_code"] == 2 and needle in summary["error"]
    assert pd.read_csv(report / "quarantine.csv").empty
