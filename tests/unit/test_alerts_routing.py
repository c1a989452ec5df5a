"""Routing table parsing and matching, URL references, message text, backoff, suppression decisions."""

from __future__ import annotations

import pandas as pd
import pytest

from smmdn.alerts import message
from smmdn.alerts.deliver import backoff, suppression, with_key
from smmdn.alerts.routing import DEFAULT_TEAM, DeliveryConfigError, parse_routes
from smmdn.alerts.silences import Silences
from smmdn.config import Settings
from smmdn.errors import InputError

SPEC = {
    "teams": {"plains": {"urls": ["env:TEST_PLAINS_URL"], "escalate_to": "leads"},
              "leads": {"urls": ["json://127.0.0.1:9/leads", "mailto://ops@example.org"]},
              "ops": {"urls": ["json://127.0.0.1:9/ops"]}},
    "routes": [{"tags": ["team:plains"], "teams": ["plains"]},
               {"sites": ["NE_*"], "kinds": ["cluster"], "teams": ["ops"]}],
    "operators": ["ops"],
}


def test_routes_match_tags_site_patterns_and_kinds() -> None:
    routes = parse_routes(SPEC, "routes.yaml", default_urls=("json://127.0.0.1:9/default",))
    assert routes.teams_for("NE_Lincoln", ["team:plains"], "sensor_fault") == ["plains"]
    assert routes.teams_for("NE_Lincoln", ["team:plains"], "cluster") == ["plains", "ops"]
    assert routes.teams_for("NM_Las_Cruces", ["team:desert"], "cluster") == [DEFAULT_TEAM]
    assert routes.escalation_teams(["plains", "ops"]) == ["leads", "ops"]  # ops has no escalation: itself
    assert routes.operator_teams() == ["ops"]
    assert routes.targets("leads") == ["leads#0", "leads#1"] and routes.targets("default") == ["default#0"]


def test_url_references_are_resolved_at_send_time(monkeypatch: pytest.MonkeyPatch) -> None:
    routes = parse_routes(SPEC, "routes.yaml")
    monkeypatch.delenv("TEST_PLAINS_URL", raising=False)
    with pytest.raises(DeliveryConfigError, match="TEST_PLAINS_URL"):
        routes.resolve("plains#0")
    monkeypatch.setenv("TEST_PLAINS_URL", "json://127.0.0.1:9/plains")
    assert routes.resolve("plains#0") == "json://127.0.0.1:9/plains"
    assert routes.resolve("leads#1") == "mailto://ops@example.org"
    with pytest.raises(DeliveryConfigError, match="SMMDN_APPRISE_URLS is empty"):
        routes.resolve("default#0")
    with pytest.raises(DeliveryConfigError, match="no longer in the routes file"):
        routes.resolve("gone#0")


@pytest.mark.parametrize(("spec", "error"), [
    ({"teams": {"a": {"urls": []}}}, "urls"),
    ({"teams": {"a": {"urls": ["x://"], "colour": "red"}}}, "colour"),
    ({"teams": {"a": {"urls": ["x://"]}}, "routes": [{"tags": ["t"], "teams": ["b"]}]}, "unknown team"),
    ({"teams": {"default": {"urls": ["x://"]}}}, "reserved"),
])
def test_bad_routes_files_name_the_problem(spec: dict, error: str) -> None:
    with pytest.raises(InputError, match=error) as info:
        parse_routes(spec, "/etc/smmdn/alert-routes.yaml")
    assert "/etc/smmdn/alert-routes.yaml" in str(info.value) and "fix:" in str(info.value)


