"""A depth whose every sensor is under a fault alert, through the real daily flow: the model version trained
that day records which sensors and periods it never saw, and the forecast run says the depth runs free."""

from __future__ import annotations

import pytest

from tests.flows.conftest import HISTORY, Ops, run_daily

pytestmark = [pytest.mark.postgres, pytest.mark.prefect, pytest.mark.slow]


def test_excluded_sensors_are_recorded_and_the_depth_runs_free(ops: Ops) -> None:
    from smmdn.store import alerts as db

    run_daily(ops, HISTORY)
    store = ops.store()
    obs = store.read_observations()
    site, depth = str(obs["site"].iloc[0]), float(obs["depth_cm"].iloc[0])
    sensors = sorted(obs.loc[(obs["site"] == site) & (obs["depth_cm"] == depth), "sensor"].astype(str).unique())
    since = ops.day(HISTORY - 4)
    for s in sensors:
        db.insert_alert(store, dict(dedup_key=f"t{s}", kind="sensor_fault", site=site, depth_cm=depth, sensor=s,
                                    window_start=since, window_end=ops.day(HISTORY - 1), status="open",
                                    details={"fault": "offset"}, created_at=ops.day(HISTORY)))

    summary = run_daily(ops, HISTORY + 1)
    version = summary["training"]["version"]
    row = store.model_versions().set_index("version").loc[version]
    recorded = row["metrics"]["excluded_sensors"]
    assert {(e["site"], e["depth_cm"], e["sensor"]) for e in recorded} == {(site, depth, s) for s in sensors}
    assert all(e["since"] == since.isoformat() and e["until"] is None and e["rows"] > 0 for e in recorded)
    fc = summary["forecast"]
    assert fc["freshness"]["runs_free"] == [{"site": site, "depth_cm": depth, "since": since.isoformat(),
                                             "sensors": sensors}]
    message = store.forecast_runs().set_index("run_id").loc[fc["run_id"], "message"]
    assert f"runs free (no observed state): {site} {depth:g} cm" in message
    assert fc["rows"] > 0  # the depth is still forecast, from the forcing alone
