"""Issue 17's message budget on real stores and a real receiver: an incident nobody acts on costs opened, at
most one escalation and resolved (plus the backoff's reminders) — no resolution to the escalation team, no
RESOLVED/BACK pairs for a flapping condition, nothing more from an incident whose alerts were found to be
explained by another incident, and a healthy sibling blamed after the culprit joins the culprit's incident.

Each test fails on the behaviour before these rules (noted per test). Alerts are written with the store's
functions, as detection writes them; grouping, outbox and delivery are the real ones; the clock is injected."""

from __future__ import annotations

import pandas as pd

from smmdn.alerts.incidents import load
from smmdn.store import alerts as db
from smmdn.store import incidents as idb
from tests.integration.test_incidents import T0, make_net

DAY = pd.Timedelta(days=1)


def _keys(net, path: str) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(incident id, event) of every message the receiver got on ``path``."""
    return [(m["key"].split(":")[1], m["key"].split(":")[4]) for m in net.rx.messages() if m["path"] == f"/{path}"]


def test_the_escalation_team_is_told_once_and_the_owning_team_hears_the_resolution(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # before: the lead also got RESOLVED (four messages for one incident: opened, escalated, resolved twice)
    n = make_net(store, tmp_path, teams={"north": {"repeat_interval": "30d", "repeat_max": "30d"}})
    try:
        fault = n.alert("sensor_fault")
        n.deliver(T0)
        db.update_alert(store, fault, {"escalated_at": T0 + 2 * DAY})  # what the lifecycle does after 48 h
        n.deliver(T0 + 2 * DAY)
        n.resolve(fault, T0 + 3 * DAY)
        for day in (3, 4, 5, 6):
            n.deliver(T0 + day * DAY + pd.Timedelta(hours=6))
        assert n.titles() == ["NEW", "RESOLVED"] and n.titles("leads") == ["ESCALATED"]
        assert len(n.rx.messages()) == 3
        lead = next(m for m in n.rx.messages() if m["path"] == "/leads")["payload"]["message"]
        assert "its owners hear the resolution" in lead
    finally:
        n.rx.stop()


def test_a_flapping_alert_is_one_story_without_resolved_and_back_pairs(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # before: RESOLVED then BACK for the reopened alert, and a NEW incident for the recurrence two days later
    n = make_net(store, tmp_path, teams={"north": {"repeat_interval": "30d", "repeat_max": "30d"}})
    try:
        fault = n.alert("sensor_fault", at=T0)
        n.deliver(T0)
        n.resolve(fault, T0 + 2 * DAY)  # cleared for the clear steps ...
        n.deliver(T0 + 2 * DAY + pd.Timedelta(hours=6))
        db.update_alert(store, fault, {"status": "open", "resolved_at": None, "resolved_by": None})  # ... back
        n.deliver(T0 + 3 * DAY + pd.Timedelta(hours=6))
        n.resolve(fault, T0 + 5 * DAY)
        n.deliver(T0 + 5 * DAY + pd.Timedelta(hours=6))
        again = n.alert("sensor_fault", at=T0 + 7 * DAY)  # a new alert on the same probe within the hold
        n.deliver(T0 + 7 * DAY + pd.Timedelta(hours=6))
        [inc] = idb.read_incidents(store, site="S1").to_dict("records")
        assert inc["status"] == "open" and {m["id"] for m in load(store, inc["id"]).members} == {fault, again}
        n.resolve(again, T0 + 9 * DAY)
        for day in (9, 10, 11, 12):
            n.deliver(T0 + day * DAY + pd.Timedelta(hours=6))
        assert n.titles() == ["NEW", "RESOLVED"]  # the resolution went out once the hold passed
        held = [e for i, e in _keys(n, "north")]
        assert held == ["opened", "resolved"]
    finally:
        n.rx.stop()


def test_an_incident_explained_later_by_a_sensor_fault_folds_into_it_and_says_nothing_more(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # before: the cluster incident stayed apart, inhibited, and still sent its reminders and its resolution
    n = make_net(store, tmp_path)
    try:
        cluster = n.alert("cluster", sensor="*")
        n.deliver(T0)
        fault = n.alert("sensor_fault", at=T0 + DAY)  # the detector names the probe a day later
        n.deliver(T0 + DAY)
        for day in range(2, 12):
            if day == 6:
                n.resolve(cluster, T0 + day * DAY)
            n.deliver(T0 + day * DAY)
        incs = {int(i["id"]): i for i in idb.read_incidents(store, site="S1").to_dict("records")}
        first, second = sorted(incs)
        assert incs[first]["group_key"] == f"merged:{second}" and incs[first]["status"] == "resolved"
        members = load(store, second).members
        assert {m["id"] for m in members} == {cluster, fault}
        assert next(m for m in members if m["id"] == cluster)["inhibited_by"] == fault
        events = _keys(n, "north")
        assert [e for i, e in events if i == str(first)] == ["opened"]  # nothing after the fold
        assert next(e for i, e in events if i == str(second)) == "opened"
        text = next(m for m in n.rx.messages() if m["key"].startswith(f"incident:{second}:"))["payload"]["message"]
        assert f"taken over from incident #{first}" in text
    finally:
        n.rx.stop()


def test_a_healthy_sibling_blamed_after_the_culprit_joins_its_incident_muted(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # before: the sibling's sensor_fault was an incident of its own with its own NEW, reminders and resolution
    n = make_net(store, tmp_path, teams={"north": {"repeat_interval": "30d", "repeat_max": "30d"}})
    try:
        culprit = n.alert("sensor_fault", sensor="c")
        n.deliver(T0)
        sibling = n.alert("sensor_fault", sensor="b", at=T0 + DAY)
        elsewhere = n.alert("sensor_fault", sensor="b", depth=50.0, at=T0 + DAY)  # another depth: its own
        n.deliver(T0 + DAY)
        n.deliver(T0 + 2 * DAY)
        incs = idb.read_incidents(store, site="S1")
        assert len(incs) == 2
        full = load(store, int(incs.iloc[0]["id"]))
        assert {m["id"] for m in full.members} == {culprit, sibling}
        muted = next(m for m in full.members if m["id"] == sibling)
        assert muted["inhibited_by"] == culprit and muted["inhibit_rule"] == "sensor-fault-first"
        assert n.titles() == ["NEW", "NEW"]  # the culprit's incident, the other depth's; no update for the sibling
        n.resolve(culprit, T0 + 3 * DAY)  # the culprit cleared, the sibling's call stays: now it speaks
        n.deliver(T0 + 3 * DAY + pd.Timedelta(hours=13))
        assert n.titles() == ["NEW", "NEW", "UPDATED"] and elsewhere
    finally:
        n.rx.stop()


def test_a_consequence_that_outlives_its_cause_stays_quiet(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # before: when the fault cleared first, the cluster alert it had muted spoke up (an UPDATED, a 4th message)
    n = make_net(store, tmp_path, teams={"north": {"repeat_interval": "30d", "repeat_max": "30d"}})
    try:
        fault = n.alert("sensor_fault")
        cluster = n.alert("cluster", sensor="*")
        n.deliver(T0)
        n.resolve(fault, T0 + 2 * DAY)
        n.deliver(T0 + 2 * DAY + pd.Timedelta(hours=13))
        n.resolve(cluster, T0 + 3 * DAY)
        for day in (3, 4, 5, 6):
            n.deliver(T0 + day * DAY + pd.Timedelta(hours=13))
        assert n.titles() == ["NEW", "RESOLVED"]
        [inc] = idb.read_incidents(store, site="S1").to_dict("records")
        member = next(m for m in load(store, inc["id"]).members if m["id"] == cluster)
        assert member["inhibited_by"] == fault and "sensor-fault-siblings" in member["inhibit_reason"]
    finally:
        n.rx.stop()


def test_a_consequence_joining_after_its_cause_cleared_stays_quiet(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # before: the cluster alert raised inside the hold after the fault cleared spoke (an UPDATED: opened,
    # escalated, updated, resolved — four messages for one incident, demo-s3-r0's DEMO04 5 cm)
    n = make_net(store, tmp_path, teams={"north": {"repeat_interval": "30d", "repeat_max": "30d"}})
    try:
        fault = n.alert("sensor_fault")
        n.deliver(T0)
        db.update_alert(store, fault, {"escalated_at": T0 + 2 * DAY})
        n.deliver(T0 + 2 * DAY)
        n.resolve(fault, T0 + 3 * DAY)
        n.deliver(T0 + 3 * DAY + pd.Timedelta(hours=6))
        cluster = n.alert("cluster", sensor="*", at=T0 + 4 * DAY)  # within the 48 h hold
        n.deliver(T0 + 4 * DAY + pd.Timedelta(hours=6))
        n.resolve(cluster, T0 + 6 * DAY)
        for day in (5, 6, 7, 8, 9):
            n.deliver(T0 + day * DAY + pd.Timedelta(hours=6))
        [inc] = idb.read_incidents(store, site="S1").to_dict("records")
        member = next(m for m in load(store, inc["id"]).members if m["id"] == cluster)
        assert member["inhibited_by"] == fault and member["inhibit_rule"] == "sensor-fault-siblings"
        assert n.titles() == ["NEW", "RESOLVED"] and n.titles("leads") == ["ESCALATED"]
        assert "resolved 2024-05-07" in n.rx.messages()[-1]["payload"]["message"]  # when the consequence cleared
    finally:
        n.rx.stop()


def test_cluster_alerts_at_a_missing_sensors_depth_join_its_incident_muted(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # before: the missing sensor was one incident and each cluster episode its others raised at that depth
    # another (two notifying incidents for one disconnected sensor, demo-s3-r0's DEMO02 5 cm b)
    n = make_net(store, tmp_path, teams={"north": {"repeat_interval": "30d", "repeat_max": "30d"}})
    try:
        missing = n.alert("missing", sensor="b")
        n.deliver(T0)
        first = n.alert("cluster", sensor="*", at=T0 + DAY)
        n.deliver(T0 + DAY + pd.Timedelta(hours=13))
        n.resolve(first, T0 + 3 * DAY)
        for day in (3, 4, 5, 6):
            n.deliver(T0 + day * DAY + pd.Timedelta(hours=13))
        second = n.alert("cluster", sensor="*", at=T0 + 7 * DAY)  # another episode, the sensor still missing
        elsewhere = n.alert("cluster", sensor="*", depth=50.0, at=T0 + 7 * DAY)  # another depth: it speaks
        n.deliver(T0 + 7 * DAY + pd.Timedelta(hours=13))
        incs = idb.read_incidents(store, site="S1")
        assert len(incs) == 2
        full = load(store, int(incs.iloc[0]["id"]))
        assert full is not None and full.row["kind"] == "missing" and full.root["id"] == missing
        assert {m["id"] for m in full.members} == {missing, first, second}
        assert all(m["inhibited_by"] == missing and m["inhibit_rule"] == "sensor-missing"
                   for m in full.members if m["id"] != missing)
        assert {m["id"] for m in load(store, int(incs.iloc[1]["id"])).members} == {elsewhere}
        assert n.titles() == ["NEW", "NEW"]  # the missing sensor's, the other depth's; no update, no third
    finally:
        n.rx.stop()


def test_with_the_product_defaults_a_field_team_takes_the_digest_instead_of_reminders(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # before: six STILL OPEN reminders in 30 days against NEW (reminders 6 of 7 messages, digests apart)
    import yaml

    n = make_net(store, tmp_path)
    try:
        path = n.settings.alert_routes_file
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        spec.pop("notify")  # the product defaults, as bench_detection's routes file has them
        path.write_text(yaml.safe_dump(spec), encoding="utf-8")
        fault = n.alert("sensor_fault")
        for day in range(31):
            if day == 2:
                db.update_alert(store, fault, {"escalated_at": T0 + 2 * DAY})
            n.deliver(T0 + day * DAY)
        assert n.titles() == ["NEW"] + ["DIGEST"] * 31  # one a day, the reminder; no STILL OPEN
        assert [k for k in n.rx.messages() if k["path"] == "/north" and k["key"].startswith("digest:")][-1][
            "key"].startswith("digest:north:2024-05-31:")
        assert [t for t in n.titles("leads") if t != "DIGEST"] == ["ESCALATED"]  # the escalation team: once
    finally:
        n.rx.stop()
