"""Incidents end to end on SQLite and TimescaleDB, delivered through real apprise to a json:// receiver on
127.0.0.1: grouping by cause, inhibition, per-team timing (group_wait, updates on change, reminders with
backoff), escalation once, digests, acknowledging and silencing an incident, a silent logger.

Alerts are written with the store's own functions (what detection writes); the grouping, the outbox and the
delivery are the real ones. Time is injected: nothing sleeps."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from smmdn.alerts import operator
from smmdn.alerts.deliver import DeliveryOutcome, deliver_outbox
from smmdn.alerts.incidents import load
from smmdn.alerts.routing import load_routes
from smmdn.config import Settings
from smmdn.demo.receiver import AlertReceiver
from smmdn.store import alerts as db
from smmdn.store import incidents as idb
from tests.helpers import alert_world as W

T0 = pd.Timestamp("2024-05-01T06:00Z")


@dataclass
class Net:
    store: Any
    rx: AlertReceiver
    settings: Settings

    def alert(self, kind: str, sensor: str = "c", depth: float = 10.0, site: str = "S1", at: pd.Timestamp = T0,
              **extra: Any) -> int:
        values = dict(dedup_key=f"{kind}{site}{depth}{sensor}{at}", kind=kind, site=site, depth_cm=depth,
                      sensor=sensor, window_start=at - pd.Timedelta(days=1), window_end=at, status="open",
                      details={"fault": "offset"} if kind == "sensor_fault" else {}, created_at=at, revision=1,
                      last_event_at=at) | extra
        return db.insert_alert(self.store, values)

    def resolve(self, alert_id: int, at: pd.Timestamp) -> None:
        db.update_alert(self.store, alert_id, {"status": "resolved", "resolved_at": at, "resolved_by": "auto"})

    def deliver(self, at: pd.Timestamp) -> DeliveryOutcome:
        return deliver_outbox(self.store, self.settings, at)

    def titles(self, path: str = "north") -> list[str]:
        return [m["payload"]["title"].removeprefix("[smmdn] ").split(":")[0] for m in self.rx.messages()
                if m["path"] == f"/{path}"]


def make_net(store: Any, tmp: Path, teams: dict[str, Any] | None = None, extra: dict | None = None) -> Net:
    W.build(store, tags={"S1": ["team:north"], "S2": ["team:south"]})
    rx = AlertReceiver(tmp / "rx.jsonl").start()
    path = W.routes_file(tmp / "routes.yaml", rx, {"north": ["team:north"], "south": ["team:south"], "leads": []},
                         operators="leads", escalate={"north": "leads"}, extra=extra)
    if teams:  # per-team timing on top
        import yaml

        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        for team, timing in teams.items():
            spec["teams"][team].update(timing)
        path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return Net(store, rx, Settings(_env_file=None, home=tmp, alert_routes_file=path))


@pytest.fixture
def net(store, tmp_path) -> Iterator[Net]:  # type: ignore[no-untyped-def]
    n = make_net(store, tmp_path)
    yield n
    n.rx.stop()


def test_a_sensor_fault_and_the_deviations_it_causes_are_one_incident_one_message(net: Net) -> None:
    fault = net.alert("sensor_fault")
    sib = net.alert("deviation", sensor="a")
    cluster = net.alert("cluster", sensor="*")
    other = net.alert("deviation", depth=50.0, sensor="a", site="S2")  # elsewhere: its own incident
    out = net.deliver(T0)
    assert net.titles() == ["NEW"] and net.titles("south") == ["NEW"]
    assert out.notifications["queued"] == {"opened": 2} and out.notifications["inhibited_alerts"] == 2
    [inc] = [i for i in idb.read_incidents(net.store).to_dict("records") if i["site"] == "S1"]
    full = load(net.store, inc["id"])
    assert full is not None and full.root["id"] == fault and {m["id"] for m in full.members} == {fault, sib, cluster}
    muted = {m["id"]: m for m in full.members if m["inhibited_by"] is not None}
    assert set(muted) == {sib, cluster} and all(m["inhibited_by"] == fault for m in muted.values())
    assert muted[sib]["inhibit_rule"] == "sensor-fault-siblings" and "alert #" in muted[sib]["inhibit_reason"]
    text = net.rx.messages()[0]["payload"]["message"]
    assert "Alerts in this incident (3)" in text and "inhibited by #" in text and "45.0000 N" in text
    assert other not in {m["id"] for m in full.members}
    for a in (sib, cluster):  # the consequences clear first: nothing to say
        net.resolve(a, T0 + pd.Timedelta(days=1))
    assert net.deliver(T0 + pd.Timedelta(days=1)).notifications["queued"] == {"reminder": 2}  # S1's and S2's
    net.resolve(fault, T0 + pd.Timedelta(days=2, hours=3))
    net.deliver(T0 + pd.Timedelta(days=2, hours=6))
    assert net.titles() == ["NEW", "STILL OPEN"]  # the resolution is held back (resolve_hold 48 h)
    net.deliver(T0 + pd.Timedelta(days=4, hours=6))
    assert net.titles() == ["NEW", "STILL OPEN", "RESOLVED"]
    assert "Lasted: 2 d 3 h" in net.rx.messages()[-1]["payload"]["message"]


def test_a_new_speaking_member_updates_once_per_group_interval_and_says_what_changed(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    n = make_net(store, tmp_path, teams={"north": {"group_interval": "36h", "repeat_interval": "30d"}})
    try:
        n.alert("missing", sensor="c")
        n.deliver(T0)
        n.alert("missing", sensor="a", depth=50.0, at=T0 + pd.Timedelta(days=1))  # a second probe stops reporting
        assert n.deliver(T0 + pd.Timedelta(days=1)).notifications["queued"] == {}  # within group_interval
        n.alert("cluster", sensor="*", depth=50.0, at=T0 + pd.Timedelta(days=2))  # muted by sensor-missing: no news
        n.deliver(T0 + pd.Timedelta(days=2))
        n.deliver(T0 + pd.Timedelta(days=3))
        assert n.titles() == ["NEW", "UPDATED"]
        text = n.rx.messages()[-1]["payload"]["message"]
        assert "What changed: new: alert #2 no data at S1 50 cm" in text and "#3" not in text.split(
            "What changed")[1].split("\n")[0]
        assert len(idb.read_incidents(store)) == 1
    finally:
        n.rx.stop()


def test_a_cluster_event_reaching_another_depth_is_listed_not_sent_as_an_update(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    n = make_net(store, tmp_path, teams={"north": {"repeat_interval": "30d"}})
    try:
        first = n.alert("cluster", sensor="*")
        n.deliver(T0)
        deeper = n.alert("cluster", sensor="*", depth=50.0, at=T0 + pd.Timedelta(days=1))  # the wetting front
        for day in (1, 2, 3):  # past group_interval (12 h): still nothing to tell
            assert n.deliver(T0 + pd.Timedelta(days=day)).notifications["queued"] == {}
        [inc] = idb.read_incidents(store).to_dict("records")
        full = load(store, inc["id"])
        assert full is not None and {m["id"] for m in full.members} == {first, deeper}
        n.resolve(first, T0 + pd.Timedelta(days=3))
        n.resolve(deeper, T0 + pd.Timedelta(days=4))
        n.deliver(T0 + pd.Timedelta(days=7))
        assert n.titles() == ["NEW", "RESOLVED"]  # the budget: opened, resolved
        assert "S1 50 cm" in n.rx.messages()[-1]["payload"]["message"]  # the deeper depth is listed
    finally:
        n.rx.stop()


def test_reminders_back_off_from_a_day_to_a_week_and_escalation_goes_once_to_the_lead(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    n = make_net(store, tmp_path)
    try:
        fault = n.alert("sensor_fault")
        for day in range(31):
            if day == 2:
                db.update_alert(store, fault, {"escalated_at": T0 + pd.Timedelta(days=2)})  # what the lifecycle does
            n.deliver(T0 + pd.Timedelta(days=day))
        assert n.titles() == ["NEW"] + ["STILL OPEN"] * 6  # after 1, 3, 7, 14, 21 and 28 days: ≤ 6 in 30 days
        leads = [m for m in n.rx.messages() if m["path"] == "/leads"]
        assert n.titles("leads") == ["ESCALATED"] and leads[0]["payload"]["type"] == "failure"
    finally:
        n.rx.stop()


def test_acknowledging_an_incident_stops_reminders_and_silencing_it_mutes_only_its_alerts(net: Net, capsys) -> None:
    fault = net.alert("sensor_fault")
    net.deliver(T0)
    inc = int(idb.read_incidents(net.store).iloc[0]["id"])
    acked = operator.ack_incident(net.store, inc, "Alice", T0 + pd.Timedelta(hours=1), note="on my way")
    assert acked == [fault] and db.get_alert(net.store, fault)["acked_by"] == "Alice"
    for day in range(1, 5):
        net.deliver(T0 + pd.Timedelta(days=day))
    assert net.titles() == ["NEW"]
    other = net.alert("sensor_fault", site="S2", sensor="b")
    ids = operator.silence_incident(net.store, inc, by="bob", now=T0 + pd.Timedelta(days=5),
                                    until=T0 + pd.Timedelta(days=9), reason="probe ordered")
    assert len(ids) == 1
    net.deliver(T0 + pd.Timedelta(days=5))
    assert net.titles("south") == ["NEW"]  # another incident is not muted by it
    with pytest.raises(Exception, match="no incident 999"):
        operator.ack_incident(net.store, 999, "x", T0)
    assert other


def test_a_silent_logger_is_one_incident_that_mutes_its_missing_sensors(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from smmdn.alerts import step

    world = W.build(store, tags={"S1": ["team:north"], "S2": ["team:south"]})
    W.write_forecasts(world, range(20))
    rx = AlertReceiver(tmp_path / "rx.jsonl").start()
    routes = W.routes_file(tmp_path / "routes.yaml", rx, {"north": ["team:north"], "south": ["team:south"]})
    cfg = Settings(_env_file=None, home=tmp_path, alert_routes_file=routes, drift_min_pairs=10_000)
    try:
        W.observe(world, range(10))  # then S1's logger stops: only S2 reports from day 10
        frame = W.readings(world, range(10, 13))
        store.write_observations(frame.loc[frame["site"] == "S2"], source="test")
        for day in (9, 10, 11):
            step.detect(store, world.now_after(day), cfg, routes=load_routes(cfg))
            deliver_outbox(store, cfg, world.now_after(day))
        alerts = db.read_alerts(store)
        assert "site_silent" in set(alerts["kind"]) and (alerts["kind"] == "missing").sum() >= 3
        north = [m for m in rx.messages() if m["path"] == "/north"]
        first = north[0]["payload"]
        assert "logger silent" in first["title"] and "the logger's power" in first["message"]
        [inc] = idb.read_incidents(store, site="S1").to_dict("records")
        assert [m["key"].split(":")[4] for m in north] == ["opened", "reminder"]  # one story, a day apart
        assert {m["key"].split(":")[1] for m in north} == {str(inc["id"])}
        members = idb.read_members(store, incident_ids=[inc["id"]])
        assert inc["kind"] == "site_silent" and members["inhibit_rule"].dropna().eq("logger-down").sum() >= 3
    finally:
        rx.stop()


def test_a_team_on_the_digest_gets_one_digest_a_day_instead_of_reminders(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    n = make_net(store, tmp_path, teams={"north": {"digest": True}})
    try:
        n.alert("sensor_fault")
        n.alert("cluster", site="S1", depth=50.0, sensor="*")
        for day in range(4):
            n.deliver(T0 + pd.Timedelta(days=day))
            n.deliver(T0 + pd.Timedelta(days=day, hours=2))  # a second run the same day: no second digest
        titles = n.titles()
        assert titles.count("NEW") == 2 and titles.count("DIGEST") == 4 and "STILL OPEN" not in titles
        digest = [m for m in n.rx.messages() if "DIGEST" in m["payload"]["title"]][-1]
        text = digest["payload"]["message"]
        assert "2 open incident(s)" in digest["payload"]["title"] and "sensor fault" in text
        assert digest["key"].startswith("digest:north:2024-05-04:")
        [png] = digest["payload"]["attachments"]  # one image, a panel per open incident
        assert base64.b64decode(png["base64"]).startswith(b"\x89PNG")
    finally:
        n.rx.stop()
