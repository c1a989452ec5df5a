"""Pure parts of the notification layer: inhibition rules as data (defaults, validation naming the file and
the rule), per-team timing (durations, backoff), the incident deciding what to send, and the scorer's
counting rule (digests apart, reminders bounded by the backoff)."""

from __future__ import annotations

import pandas as pd
import pytest

from smmdn.alerts.incidents import Incident, home_of
from smmdn.alerts.inhibit import DEFAULT_RULES, inhibitions, parse_rules
from smmdn.alerts.notify import decide
from smmdn.alerts.routing import Timing, parse_routes
from smmdn.errors import InputError
from tests.helpers import notification_score as N

T0 = pd.Timestamp("2024-05-01T06:00Z")


def _alert(i: int, kind: str, sensor: str = "c", depth: float = 10.0, site: str = "S1", **kw) -> dict:  # type: ignore[no-untyped-def]
    return {"id": i, "kind": kind, "site": site, "depth_cm": depth, "sensor": sensor, "status": "open", **kw}


def test_default_rules_mute_consequences_not_causes() -> None:
    active = [_alert(1, "sensor_fault"), _alert(2, "deviation", "a"), _alert(3, "cluster", "*"),
              _alert(4, "deviation", "a", depth=50.0), _alert(5, "site_silent", "*", 0.0, site="S2"),
              _alert(6, "missing", "b", site="S2")]
    muted = inhibitions(active, DEFAULT_RULES)
    assert {k: (v[0], v[1].name) for k, v in muted.items()} == {
        2: (1, "sensor-fault-siblings"), 3: (1, "sensor-fault-siblings"), 6: (5, "logger-down")}


def test_rules_from_yaml_replace_the_defaults_and_bad_rules_name_file_and_rule() -> None:
    rules = parse_rules([{"name": "r", "source": {"kinds": ["cluster"]}, "target": {"kinds": ["deviation"]},
                          "equal": ["site"]}], "routes.yaml")
    assert [r.name for r in rules] == ["r"] and parse_rules([], "routes.yaml") == ()
    with pytest.raises(InputError, match=r"inhibit rule blah: cannot compare colour.*routes.yaml"):
        parse_rules([{"name": "blah", "source": {"kinds": ["x"]}, "target": {"kinds": ["y"]}, "equal": ["colour"]}],
                    "routes.yaml")
    with pytest.raises(InputError, match=r"inhibit rule #2: Field required.*routes.yaml.*inhibit_rules\[1\]\.name"):
        parse_rules([{"name": "a", "source": {"kinds": ["x"]}, "target": {"kinds": ["y"]}},
                     {"source": {"kinds": ["x"]}}], "routes.yaml")
    with pytest.raises(InputError, match="defined twice"):
        parse_rules([{"name": "a", "source": {"kinds": ["x"]}, "target": {"kinds": ["y"]}}] * 2, "f.yaml")


def test_timing_per_team_from_the_routes_file_and_its_backoff() -> None:
    routes = parse_routes({"notify": {"repeat_interval": "12h"},
                           "teams": {"a": {"urls": ["json://x"], "digest": True, "group_wait": "2h"},
                                     "b": {"urls": ["json://y"]}}}, "routes.yaml")
    a, b = routes.timing("a"), routes.timing("b")
    assert (a.digest, a.group_wait, a.repeat_interval) == (True, pd.Timedelta(hours=2), pd.Timedelta(hours=12))
    assert (b.digest, b.group_wait) == (False, pd.Timedelta(0))
    t = Timing()
    assert [t.repeat_after(n) / pd.Timedelta(days=1) for n in range(6)] == [1, 2, 4, 7, 7, 7]
    with pytest.raises(InputError, match="duration"):
        parse_routes({"teams": {"a": {"urls": ["json://x"], "repeat_interval": "soon"}}}, "routes.yaml")


