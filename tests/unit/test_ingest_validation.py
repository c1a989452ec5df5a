"""Every planted defect is caught by its Great Expectations expectation, with the right row outcome."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smmdn.errors import InputError
from smmdn.quality.rules import ForcingRules, ObservationRules
from smmdn.quality.validate import validate_forcing, validate_observations

NOW = pd.Timestamp("2024-06-10T00:00Z")
START = pd.Timestamp("2024-06-01T00:00Z")
RULES = ObservationRules(vwc_max_by_site={"clay": 0.6})


def _series(site: str, depth: float, sensor: str, n: int = 96, phase: float = 0.0) -> pd.DataFrame:
    t = START + pd.to_timedelta(np.arange(n), unit="h")
    vwc = 0.25 + 0.02 * np.sin(np.arange(n) / 7.0 + phase)
    return pd.DataFrame({"time": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "site": site, "depth_cm": str(depth),
                         "sensor": sensor, "vwc": [f"{v:.4f}" for v in vwc]})


def _base() -> pd.DataFrame:
    return pd.concat([_series("loam", 10, "a"), _series("loam", 10, "b", phase=1), _series("clay", 20, "a", phase=2),
                      _series("flat", 5, "a", phase=3), _series("gappy", 5, "a", phase=4)], ignore_index=True)


def _planted() -> pd.DataFrame:
    f = _base()
    idx = lambda site, sensor, i: f.index[(f["site"] == site) & (f["sensor"] == sensor)][i]  # noqa: E731
    f.loc[idx("loam", "a", 10), "vwc"] = "0.9"  # above default 0.8
    f.loc[idx("loam", "a", 11), "vwc"] = "-0.01"  # negative
    f.loc[idx("clay", "a", 10), "vwc"] = "0.65"  # above the clay site's 0.6 override
    f.loc[idx("loam", "b", 50), "vwc"] = "0.45"  # spike: +0.2 and straight back
    flat = f.index[f["site"] == "flat"]
    f.loc[flat[20:50], "vwc"] = "0.3100"  # 30 identical hourly readings: stuck sensor
    extra = [
        f.loc[idx("loam", "b", 5)].to_dict(),  # identical duplicate → one copy quarantined
        {**f.loc[idx("loam", "b", 6)].to_dict(), "vwc": "0.2"},  # conflicting duplicate → both quarantined
        {"time": "2024-06-20T00:00:00Z", "site": "loam", "depth_cm": "10", "sensor": "c", "vwc": "0.2"},  # future
        {"time": "yesterday", "site": "loam", "depth_cm": "10", "sensor": "d", "vwc": "0.2"},
        {"time": "2024-06-01 05:00", "site": "loam", "depth_cm": "10", "sensor": "d", "vwc": "0.2"},  # naive
        {"time": "2024-06-01T06:00Z", "site": "loam", "depth_cm": "10", "sensor": "d", "vwc": "wet"},
        {"time": "2024-06-01T07:00Z", "site": "", "depth_cm": "10", "sensor": "d", "vwc": "0.2"},
        {"time": "2024-06-01T08:00Z", "site": "loam", "depth_cm": "-5", "sensor": "d", "vwc": "0.2"},
    ]
    f = pd.concat([f, pd.DataFrame(extra)], ignore_index=True)
    gappy = f.index[f["site"] == "gappy"]
    return f.drop(index=gappy[40:52]).reset_index(drop=True)  # 12 missing hours


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    docs = tmp_path_factory.mktemp("docs")
    frame = _planted()
    return frame, validate_observations(frame, RULES, now=NOW, docs_dir=docs), docs


@pytest.mark.parametrize(
    ("expectation", "count", "reason"),
    [
        ("vwc_within_limits", 3, "vwc_out_of_range"),
        ("unique_series_time", 4, "duplicate"),  # GX counts every member of a duplicated key
        ("no_future_times", 1, "future_time"),
        ("time_valid", 2, "time_"),
        ("vwc_numeric", 1, "vwc_not_numeric"),
        ("site_present", 1, "site_missing"),
        ("depth_valid", 1, "depth_cm_not_positive"),
    ],
)
def test_impossible_rows_fail_their_expectation_and_are_quarantined(planted, expectation, count, reason) -> None:  # type: ignore[no-untyped-def]
    _, result, _ = planted
    entry = result.summary["expectations"][expectation]
    assert entry["success"] is False
    assert entry["unexpected_count"] == count
    assert entry["outcome"] == "quarantine"
    assert result.quarantined["reason"].str.contains(reason).any()


@pytest.mark.parametrize(("expectation", "flag"), [("spike", "spike"), ("flatline", "flatline"),
                                                    ("gap_before", "gap_before")])
def test_suspicious_rows_fail_their_expectation_and_are_kept_flagged(planted, expectation, flag) -> None:  # type: ignore[no-untyped-def]
    _, result, _ = planted
    entry = result.summary["expectations"][expectation]
    assert entry["success"] is False and entry["outcome"] == "flag"
    flagged = result.clean[result.clean["quality_flag"].str.contains(flag)]
    assert len(flagged) == entry["unexpected_count"] > 0


def test_flags_land_on_the_planted_rows(planted) -> None:  # type: ignore[no-untyped-def]
    _, result, _ = planted
    c = result.clean
    spike = c[c["quality_flag"].str.contains("spike")]
    assert list(spike["site"]) == ["loam"] and spike["vwc"].iloc[0] == pytest.approx(0.45)
    assert set(c.loc[c["quality_flag"].str.contains("flatline"), "site"]) == {"flat"}
    assert (c.loc[c["quality_flag"].str.contains("flatline"), "vwc"] == 0.31).all()
    gap = c[c["quality_flag"].str.contains("gap_before")]
    assert list(gap["site"]) == ["gappy"]
    assert gap["time"].iloc[0] == START + pd.Timedelta(hours=52)


def test_nothing_is_dropped_and_quarantine_keeps_rows_as_received(planted) -> None:  # type: ignore[no-untyped-def]
    frame, result, _ = planted
    assert len(result.clean) + len(result.quarantined) == len(frame)
    assert set(result.clean["quality_flag"].unique()) <= {"ok", "spike", "flatline", "gap_before",
                                                          "spike,flatline", "spike,gap_before",
                                                          "flatline,gap_before"}
    q = result.quarantined
    assert q.loc[q["reason"].str.contains("vwc_not_numeric"), "vwc"].iloc[0] == "wet"  # original text
    assert q.loc[q["reason"].str.contains("time_naive"), "time"].iloc[0] == "2024-06-01 05:00"
    # identical duplicate: one copy kept, one quarantined; conflicting values: both quarantined
    assert (q["reason"] == "duplicate").sum() == 1
    assert (q["reason"] == "duplicate_conflicting_values").sum() == 2
    # per-site override: 0.65 is fine at the default site, not at the clay site
    assert q["reason"].str.contains(r"0\.65 not in \[0, 0\.6\]").sum() == 1
    assert str(result.clean["time"].dtype) == "datetime64[ns, UTC]"
    assert result.clean.groupby(["site", "depth_cm", "sensor"])["time"].apply(
        lambda t: t.is_monotonic_increasing).all()


def test_data_docs_written(planted) -> None:  # type: ignore[no-untyped-def]
    _, result, docs = planted
    assert (docs / "index.html").read_text().count("observations") > 0  # GX's own site
    page = Path(result.data_docs)
    assert page.is_relative_to((docs.parent / "runs").resolve()) and page.exists()  # this run's kept page
    remote = re.compile(r"(?:src=|<link[^>]*href=|url\()['\"]?https?://")  # resources, not plain links
    assert "https://" not in page.read_text()
    assert not [p for p in docs.rglob("*.html") if remote.search(p.read_text())]
    assert page.relative_to(docs.parent.resolve()).as_posix() in (docs.parent / "index.html").read_text()


def _unsuccessful_in_docs(docs: Path) -> int:
    [page] = [p for p in docs.rglob("*.html") if "validations" in p.parts]
    match = re.search(r"Unsuccessful Expectations</div></td><td[^>]*><div[^>]*>(\d+)<", page.read_text())
    assert match, page
    return int(match.group(1))


def test_data_docs_pages_rendered_from_cached_templates_show_their_own_results(tmp_path: Path) -> None:
    """Templates compiled once are reused by later Data Docs builds; each page still shows its own batch."""
    from smmdn.quality import gx

    clean = validate_observations(_base(), RULES, now=NOW, docs_dir=tmp_path / "first")
    cached = len(gx._TEMPLATE_CACHE.code)
    assert cached > 0
    bad = _base()
    bad.loc[bad.index[::7], "vwc"] = 0.95  # impossible values: the range expectation fails
    spoiled = validate_observations(bad, RULES, now=NOW, docs_dir=tmp_path / "second")
    assert len(gx._TEMPLATE_CACHE.code) == cached  # nothing compiled again
    failing_clean = sum(not v["success"] for v in clean.summary["expectations"].values())
    failing_bad = sum(not v["success"] for v in spoiled.summary["expectations"].values())
    assert failing_bad > failing_clean
    assert _unsuccessful_in_docs(tmp_path / "first") == failing_clean
    assert _unsuccessful_in_docs(tmp_path / "second") == failing_bad


def test_a_suite_is_built_once_per_process_and_its_site_shows_the_latest_batch(tmp_path: Path) -> None:
    """The checkpoint is reused batch after batch (same specs, same Data Docs site); results are not kept."""
    from smmdn.quality import gx
    from smmdn.quality.validate import _observation_specs

    docs = tmp_path / "docs"
    clean = validate_observations(_base(), RULES, now=NOW, docs_dir=docs)
    validator = gx._validator("observations", _observation_specs(RULES), docs)
    bad = _base()
    bad.loc[bad.index[::7], "vwc"] = 0.95
    spoiled = validate_observations(bad, RULES, now=NOW, docs_dir=docs)
    assert gx._validator("observations", _observation_specs(RULES), docs) is validator
    assert validator.context.validation_results_store.list_keys() == []
    assert clean.summary["expectations"]["vwc_within_limits"]["success"]
    assert not spoiled.summary["expectations"]["vwc_within_limits"]["success"]
    failing_bad = sum(not v["success"] for v in spoiled.summary["expectations"].values())
    assert _unsuccessful_in_docs(docs) == failing_bad  # one validation page: the latest batch's


def test_clean_batch_passes_every_expectation() -> None:
    result = validate_observations(_base(), RULES, now=NOW)
    assert result.success and result.quarantined.empty
    failing = {k for k, v in result.summary["expectations"].items() if not v["success"]}
    assert failing == {"flatline"} or failing == set(), failing
    assert "flatline" not in failing  # the base series are smooth sine waves


def test_out_of_order_input_is_reported_not_dropped() -> None:
    frame = _base().iloc[::-1].reset_index(drop=True)
    result = validate_observations(frame, RULES, now=NOW)
    assert result.summary["expectations"]["time_monotonic_input"]["success"] is False
    assert result.success and len(result.clean) == len(frame)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda f: f.drop(columns=["vwc"]), "missing column"),
        (lambda f: f.iloc[0:0], "empty batch"),
        (lambda f: f.assign(vwc=(f["vwc"].astype(float) * 100).astype(str)), "percent"),
        (lambda f: f.assign(time="not a time"), "no usable row"),
    ],
)
def test_batch_failures_raise(mutate, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=match):
        validate_observations(mutate(_base()), RULES, now=NOW)


def test_history_gives_spike_context_across_batches() -> None:
    base = _base()
    loam = base[(base["site"] == "loam") & (base["sensor"] == "a")].copy()
    history = loam.iloc[:50].assign(time=lambda f: pd.to_datetime(f["time"], utc=True),
                                    depth_cm=lambda f: f["depth_cm"].astype(float),
                                    vwc=lambda f: f["vwc"].astype(float))
    batch = loam.iloc[50:].copy()
    batch.iloc[0, batch.columns.get_loc("vwc")] = "0.5"  # first row of the batch is a spike
    without = validate_observations(batch, RULES, now=NOW)
    with_history = validate_observations(batch, RULES, now=NOW, history=history)
    assert without.clean["quality_flag"].iloc[0] == "ok"  # no previous reading, cannot tell
    assert with_history.clean["quality_flag"].iloc[0] == "spike"
    assert len(with_history.clean) == len(batch)  # history is context only


def _forcing() -> pd.DataFrame:
    t = pd.date_range("2024-06-01", periods=5, freq="D", tz="UTC")
    return pd.DataFrame({"time": list(t) * 2, "site": ["a"] * 5 + ["b"] * 5,
                         "precipitation_sum": [0.0, 1.5, 0, 12, 0] * 2,
                         "temperature_2m_mean": [15.0, 16, 17, 14, 13] * 2,
                         "relative_humidity_2m_mean": [60.0, 70, 80, 90, 65] * 2})


def test_forcing_defects_quarantined_by_their_expectations() -> None:
    f = _forcing()
    f.loc[1, "temperature_2m_mean"] = 75.0  # impossible
    f.loc[2, ["precipitation_sum", "temperature_2m_mean", "relative_humidity_2m_mean"]] = np.nan  # all null
    f.loc[3, "precipitation_sum"] = -1.0
    f = pd.concat([f, f.iloc[[6]], pd.DataFrame([{"time": pd.Timestamp("2024-07-01", tz="UTC"), "site": "a",
                                                  "precipitation_sum": 1.0}])], ignore_index=True)
    result = validate_forcing(f, now=NOW)
    e = result.summary["expectations"]
    assert e["range_temperature_2m_mean"]["unexpected_count"] == 1
    assert e["range_precipitation_sum"]["unexpected_count"] == 1
    assert e["values_present"]["unexpected_count"] == 1
    assert e["unique_site_time"]["unexpected_count"] == 2
    assert e["no_future_times"]["unexpected_count"] == 1
    reasons = " ".join(result.quarantined["reason"])
    for code in ("temperature_2m_mean_out_of_range", "all_values_null", "precipitation_sum_out_of_range",
                 "duplicate", "future_time"):
        assert code in reasons
    assert len(result.clean) + len(result.quarantined) == len(f)
    assert not result.clean[["precipitation_sum"]].eq(0).all().all()


def test_forecast_forcing_may_be_in_the_future_and_kelvin_is_a_unit_error() -> None:
    f = _forcing().assign(time=lambda x: x["time"] + pd.Timedelta(days=30))
    assert validate_forcing(f, ForcingRules(allow_future=True), now=NOW).success
    assert not validate_forcing(f, now=NOW).success
    with pytest.raises(InputError, match="wrong unit"):
        validate_forcing(_forcing().assign(temperature_2m_mean=lambda x: x["temperature_2m_mean"] + 273.15),
                         now=NOW)
