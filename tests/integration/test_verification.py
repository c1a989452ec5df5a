"""The verify step on both backends: every forecast scored when its observation arrives (by hand on a small
case), idempotent reruns, late data, and the calibration-drift signal with the operators' alert."""

from __future__ import annotations

import base64

import numpy as np
import pandas as pd
from scipy.stats import norm

from smmdn.config import Settings
from smmdn.demo.receiver import AlertReceiver
from smmdn.store import alerts as db
from smmdn.store import verification as scores
from smmdn.verify import verification
from tests.helpers import alert_world as W

DAY = pd.Timedelta(days=1)


def _gauss(sd: float):  # type: ignore[no-untyped-def]
    return lambda site, depth, t, v: {"weight_0": 1.0, "mean_0": v, "sigma_0": sd}


def test_every_forecast_is_scored_once_its_day_has_observations(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    world = W.build(store, sites=("S1",), sensors=("a", "b"), days=6, horizon=2)
    W.write_forecasts(world, [0, 1], shape=_gauss(0.02))  # issue day 0: valid 1, 2; issue day 1: valid 2, 3
    truth = world.truth.set_index(["time"])["vwc"]
    values = {("a", 1): truth[world.day(1)] + 0.02, ("b", 1): truth[world.day(1)] - 0.05,
              ("a", 2): truth[world.day(2)], ("b", 2): truth[world.day(2)] + 0.01}
    obs = pd.DataFrame([{"time": world.day(d), "site": "S1", "depth_cm": 10.0, "sensor": s, "vwc": v}
                        for (s, d), v in values.items()])
    store.write_observations(obs, source="test")
    cfg = Settings(_env_file=None, home=tmp_path, drift_min_pairs=10_000)
    out = verification.verify(store, world.now_after(2), cfg)
    assert out.scored == 6 and out.new_rows == 6  # day 1: 1 forecast x 2 sensors; day 2: 2 forecasts x 2 sensors
    rows = scores.read_verification(store).set_index(["valid_time", "issue_time", "sensor"])
    for (sensor, d), x in values.items():
        for issue in (0, 1):
            if not 0 < d - issue <= 2:
                continue
            r = rows.loc[(world.day(d), world.day(issue), sensor)]
            mu = truth[world.day(d)]
            z = (x - mu) / 0.02
            hand_crps = 0.02 * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / np.sqrt(np.pi))
            assert r["lead"] == d - issue and np.isclose(r["observed"], x)
            assert np.isclose(r["crps"], hand_crps, rtol=1e-5, atol=1e-9)
            assert np.isclose(r["pit"], norm.cdf(z), atol=1e-6)
            assert bool(r["in_50"]) == (abs(z) <= 0.6745) and bool(r["in_90"]) == (abs(z) <= 1.6449)
            assert np.isclose(r["width_90"], 2 * 1.6448536 * 0.02, rtol=1e-4)
    again = verification.verify(store, world.now_after(2), cfg)
    assert again.new_rows == 0 and store.count("verification") == 6  # idempotent
    late = pd.DataFrame([{"time": world.day(3), "site": "S1", "depth_cm": 10.0, "sensor": "a",
                          "vwc": truth[world.day(3)]}])
    store.write_observations(late, source="test")  # day 3's value arrives a day late
    assert verification.verify(store, world.now_after(4), cfg).new_rows == 1
    by_lead = {r["lead"]: r["n"] for r in verification.skill_report(store, world.now_after(4), cfg)["by_lead"]
               .to_dict("records")}
    assert by_lead == {1: 4, 2: 3}


def _drift_world(store, tmp_path, sd: float):  # type: ignore[no-untyped-def]
    world = W.build(store, sites=[f"S{i}" for i in range(6)], sensors=("a",), days=16, horizon=2, sigma=0.01)
    W.write_forecasts(world, range(16), shape=_gauss(sd))
    W.observe(world, range(16), day_sd=0.01, noise=0.0, hourly=False)
    return world