def test_field_teams_take_the_digest_unless_the_routes_file_says_otherwise() -> None:
    # before: every team defaulted to per-incident reminders (the planted-fault runs: 60 % of the messages)
    spec = {"teams": {"field": {"urls": ["json://f"], "escalate_to": "lead"}, "lead": {"urls": ["json://l"]},
                      "ops": {"urls": ["json://o"]}, "own": {"urls": ["json://w"], "digest": False}},
            "routes": [{"tags": ["team:f"], "teams": ["field", "own"]}], "operators": ["ops"]}
    routes = parse_routes(spec, "routes.yaml")
    assert [routes.timing(t).digest for t in ("field", "own", "lead", "ops", "default")] == [
        True, False, False, True, False]  # teams owning incidents; escalation-only and default keep reminders
    off = parse_routes({**spec, "notify": {"digest": False}}, "routes.yaml")
    assert not any(off.timing(t).digest for t in ("field", "own", "lead", "ops"))
    on = parse_routes({**spec, "notify": {"digest": True}}, "routes.yaml")
    assert [on.timing(t).digest for t in ("field", "own", "lead", "ops")] == [True, False, True, True]


def test_decide_follows_group_wait_changes_and_reminders() -> None:
    inc = Incident({"id": 1, "status": "open", "opened_at": T0}, [_alert(1, "sensor_fault", inhibited_by=None)])
    wait = Timing(group_wait=pd.Timedelta(hours=3))
    assert decide(inc, "t", None, wait, T0 + pd.Timedelta(hours=1)) is None
    assert decide(inc, "t", None, wait, T0 + pd.Timedelta(hours=3)) == "opened"
    told = {"last_event": "opened", "last_sent_at": T0, "fingerprint": "1:sensor_fault;esc=0",
            "next_reminder_at": T0 + pd.Timedelta(days=1)}
    assert decide(inc, "t", told, Timing(), T0 + pd.Timedelta(hours=20)) is None
    assert decide(inc, "t", told, Timing(), T0 + pd.Timedelta(days=1)) == "reminder"
    assert decide(inc, "t", told, Timing(digest=True), T0 + pd.Timedelta(days=1)) is None
    inc.members.append(_alert(2, "deviation", "a", inhibited_by=None))
    assert decide(inc, "t", told, Timing(), T0 + pd.Timedelta(hours=6)) is None  # within group_interval
    assert decide(inc, "t", told, Timing(), T0 + pd.Timedelta(hours=12)) == "updated"
    inc.row.update(status="resolved", resolved_at=T0 + pd.Timedelta(hours=13))
    assert decide(inc, "t", told, Timing(), T0 + pd.Timedelta(hours=13)) is None  # held back (resolve_hold 48 h)
    assert decide(inc, "t", told, Timing(), T0 + pd.Timedelta(hours=60)) is None
    assert decide(inc, "t", told, Timing(), T0 + pd.Timedelta(hours=61)) == "resolved"
    assert decide(inc, "t", told, Timing(resolve_hold=pd.Timedelta(0)), T0 + pd.Timedelta(hours=13)) == "resolved"
    assert decide(inc, "t", None, Timing(), T0 + pd.Timedelta(hours=61)) is None  # never told: nothing to close


def test_a_fault_takes_its_depth_a_cluster_takes_the_other_depths_a_silent_logger_the_site() -> None:
    fault = Incident({"id": 1, "kind": "sensor_fault", "site": "S1", "depth_cm": 10.0, "sensor": "c",
                      "status": "open"}, [_alert(1, "sensor_fault")])
    cluster = Incident({"id": 2, "kind": "cluster", "site": "S1", "depth_cm": 50.0, "sensor": None,
                        "status": "open"}, [_alert(2, "cluster", "*", 50.0)])
    open_ = [fault, cluster]
    assert home_of(_alert(3, "deviation", "a"), open_) is fault
    assert home_of(_alert(4, "cluster", "*", 20.0), open_) is cluster
    assert home_of(_alert(5, "sensor_fault", "b"), open_) is fault  # a sibling blamed too: the same story
    assert home_of(_alert(9, "sensor_fault", "b", depth=50.0), open_) is None  # another depth: its own
    assert home_of(_alert(6, "deviation", "a", site="S2"), open_) is None
    silent = Incident({"id": 3, "kind": "site_silent", "site": "S1", "status": "open"}, [_alert(7, "site_silent")])
    assert home_of(_alert(8, "missing", "a"), [silent, *open_]) is silent