def test_missing_routes_file_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from smmdn.alerts.routing import load_routes

    with pytest.raises(InputError, match="does not exist"):
        load_routes(Settings(_env_file=None, alert_routes_file=tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("teams: [unclosed\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_routes(Settings(_env_file=None, alert_routes_file=bad))


ALERT = {"id": 7, "revision": 1, "kind": "sensor_fault", "site": "A", "depth_cm": 10.0, "sensor": "c",
         "window_start": pd.Timestamp("2024-05-10", tz="UTC"), "window_end": pd.Timestamp("2024-05-12", tz="UTC"),
         "observed": 0.312, "predicted_low": 0.2, "predicted_high": 0.26, "pit": 0.9995,
         "details": {"hdr": [[0.2, 0.26]], "level_pct": 98.0, "basis": "replicates", "days_outside": 3,
                     "siblings": {"a": {"vwc": 0.23, "outside": False}, "c": {"vwc": 0.312, "outside": True}},
                     "flags": {"readings": 24, "spike": 2, "flatline": 0, "gap": 0}, "issue_time": "2024-05-11",
                     "lead": 1, "model_version": "m1"}}


def test_message_says_what_where_since_when_observed_vs_predicted_and_why() -> None:
    title, body = message.render(ALERT, "opened", {"name": "Alpha", "latitude": 49.7, "longitude": 5.9}, ["plains"])
    assert title == "[smmdn] NEW: likely sensor fault — A 10 cm c"
    for part in ("site A (Alpha), 49.7000 N 5.9000 E; depth 10 cm; sensor c", "Since: 2024-05-10",
                 "(3 day(s) outside)", "Observed: 0.312 m3/m3", "98.0 % highest-density region 0.200–0.260",
                 "PIT 0.9995", "c 0.312 (outside)", "spike 2 of 24 readings", "Check the probe",
                 "smmdn alerts ack 7 --by", "teams: plains"):
        assert part in body, part
    _, resolved = message.render({**ALERT, "resolved_by": "auto"}, "resolved", None, ["plains"], note="back")
    assert "Resolved: auto — back" in resolved and "smmdn alerts ack" not in resolved


def test_backoff_doubles_up_to_the_cap_and_keys_ride_on_http_receivers() -> None:
    cfg = Settings(_env_file=None, alert_delivery_backoff_s=60, alert_delivery_backoff_max_s=3600)
    assert [backoff(n, cfg).total_seconds() for n in (1, 2, 3, 7, 20)] == [60, 120, 240, 3600, 3600]
    url = with_key("json://127.0.0.1:9/x", "alert:1:r1:opened:t#0", cfg)
    assert "+X-Smmdn-Idempotency-Key=alert%3A1%3Ar1%3Aopened%3At%230" in url and "cto=5" in url
    assert "Idempotency" not in with_key("mailto://a@example.org", "k", cfg)


def test_secret_references_go_through_the_injected_resolver() -> None:
    spec = {"teams": {"ops": {"urls": ["secret:ops-webhook"]}}, "operators": ["ops"]}
    with pytest.raises(DeliveryConfigError, match="needs a secret resolver"):
        parse_routes(spec, "routes.yaml").resolve("ops#0")  # the library alone knows no secret store
    store = {"ops-webhook": "json://127.0.0.1:9/ops"}
    assert parse_routes(spec, "routes.yaml", secrets=store.__getitem__).resolve("ops#0") == store["ops-webhook"]
    with pytest.raises(DeliveryConfigError, match="secret 'ops-webhook'"):
        parse_routes(spec, "routes.yaml", secrets={}.__getitem__).resolve("ops#0")


def test_suppression_reasons() -> None:
    now = pd.Timestamp("2024-05-12", tz="UTC")
    silences = Silences(pd.DataFrame([{"id": 3, "kind": "silence", "site": "A", "depth_cm": None, "sensor": "c",
                                       "alert_kind": None, "created_by": "bob", "ends_at": now, "reason": "known"}]))
    nothing = Silences(silences.frame.iloc[0:0])
    assert "silence #3 by bob" in suppression({**ALERT, "status": "open"}, "opened", silences)
    assert suppression({**ALERT, "status": "open", "sensor": "a"}, "opened", silences) is None
    assert suppression({**ALERT, "status": "acked", "acked_by": "Al"}, "reminder", nothing) == (
        "acknowledged by Al")
    assert suppression({**ALERT, "status": "acked"}, "resolved", nothing) is None
    assert suppression(None, "test", silences) is None


@pytest.mark.parametrize(("lat", "lon", "text"), [(35.95, -86.542, "35.9500 N 86.5420 W"),
                                                   (-33.9, 18.4, "33.9000 S 18.4000 E"),
                                                   (0.0, 0.0, "0.0000 N 0.0000 E")])
def test_coordinates_carry_hemisphere_letters_not_signs(lat: float, lon: float, text: str) -> None:
    from smmdn.alerts.message import coordinates, where_line

    assert coordinates(lat, lon) == text
    line = where_line({"site": "X", "depth_cm": 5.0, "sensor": "a"}, {"latitude": lat, "longitude": lon})
    assert text in line and "-" not in line.split(",")[1]


def test_notify_type_follows_the_event() -> None:
    from smmdn.alerts.message import severity

    assert [severity(e) for e in ("test", "opened", "reminder", "escalated", "resolved")] == [
        "info", "warning", "warning", "failure", "info"]