def test_forced_miscalibration_triggers_drift_and_tells_the_operators(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    world = _drift_world(store, tmp_path, sd=0.003)  # the forecast claims 3x the sharpness it has
    rx = AlertReceiver(tmp_path / "rx.jsonl").start()
    routes = W.routes_file(tmp_path / "routes.yaml", rx, {"ops": []}, operators="ops")
    cfg = Settings(_env_file=None, home=tmp_path, alert_routes_file=routes, drift_min_pairs=50)
    try:
        out = verification.verify(store, world.now_after(14), cfg)
        assert out.drift and out.notified == "opened"
        report = out.report
        assert report["coverage_90"] < 0.6 and any("coverage_90" in r for r in report["reasons"])
        assert report["pit_p"] < 0.01 and report["independent"] == 6 * 14
        from smmdn.alerts import deliver as notify

        notify.deliver_outbox(store, cfg, world.now_after(14))
        [msg] = rx.messages()
        assert msg["path"] == "/ops" and "calibration drift" in msg["payload"]["title"]
        assert "full retrain is scheduled" in msg["payload"]["message"]
        png = base64.b64decode(msg["payload"]["attachments"][0]["base64"])
        assert png.startswith(b"\x89PNG")  # the reliability plot
        assert {"reliability", "skill"} <= set(out.plots)
        assert out.retrain
        # a full retrain ran but was rejected (the champion stays): the drift stays, no second request
        from smmdn.cycle.plan import DRIFT_HANDLED

        assert verification.verify(store, world.now_after(14), cfg).retrain  # not yet answered: still asking
        store.set_watermark(*DRIFT_HANDLED, world.now_after(14) + pd.Timedelta(hours=1))
        again = verification.verify(store, world.now_after(14) + pd.Timedelta(hours=2), cfg)
        assert again.drift and not again.retrain and "not asking again" in again.report["reasons"][-1]
        # a full retrain made a new champion: the old model's forecasts leave the window, the alert resolves
        store.register_model_version("m2", kind="full", artifact_uri="file:///tmp/m2", status="challenger")
        store.promote("m2")
        store.register_model_version("m2-ft", kind="fine-tune", parent="m2", artifact_uri="file:///tmp/m3")
        assert verification.since_last_full_retrain(store) == ("m2", {"m2", "m2-ft"})
        after = verification.verify(store, world.now_after(15), cfg)
        assert not after.drift and after.notified == "resolved" and "no verdict" in after.report["reasons"][0]
    finally:
        rx.stop()


def test_calibrated_forecasts_raise_no_drift(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    world = _drift_world(store, tmp_path, sd=0.01)
    cfg = Settings(_env_file=None, home=tmp_path, drift_min_pairs=50)
    out = verification.verify(store, world.now_after(14), cfg)
    assert not out.drift and out.report["reasons"] == [] and out.notified is None
    assert 0.8 <= out.report["coverage_90"] <= 0.97 and out.report["pit_p"] > 0.01


def test_faulty_sensor_days_are_not_scored(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from smmdn.alerts import step as anomalies

    world = W.build(store, days=14, tags={})
    W.write_forecasts(world, range(14))

    def bend(site, depth, sensor, day, values):  # type: ignore[no-untyped-def]
        return values + 0.08 if site == "S1" and sensor == "c" and day >= world.day(9) else values

    W.observe(world, range(13), bend=bend)
    cfg = Settings(_env_file=None, home=tmp_path, drift_min_pairs=10_000)
    anomalies.detect(store, world.now_after(12), cfg)
    assert list(db.read_alerts(store)["kind"]) == ["sensor_fault"]
    verification.verify(store, world.now_after(12), cfg)
    v = scores.read_verification(store)
    c = v.loc[(v["site"] == "S1") & (v["sensor"] == "c")]
    assert len(c) and c["valid_time"].max() < world.day(9)  # the probe's bad days never reach the scores
    assert (v.loc[v["sensor"] == "a", "valid_time"].max()) == world.day(12)