def test_scorer_counts_digests_apart_and_bounds_reminders_by_the_backoff() -> None:
    lines = [{"path": "/f", "key": "incident:1:f:n1:opened:f#0"}, {"path": "/f", "key": "incident:1:f:n2:reminder:f#0"},
             {"path": "/f", "key": "digest:f:2024-05-02:f#0"}, {"path": "/f", "key": "incident:1:f:n3:resolved:f#0"},
             {"path": "/o", "key": "incident:2:o:n1:opened:o#0"}]
    msgs = N.messages(lines)
    incidents = pd.DataFrame({"id": [1, 2], "opened_at": [T0, T0], "resolved_at": [T0 + pd.Timedelta(days=2), pd.NaT]})
    members = pd.DataFrame({"incident_id": [1, 1, 2], "alert_id": [10, 11, 12], "inhibited_by": [None, 10, 10]})
    got = N.score(msgs, incidents, members, T0 + pd.Timedelta(days=3), {10: 0, 11: 0, 12: 1})
    assert (got["messages"], got["digests"], got["incidents_notified"]) == (4, 1, 2)
    assert got["reminders_share"] == 0.25 and got["messages_for_inhibited_alerts"] == 1  # incident 2: all muted
    assert got["faults_one_notifying_incident"] == 2 and got["incidents_spanning_faults"] == 0
    assert [N.allowed_reminders(d) for d in (0.5, 1, 3, 7, 14, 30)] == [0, 1, 2, 3, 4, 6]


def test_scorer_counts_a_folded_incident_only_for_what_it_sent_after_the_fold() -> None:
    # before: a folded incident (no members left) counted every message it ever sent as "for inhibited alerts"
    lines = [{"path": "/f", "key": "incident:1:f:n1:opened:f#0"}, {"path": "/f", "key": "incident:2:f:n1:opened:f#0"}]
    incidents = pd.DataFrame({"id": [1, 2], "group_key": ["merged:2", "sensor|S1|10|c"],
                              "opened_at": [T0, T0 + pd.Timedelta(days=1)],
                              "resolved_at": [T0 + pd.Timedelta(days=1), pd.NaT]})
    members = pd.DataFrame({"incident_id": [2, 2], "alert_id": [10, 11], "inhibited_by": [None, 10]})
    sent = {"incident:1:f:n1:opened:f#0": T0, "incident:2:f:n1:opened:f#0": T0 + pd.Timedelta(days=1)}
    end = T0 + pd.Timedelta(days=3)
    got = N.score(N.messages(lines), incidents, members, end, {10: 0, 11: 0}, sent_at=sent)
    assert got["messages_for_inhibited_alerts"] == 0 and got["incidents_folded"] == 1
    assert got["faults_one_notifying_incident"] == 1  # the fault's alerts are all in incident 2 now
    late = {**sent, "incident:1:f:n1:opened:f#0": T0 + pd.Timedelta(days=2)}  # sent after the fold: counted
    assert N.score(N.messages(lines), incidents, members, end, sent_at=late)["messages_for_inhibited_alerts"] == 1


def test_the_example_routes_file_parses_and_spells_out_the_default_rules() -> None:
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parents[2] / "infra" / "config" / "alert-routes.example.yaml"
    routes = parse_routes(yaml.safe_load(path.read_text(encoding="utf-8")), str(path))
    assert [(r.name, r.sources, r.targets, r.equal) for r in routes.inhibit] == [
        (r.name, r.sources, r.targets, r.equal) for r in DEFAULT_RULES]
    assert routes.timing("plains-field").digest and routes.timing("ops").repeat_interval == pd.Timedelta(hours=48)


def test_the_residual_panel_is_each_sensor_minus_its_siblings_median() -> None:
    from smmdn.alerts.plots import alert_png, sibling_residuals

    days = pd.date_range("2024-05-01", periods=3, freq="D", tz="UTC")
    obs = pd.DataFrame({"time": list(days) * 3, "sensor": ["a"] * 3 + ["b"] * 3 + ["c"] * 3,
                        "vwc": [0.20, 0.20, 0.20, 0.22, 0.22, 0.22, 0.20, 0.25, 0.30]})
    res = sibling_residuals(obs).set_index(["sensor", "time"])["residual"].round(4)
    assert list(res.loc["c"]) == [-0.01, 0.04, 0.09] and list(res.loc["a"]) == [-0.01, -0.035, -0.06]
    fan = pd.DataFrame({"time": days, "q05": 0.15, "q25": 0.18, "q50": 0.2, "q75": 0.22, "q95": 0.25})
    assert alert_png(obs, fan, "t", highlight="c", residual=True).startswith(b"\x89PNG")
