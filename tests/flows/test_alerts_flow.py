"""The daily flow's detect → deliver → verify steps under the Prefect test harness, on TimescaleDB, with real
apprise delivery to a json:// receiver on 127.0.0.1; calibration drift schedules a full retrain; a broken
detector or notifier never stops the forecast."""

from __future__ import annotations

import base64

import numpy as np
import pandas as pd
import pytest

from smmdn.config import get_settings
from smmdn.demo.receiver import AlertReceiver
from smmdn.store import alerts as db
from tests.flows.conftest import HISTORY, Ops, artifacts, run_daily
from tests.helpers.alert_world import routes_file

pytestmark = [pytest.mark.postgres, pytest.mark.prefect, pytest.mark.slow]


def test_cycle_detects_delivers_scores_and_retrains_after_drift(ops: Ops, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    rx = AlertReceiver(tmp_path / "alerts.jsonl").start()
    sites = ops.network.sites
    teams = {f"field-{s.site[-1]}": [f"team:field-{s.site[-1]}"] for s in sites} | {"ops": []}
    routes = routes_file(tmp_path / "routes.yaml", rx, teams, operators="ops")
    # forced miscalibration: no real coverage_90 lies inside [0.999, 0.9995], so drift must fire once scored
    for key, value in {"SMMDN_ALERT_ROUTES_FILE": str(routes), "SMMDN_DRIFT_MIN_PAIRS": "1",
                       "SMMDN_DRIFT_COVERAGE_MIN": "0.999", "SMMDN_DRIFT_COVERAGE_MAX": "0.9995"}.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    try:
        ops.drop_day(ops.day(HISTORY))
        first = run_daily(ops, HISTORY + 1)  # cold start (a Sunday: the weekly full retrain day anyway)
        assert first["alerts"]["status"] == "ok" and first["delivery"]["status"] == "ok"
        assert first["verification"]["status"] == "ok" and first["verification"]["drift"] is False  # nothing to score
        # a fourth probe at the first site's 5 cm reads far too wet on the next day (its siblings are fine)
        site, day = sites[0].site, ops.day(HISTORY + 2)
        hours = pd.date_range(day, periods=24, freq="h", tz="UTC")
        ops.store().write_observations(pd.DataFrame({"time": hours, "site": site, "depth_cm": 5.0, "sensor": "d",
                                                     "vwc": np.full(24, 0.58)}), source="test")
        second = run_daily(ops, HISTORY + 2)  # Monday: a fine-tune; scores the full model's forecasts
        result = second["alerts"]["result"]
        assert second["alerts"]["status"] == "ok" and result["opened"] >= 1 and result["observations"] > 0
        store = ops.store()
        alerts = db.read_alerts(store, kinds=["sensor_fault"])  # the tiny model may find real ones too
        assert (site, 5.0, "d") in {(a.site, a.depth_cm, a.sensor) for a in alerts.itertuples()}
        field = [m for m in rx.messages() if m["path"] == f"/field-{site[-1]}"
                 and f"{site} 5 cm d" in m["payload"]["title"]]
        assert len(field) == 1 and "sensor d" in field[0]["payload"]["message"]
        assert base64.b64decode(field[0]["payload"]["attachments"][0]["base64"]).startswith(b"\x89PNG")
        assert second["delivery"]["result"]["sent"] >= 2  # the field team's alert and the operators' drift alert
        ver = second["verification"]
        assert ver["status"] == "ok" and ver["result"]["scored"] > 0 and store.count("verification") > 0
        assert ver["drift"] is True, ver["result"]["report"]
        assert any(m["path"] == "/ops" and "calibration drift" in m["payload"]["title"] for m in rx.messages())
        assert artifacts("verification-skill") and artifacts("verification-by-lead")
        reliability = artifacts("verification-reliability")
        assert reliability and "PIT histogram" in reliability[0].data and "drift: **True**" in reliability[0].data
        assert "![reliability](data:image/png;base64," in reliability[0].data  # the plot itself, inline
        summary = artifacts("daily-summary")[0].data
        assert "alerts raised:" in summary and "delivery: sent" in summary
        assert second["training"]["kind"] == "fine-tune"
        third = run_daily(ops, HISTORY + 3)  # Tuesday: no weekly retrain, but the drift asks for one
        assert third["training"]["kind"] == "full" and "calibration drift" in third["training"]["why"]
    finally:
        rx.stop()


def test_broken_detection_and_delivery_do_not_stop_the_forecast(ops: Ops, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from smmdn.alerts import deliver as notify
    from smmdn.alerts import step as anomalies

    def boom(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("detector on fire")

    monkeypatch.setattr(anomalies, "detect", boom)
    monkeypatch.setattr(notify, "deliver_outbox", boom)
    summary = run_daily(ops, HISTORY)
    assert summary["forecast"]["status"] == "complete" and summary["forecast"]["rows"] > 0
    assert summary["alerts"]["status"] == "failed" and "detector on fire" in summary["alerts"]["detail"]
    assert summary["delivery"]["status"] == "failed"
    assert summary["verification"]["status"] == "ok"
