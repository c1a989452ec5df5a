"""The storage layer on both backends: schema, round trips, idempotent upserts, bad input, rollback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from smmdn.errors import InputError
from smmdn.store import Store
from smmdn.store import tables as T

SITES = pd.DataFrame(
    {
        "site": ["A", "B"],
        "name": ["Alpha", "Beta"],
        "latitude": [49.7, 40.7],
        "longitude": [5.9, -96.8],
        "elevation_m": [300.0, 360.0],
        "tags": [["attert", "north"], ["uscrn"]],
        "attributes": [{"clay": 0.3}, {}],
    }
)


def observations(n_days: int = 5, start: str = "2020-06-01", vwc0: float = 0.2) -> pd.DataFrame:
    times = pd.date_range(start, periods=n_days, freq="D", tz="UTC")
    rows = []
    for sensor in ("p1", "p2", "p3"):
        for i, t in enumerate(times):
            rows.append({"time": t, "site": "A", "depth_cm": 10.0, "sensor": sensor, "vwc": vwc0 + 0.01 * i})
    return pd.DataFrame(rows)


def forecast_frame(issue: str = "2020-06-05", k: int = 3, leads: int = 3, sites=("A", "B")) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    issue_time = pd.Timestamp(issue, tz="UTC")
    for site in sites:
        for depth in (10.0, 20.0):
            for lead in range(1, leads + 1):
                w = rng.dirichlet(np.ones(k))
                mu = 0.2 + rng.normal(0, 0.02, k)
                sd = rng.uniform(0.005, 0.02, k)
                row = {
                    "site": site,
                    "depth_cm": depth,
                    "issue_time": issue_time,
                    "valid_time": issue_time + pd.Timedelta(days=lead),
                    "lead": lead,
                }
                row.update({f"weight_{i}": w[i] for i in range(k)})
                row.update({f"mean_{i}": mu[i] for i in range(k)})
                row.update({f"sigma_{i}": sd[i] for i in range(k)})
                mean = float((w * mu).sum())
                row.update(
                    mean=mean, sd=0.02, q05=mean - 0.03, q25=mean - 0.01, q50=mean, q75=mean + 0.01, q95=mean + 0.03
                )
                rows.append(row)
    return pd.DataFrame(rows)


@pytest.fixture
def ready(store: Store) -> Store:
    store.upsert_sites(SITES)
    return store


def test_schema_and_init_twice_is_a_no_op(store: Store) -> None:
    before = store.check()
    report = store.init()
    after = store.check()
    assert report["revision_before"] == report["revision"] == before["head"]
    assert before["row_counts"] == after["row_counts"]
    assert set(T.BASELINE_TABLES) <= set(after["row_counts"])
    if store.is_postgres:
        assert after["timescaledb_version"], "timescaledb extension must be installed"
        assert {"observations", "forcing", "forecasts"} <= set(after["hypertables"])
        assert after["timescaledb_licence"] in ("apache", "timescale")


def test_sites_and_sensors_round_trip(ready: Store) -> None:
    sites = ready.read_sites()
    assert list(sites["site"]) == ["A", "B"]
    assert sites.loc[0, "tags"] == ["attert", "north"]
    assert sites.loc[0, "attributes"] == {"clay": 0.3}
    result = ready.upsert_sensors(pd.DataFrame({"site": ["A", "A"], "depth_cm": [10, 10], "sensor": ["p1", "p2"]}))
    assert result.inserted == 2
    ready.end_sensor("A", 10, "p1", "2020-07-01T00:00Z")
    active = ready.read_sensors(active_at="2020-08-01T00:00Z")
    assert list(active["sensor"]) == ["p2"]
    assert len(ready.read_sensors()) == 2


def test_observations_round_trip_and_idempotent_upsert(ready: Store) -> None:
    obs = observations()
    first = ready.write_observations(obs, source="test")
    assert (first.inserted, first.updated) == (15, 0)
    again = ready.write_observations(obs, source="test")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 15)
    changed = obs.copy()
    changed.loc[0, "vwc"] = 0.35
    result = ready.write_observations(changed, source="test")
    assert (result.inserted, result.updated, result.unchanged) == (0, 1, 14)
    back = ready.read_observations(sites=["A"])
    assert len(back) == 15
    assert str(back["time"].dt.tz) == "UTC"
    p1 = back[back["sensor"] == "p1"].sort_values("time")
    assert p1["vwc"].iloc[0] == pytest.approx(0.35)
    assert set(back["quality_flag"]) == {"ok"}


def test_read_as_known_at_a_time(ready: Store) -> None:
    ready.write_observations(observations(3), source="test")
    cutoff = datetime.now(UTC)
    ready.write_observations(observations(3, start="2020-06-10"), source="test")
    assert len(ready.read_observations(as_of=cutoff)) == 9
    assert len(ready.read_observations()) == 18
    assert len(ready.read_observations(start="2020-06-02", end="2020-06-03")) == 3


def test_forcing_round_trip_kinds_and_forecast_issue_times(ready: Store) -> None:
    days = pd.date_range("2020-06-01", periods=4, freq="D", tz="UTC")
    archive = pd.DataFrame(
        {
            "time": days,
            "site": "A",
            "precipitation_sum": [0.0, 5.0, np.nan, 1.0],
            "temperature_2m_mean": [15.0, 16.0, 17.0, 18.0],
        }
    )
    res = ready.write_forcing(archive, source="open-meteo", kind="archive")
    assert res.inserted == 7  # NaN is absent, not stored
    assert ready.write_forcing(archive, source="open-meteo", kind="archive").inserted == 0
    old = pd.DataFrame({"time": days[2:], "site": "A", "precipitation_sum": [9.0, 9.0]})
    new = pd.DataFrame({"time": days[2:], "site": "A", "precipitation_sum": [3.0, 3.0]})
    ready.write_forcing(old, source="open-meteo", kind="forecast", issue_time="2020-06-01T00:00Z")
    ready.write_forcing(new, source="open-meteo", kind="forecast", issue_time="2020-06-02T00:00Z")
    wide = ready.read_forcing(sites=["A"])
    assert list(wide.columns[:2]) == ["time", "site"]
    assert wide["precipitation_sum"].tolist() == [0.0, 5.0, 3.0, 1.0]  # archive wins; gap filled by newest forecast
    assert wide["forcing_kind"].tolist() == ["archive", "archive", "forecast", "archive"]
    as_then = ready.read_forcing(sites=["A"], kinds=["forecast"], as_of="2020-06-01T12:00Z")
    assert as_then["precipitation_sum"].tolist() == [9.0, 9.0]  # honest replay: only what was issued then


def test_forecasts_hidden_until_run_completes_and_latest_view(ready: Store) -> None:
    frame = forecast_frame()
    run = ready.start_forecast_run("2020-06-05", "m1")
    result = ready.write_forecasts(frame, run_id=run, model_version="m1")
    assert result.inserted == len(frame) == 12
    assert ready.latest_forecasts().empty
    ready.finish_forecast_run(run)
    latest = ready.latest_forecasts()
    assert len(latest) == 12
    np.testing.assert_allclose(
        latest.sort_values(["site", "depth_cm", "lead"])["weight_0"],
        frame.sort_values(["site", "depth_cm", "lead"])["weight_0"],
        rtol=1e-6,
    )
    run2 = ready.start_forecast_run("2020-06-06", "m1")
    ready.write_forecasts(forecast_frame("2020-06-06", sites=("A",)), run_id=run2, model_version="m1")
    ready.finish_forecast_run(run2)
    latest = ready.latest_forecasts()
    issued = latest.groupby("site")["issue_time"].max()
    assert issued["A"] == pd.Timestamp("2020-06-06", tz="UTC")
    assert issued["B"] == pd.Timestamp("2020-06-05", tz="UTC")  # B keeps its last complete forecast
    by_issue = ready.read_forecasts(issue_time="2020-06-05")
    assert len(by_issue) == 12 and set(by_issue["model_version"]) == {"m1"}
    assert ready.write_forecasts(frame, run_id=run, model_version="m1").inserted == 0


def test_model_versions_promote_and_rollback(ready: Store) -> None:
    ready.register_model_version("v1", kind="full", artifact_uri="file:///m/v1", metrics={"crps": 0.01})
    ready.register_model_version("v2", kind="fine-tune", parent="v1", artifact_uri="file:///m/v2")
    assert ready.promote("v1") is None
    assert ready.promote("v2") == "v1"
    assert ready.champion()["version"] == "v2"
    ready.promote("v1", note="rollback")
    versions = ready.model_versions().set_index("version")
    assert versions.loc["v1", "status"] == "champion" and versions.loc["v2", "status"] == "retired"
    assert versions.loc["v1", "metrics"] == {"crps": 0.01}
    with pytest.raises(InputError, match="unknown model version"):
        ready.promote("v9")


def test_bookkeeping_tables_round_trip(ready: Store) -> None:
    assert ready.get_watermark("uscrn", "A") is None
    ready.set_watermark("uscrn", "A", "2020-06-01T00:00Z")
    ready.set_watermark("uscrn", "A", "2020-06-02T00:00Z")
    assert ready.get_watermark("uscrn", "A") == pd.Timestamp("2020-06-02", tz="UTC")
    assert not ready.file_seen("abc")
    ready.record_file("toa5", "/landing/x.dat", "abc", "processed")
    assert ready.file_seen("abc")
    run_id = ready.write_validation_run("uscrn", False, {"expect_x": {"success": False, "unexpected": 2}}, "/docs")
    runs = ready.validation_runs("uscrn")
    assert runs.loc[0, "id"] == run_id and runs.loc[0, "summary"]["expect_x"]["unexpected"] == 2
    bad = pd.DataFrame({"time": ["2020-06-01"], "site": ["A"], "vwc": [0.95], "reason": ["vwc above 0.8"]})
    assert ready.write_quarantine(bad, table="observations", source="test") == 1
    listed = ready.list_quarantine("observations")
    assert listed.loc[0, "row"]["vwc"] == 0.95 and listed.loc[0, "reason"] == "vwc above 0.8"
    released = ready.release_quarantine([int(listed.loc[0, "id"])], released_by="ana")
    assert len(released) == 1 and ready.list_quarantine("observations").empty
    with ready.engine.begin() as conn:
        conn.execute(
            T.alerts.insert().values(
                dedup_key="A|10|p1|sensor_fault",
                kind="sensor_fault",
                site="A",
                depth_cm=10.0,
                sensor="p1",
                window_start=datetime(2020, 6, 1, tzinfo=UTC),
                window_end=datetime(2020, 6, 2, tzinfo=UTC),
                observed=0.4,
                predicted_low=0.2,
                predicted_high=0.3,
                pit=0.999,
                status="open",
                created_at=datetime.now(UTC),
            )
        )
        row = conn.execute(sa.select(T.alerts)).mappings().one()
    assert row["kind"] == "sensor_fault" and row["pit"] == pytest.approx(0.999)


def test_time_bucket_aggregates(ready: Store) -> None:
    obs = observations(14)
    ready.write_observations(obs, source="test")
    agg = ready.aggregate_observations(timedelta(days=7), sites=["A"])
    assert agg["n"].sum() == 42
    p1 = agg[agg["sensor"] == "p1"]
    assert p1["vwc_max"].max() == pytest.approx(0.2 + 0.13)
    assert str(agg["bucket"].dt.tz) == "UTC"


@pytest.mark.parametrize(
    ("mutate", "column", "message"),
    [
        (lambda f: f.assign(time=["2020-06-01T06:00:00"] * len(f)), "time", "timezone-naive"),
        (lambda f: f.assign(vwc=f["vwc"] * 100), "vwc", "percent"),
        (lambda f: f.assign(site="Z"), "site", "unknown site"),
        (lambda f: f.assign(depth_cm=[np.nan] + [10.0] * (len(f) - 1)), "depth_cm", "missing key"),
        (lambda f: pd.concat([f, f.iloc[[0]]], ignore_index=True), "site, depth_cm, sensor, time", "duplicate"),
    ],
    ids=["naive-time", "percent", "unknown-site", "nan-key", "duplicate-key"],
)
def test_bad_observations_are_refused_and_nothing_is_written(ready: Store, mutate, column, message) -> None:
    bad = mutate(observations())
    with pytest.raises(InputError, match=message) as info:
        ready.write_observations(bad, source="test")
    assert info.value.where == "observations"
    assert info.value.column == column
    assert info.value.rows, "the error must name the offending rows"
    assert info.value.fix
    assert ready.count("observations") == 0


def test_failure_midway_rolls_back_the_whole_transaction(ready: Store) -> None:
    with pytest.raises(InputError), ready.transaction() as tx:
        tx.write_observations(observations(), source="test")
        tx.set_watermark("test", "A", "2020-06-05T00:00Z")
        tx.write_forcing(pd.DataFrame({"time": ["2020-06-01"], "site": ["nowhere"], "x": [1.0]}), source="t")
    assert ready.count("observations") == 0
    assert ready.get_watermark("test", "A") is None


def test_database_error_inside_bulk_write_leaves_nothing(ready: Store) -> None:
    frame = forecast_frame()
    run = ready.start_forecast_run("2020-06-05", "m1")
    with ready.engine.begin() as conn:  # a sensor-less site deleted behind the store's back
        conn.execute(T.sites.delete().where(T.sites.c.site == "B"))
    with pytest.raises(InputError, match="unknown site"):
        ready.write_forecasts(frame, run_id=run, model_version="m1")
    assert ready.count("forecasts") == 0


def test_invalid_mixture_is_refused(ready: Store) -> None:
    frame = forecast_frame()
    frame.loc[3, "sigma_1"] = -0.01
    with pytest.raises(InputError, match="invalid mixtures") as info:
        ready.write_forecasts(frame, run_id="r", model_version="m1")
    assert info.value.rows == [3]


def test_daily_observations_are_local_day_means_computed_in_sql(store) -> None:  # type: ignore[no-untyped-def]
    """The database's daily means equal a pandas computation: local standard days, untrusted flags left out,
    ``as_of`` by first ingest."""
    store.upsert_sites(SITES)
    rng = np.random.default_rng(4)
    times = pd.date_range("2020-06-01T00:00Z", periods=24 * 4, freq="h")
    rows = [
        {
            "time": t,
            "site": site,
            "depth_cm": 10.0,
            "sensor": sensor,
            "vwc": float(rng.uniform(0.1, 0.4)),
            "quality_flag": "ok",
        }
        for site in ("A", "B")
        for sensor in ("p1", "p2")
        for t in times
    ]
    frame = pd.DataFrame(rows)
    frame.loc[frame.index % 17 == 0, "quality_flag"] = "spike"
    frame.loc[frame.index % 23 == 0, "quality_flag"] = "gap_before,flatline"
    store.write_observations(frame, source="test")
    offsets = {"B": -6.0}  # A: UTC days; B: local standard time UTC-6

    got = store.read_daily_observations(
        offsets, start="2020-06-01T12:00Z", end="2020-06-04T12:00Z", exclude_flags=("spike", "flatline")
    )

    keep = frame.loc[
        ~frame["quality_flag"].str.contains("spike|flatline")
        & (frame["time"] >= "2020-06-01T12:00Z")
        & (frame["time"] < "2020-06-04T12:00Z")
    ].copy()
    keep["time"] = (keep["time"] + pd.to_timedelta(keep["site"].map(offsets).fillna(0), unit="h")).dt.floor("D")
    want = keep.groupby(["site", "depth_cm", "sensor", "time"], as_index=False).agg(
        vwc=("vwc", "mean"), n=("vwc", "size")
    )
    assert len(got) == len(want) == 2 * 2 * 4  # B's local days straddle UTC: four days each
    merged = want.merge(got.astype({"site": object, "sensor": object}), on=["site", "depth_cm", "sensor", "time"])
    assert len(merged) == len(want)
    np.testing.assert_allclose(merged["vwc_y"], merged["vwc_x"], rtol=1e-9)
    assert (merged["n_y"] == merged["n_x"]).all()
    assert str(got["time"].dt.tz) == "UTC" and (got["first_ingested"].notna()).all()

    later = frame.assign(time=frame["time"] + pd.Timedelta(days=10), quality_flag="ok")
    cutoff = pd.Timestamp.now(tz="UTC")
    store.write_observations(later, source="test")
    known = store.read_daily_observations(offsets, as_of=cutoff)
    assert known["time"].max() < pd.Timestamp("2020-06-06", tz="UTC") and len(store.read_daily_observations({})) > len(
        known
    )


def test_observation_reads_keep_awkward_values_exactly(store) -> None:  # type: ignore[no-untyped-def]
    """The fast read path (COPY … TO STDOUT as CSV on PostgreSQL) keeps what a CSV could mangle."""
    store.upsert_sites(pd.DataFrame({"site": ["NA", "A"]}))
    frame = pd.DataFrame(
        {
            "time": pd.to_datetime(
                ["2020-06-01T00:00:00.123456Z", "2020-06-01T01:00:00Z", "2020-06-01T02:30:15Z"], format="ISO8601"
            ),
            "site": ["NA", "NA", "A"],
            "depth_cm": [5.0, 5.0, 12.5],
            "sensor": ['probe "x", 2', "b", "c"],
            "vwc": [0.1234567891, 0.2, 0.3],
            "quality_flag": ["spike,flatline", "ok", "gap_before"],
        }
    )
    store.write_observations(frame, source="lab, bench")
    back = store.read_observations().sort_values("time").reset_index(drop=True)
    assert list(back["site"]) == ["NA", "NA", "A"] and list(back["sensor"]) == ['probe "x", 2', "b", "c"]
    assert list(back["time"]) == list(frame["time"]) and str(back["time"].dtype) == "datetime64[ns, UTC]"
    assert back["vwc"].tolist() == frame["vwc"].tolist() and back["depth_cm"].tolist() == [5.0, 5.0, 12.5]
    assert list(back["quality_flag"]) == ["spike,flatline", "ok", "gap_before"]
    assert set(back["source"]) == {"lab, bench"} and back["ingested_at"].notna().all()
    empty = store.read_observations(sites=["nowhere"])
    assert empty.empty and {"time", "site", "vwc", "ingested_at"} <= set(empty.columns)


def test_forecast_writes_new_issue_then_rewrite_then_change(ready: Store) -> None:
    """A new issue takes the direct-COPY lane on PostgreSQL; rewriting it is a no-op; a changed value is an update."""
    frame = forecast_frame()
    run = ready.start_forecast_run("2020-06-05", "m1")
    assert ready.write_forecasts(frame, run_id=run, model_version="m1").inserted == 12
    again = ready.write_forecasts(frame, run_id=run, model_version="m1")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 12)
    changed = frame.assign(q95=frame["q95"] + 0.001)
    changed.loc[0, ["weight_0", "weight_1"]] = [0.5, 0.5 - changed.loc[0, "weight_2"]]
    result = ready.write_forecasts(changed, run_id=run, model_version="m1")
    assert (result.inserted, result.updated) == (0, 12)
    ready.finish_forecast_run(run)
    stored = ready.read_forecasts(issue_time="2020-06-05").sort_values(["site", "depth_cm", "lead"])
    expected = changed.sort_values(["site", "depth_cm", "lead"])
    np.testing.assert_allclose(stored["q95"], expected["q95"])
    np.testing.assert_allclose(stored["weight_0"], expected["weight_0"], rtol=1e-6)
    # a second model version at the same issue is a separate forecast, new rows again
    assert ready.write_forecasts(frame, run_id=run, model_version="m2").inserted == 12
    assert ready.count("forecasts") == 24


def test_a_wrong_fresh_probe_falls_back_to_the_merge(ready: Store) -> None:
    """If a concurrent writer inserts keys after the probe said "fresh", the direct COPY hits the unique key;
    the savepoint is rolled back and the merge runs: no error, no duplicate, correct counts."""
    from smmdn.store.bulk import upsert_frame
    from smmdn.store.frames import forecasts_for_write

    frame = forecast_frame()
    run = ready.start_forecast_run("2020-06-05", "m1")
    ready.write_forecasts(frame.iloc[:5], run_id=run, model_version="m1")
    out, k = forecasts_for_write(frame.assign(model_version="m1", run_id=run))
    columns = [c.name for c in T.forecasts.columns]
    arrays = {
        n: [f"{p}_{i}" for i in range(k)] for n, p in (("weights", "weight"), ("means", "mean"), ("sigmas", "sigma"))
    }
    key = ["site", "depth_cm", "valid_time", "issue_time", "model_version"]
    lying_probe = sa.select(sa.false())
    with ready.engine.begin() as conn:
        result = upsert_frame(conn, T.forecasts, out, columns, key, columns[5:], arrays=arrays, fresh_probe=lying_probe)
    assert (result.inserted, result.updated, result.unchanged) == (7, 0, 5)
    assert ready.count("forecasts") == 12
