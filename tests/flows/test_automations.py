"""infra/prefect/automations.yaml under a real Prefect server (the test harness): every automation builds; with
the operators' notification block it is enabled with a real action, and smmdn's own events fire it — the
notification reaches a receiver on 127.0.0.1. Without the block it is created paused, and says so."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import pytest
import yaml

from smmdn.demo.receiver import AlertReceiver

pytestmark = [pytest.mark.prefect]

INFRA = Path(__file__).resolve().parents[2] / "infra" / "prefect"


def _specs() -> list[dict]:
    return yaml.safe_load((INFRA / "automations.yaml").read_text(encoding="utf-8"))["automations"]


def _automations():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(INFRA))
    try:
        import automations
    finally:
        sys.path.remove(str(INFRA))
    return automations


def test_alert_events_fire_the_operators_automation(prefect_harness, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from prefect.automations import Automation
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    from flows.alerts import alert_event

    build = _automations().build
    specs = {s["name"]: s for s in _specs()}
    unconfigured = {name: build(spec) for name, spec in specs.items()}  # no block yet: paused placeholders
    assert not any(a.enabled for a in unconfigured.values())

    rx = AlertReceiver(tmp_path / "ops.jsonl").start()
    try:
        CustomWebhookNotificationBlock(name="smmdn-operators", url=rx.url_for("ops").replace("json://", "http://"),
                                       json_data={"subject": "{{subject}}", "body": "{{body}}"}).save(
            "smmdn-operators", overwrite=True)
        built = {name: build(spec) for name, spec in specs.items()}
        assert all(a.enabled and a.actions[0].type == "send-notification" for a in built.values())
        for name in ("smmdn-alert-escalated", "smmdn-calibration-drift"):
            with contextlib.suppress(ValueError):  # not there yet
                Automation.read(name=name).delete()
            built[name].create()
        escalated = {"event": "escalated", "alert": 41, "kind": "sensor_fault", "site": "S1", "depth_cm": 10.0,
                     "sensor": "a"}
        drift = {"event": "opened", "alert": "calibration-drift", "kind": "calibration_drift", "site": "*",
                 "depth_cm": 0.0, "sensor": "*", "coverage_90": 0.71}
        expected = {"smmdn: alert escalated: sensor_fault S1 10 cm a": escalated,
                    "smmdn: forecast calibration drift": drift}
        alert_event({"event": "opened", "alert": 42, "kind": "sensor_fault", "site": "S1", "depth_cm": 10.0,
                     "sensor": "b"})  # matches neither automation
        # On a SQLite-backed server a new automation reaches the trigger service's cache in a task scheduled
        # after the commit (prefect.server.events.models.automations._notify), so an event sent at once can
        # be evaluated before the automation is known. An event still unanswered is sent again (a new event,
        # as a repeated alert would be); the automation must answer each kind, and never the unmatched one.
        deadline = time.monotonic() + 120  # the server's trigger service evaluates events asynchronously
        resend_at = time.monotonic()
        while time.monotonic() < deadline:
            got = {m["payload"]["subject"] for m in rx.messages()}
            if set(expected) <= got:
                break
            if time.monotonic() >= resend_at:
                for subject, event in expected.items():
                    if subject not in got:
                        alert_event(event)
                resend_at = time.monotonic() + 15
            time.sleep(0.5)
        subjects = sorted(m["payload"]["subject"] for m in rx.messages())
    finally:
        rx.stop()
        for name in ("smmdn-alert-escalated", "smmdn-calibration-drift"):
            with contextlib.suppress(ValueError):  # not there yet
                Automation.read(name=name).delete()
    assert set(subjects) == {"smmdn: alert escalated: sensor_fault S1 10 cm a", "smmdn: forecast calibration drift"}
