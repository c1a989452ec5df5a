"""``fill_forcing`` (vectorised, issue 25) gives what the per-site reference gives, gap for gap."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from smmdn.cycle.inputs import DAY, climatology, fill_forcing

VARIABLES = ["precipitation_sum", "temperature_2m_mean"]
ISSUE = pd.Timestamp("2024-04-14", tz="UTC")


def reference_fill(forcing: pd.DataFrame, sites: list[str], issue: pd.Timestamp, horizon: int,
                   variables: list[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The straightforward per-site, per-day loop the vectorised version replaced (the oracle)."""
    days = [issue + i * DAY for i in range(1, horizon + 1)]
    frame = forcing.copy()
    for v in variables:
        if v not in frame:
            frame[v] = np.nan
    filled: dict[str, int] = {}
    impossible: list[str] = []
    new_rows = []
    for site in sites:
        mine = frame.loc[frame["site"].astype(str) == site].set_index("time")
        clim = None
        for d in days:
            row = mine.loc[d] if d in mine.index else None
            if isinstance(row, pd.DataFrame):
                row = row.iloc[0]
            gaps = [v for v in variables if row is None or pd.isna(row[v])]
            if not gaps:
                continue
            clim = clim if clim is not None else climatology(forcing, site, issue + DAY, variables)
            if any(v not in clim for v in gaps):
                impossible.append(site)
                break
            filled[site] = filled.get(site, 0) + 1
            if row is None:
                new_rows.append({"time": d, "site": site, **{v: clim[v] for v in variables},
                                 "forcing_kind": "climatology"})
            else:
                idx = frame.index[(frame["site"].astype(str) == site) & (frame["time"] == d)]
                for v in gaps:
                    frame.loc[idx, v] = clim[v]
                if "forcing_kind" in frame:
                    frame.loc[idx, "forcing_kind"] = "climatology"
    if new_rows:
        add = pd.DataFrame(new_rows)
        add["time"] = pd.to_datetime(add["time"], utc=True)
        frame = pd.concat([frame, add], ignore_index=True)
    frame = frame.sort_values(["site", "time"]).reset_index(drop=True)
    report: dict[str, Any] = {}
    if filled:
        report["filled_site_days"] = filled
    if impossible:
        report["no_forcing_sites"] = sorted(set(impossible))
    return frame, report


def gappy_forcing(seed: int, history_days: int) -> pd.DataFrame:
    """Past and forecast rows for S0..S9 with holes: NaN cells, whole missing days, a duplicated day, a site
    without a temperature history (cannot be filled) and a site with no rows at all (S9)."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(9):
        for i in range(-history_days, 8):
            if rng.random() < 0.08:
                continue  # a whole day missing
            rows.append({"time": ISSUE + i * DAY, "site": f"S{s}", "precipitation_sum": rng.gamma(1.0, 2.0),
                         "temperature_2m_mean": np.nan if s == 7 else rng.normal(12, 4),
                         "forcing_kind": "forecast" if i > 0 else "archive"})
    frame = pd.DataFrame(rows)
    holes = rng.random((len(frame), 2)) < 0.1
    for j, v in enumerate(VARIABLES):
        frame.loc[holes[:, j], v] = np.nan
    dup = frame.loc[(frame["site"] == "S2") & (frame["time"] == ISSUE + 3 * DAY)]
    return pd.concat([frame, dup.assign(precipitation_sum=np.nan)], ignore_index=True)


@pytest.mark.parametrize(("seed", "history_days"), [(0, 40), (1, 400), (2, 40)])
def test_vectorised_fill_matches_the_per_site_reference(seed: int, history_days: int) -> None:
    forcing = gappy_forcing(seed, history_days)
    sites = [f"S{s}" for s in range(10)]
    got, got_report = fill_forcing(forcing, sites, ISSUE, 7, VARIABLES)
    want, want_report = reference_fill(forcing, sites, ISSUE, 7, VARIABLES)
    pd.testing.assert_frame_equal(got, want)
    assert got_report["filled_site_days"] == want_report["filled_site_days"]
    assert got_report["no_forcing_sites"] == want_report["no_forcing_sites"]
    assert "S9" in got_report["no_forcing_sites"]
    assert got_report["filled_site_days"]  # the case exercises filling, not only the no-gap path


def test_no_gap_leaves_the_frame_as_it_was() -> None:
    forcing = gappy_forcing(3, 40).dropna()
    forcing = forcing.loc[forcing["time"] <= ISSUE]
    future = pd.DataFrame([{"time": ISSUE + i * DAY, "site": "S0", "precipitation_sum": 1.0,
                            "temperature_2m_mean": 10.0, "forcing_kind": "forecast"} for i in range(1, 8)])
    forcing = pd.concat([forcing, future], ignore_index=True)
    got, report = fill_forcing(forcing, ["S0"], ISSUE, 7, VARIABLES)
    assert report == {}
    assert len(got) == len(forcing)
    assert (got.loc[got["time"] > ISSUE, "forcing_kind"] == "forecast").all()
