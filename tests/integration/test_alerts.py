"""Detection → lifecycle → outbox → real apprise delivery to json:// receivers on 127.0.0.1, on SQLite and on
TimescaleDB. Time is injected (``now``): no test sleeps.

The world (tests/helpers/alert_world.py): sites S1 (tag team:north) and S2 (team:south), three replicate
sensors a/b/c at 10 cm, daily forecast runs centred on the truth, hourly readings around it.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from smmdn.alerts import deliver as notify
from smmdn.alerts import operator
from smmdn.alerts import step as anomalies
from smmdn.alerts.routing import load_routes
from smmdn.config import Settings
from smmdn.demo.receiver import AlertReceiver
from smmdn.store import alerts as db
from tests.helpers import alert_world as W

TAGS = {"S1": ["team:north"], "S2": ["team:south"]}
QUIET = {"alert_cooldown_hours": 24 * 30, "alert_escalate_after_hours": 24 * 60, "drift_min_pairs": 10_000}
QUIET_NOTIFY = {"repeat_interval": "30d", "repeat_max": "30d"}  # no reminders unless a test asks for them


@dataclass
class Env:
    store: Any
    world: W.World
    rx: AlertReceiver
    settings: Settings
    tmp: Path

    def detect(self, day: int, **kw: Any) -> anomalies.DetectOutcome:
        return anomalies.detect(self.store, self.world.now_after(day), self.settings, **kw)

    def deliver(self, day: int, hours: float = 0.0) -> notify.DeliveryOutcome:
        return notify.deliver_outbox(self.store, self.settings, self.world.now_after(day) + pd.Timedelta(hours=hours))

    def plan(self, day: int, hours: float = 0.0) -> Any:
        """The notification planning the deliver step runs first (incidents → outbox), without sending."""
        from smmdn.alerts.notify import notify as plan_notifications

        return plan_notifications(self.store, self.world.now_after(day) + pd.Timedelta(hours=hours), self.routes())

    def cycle(self, day: int) -> tuple[anomalies.DetectOutcome, notify.DeliveryOutcome]:
        return self.detect(day), self.deliver(day)

    def messages(self, path: str | None = None) -> list[dict]:
        return [m for m in self.rx.messages() if path is None or m["path"] == f"/{path}"]

    def alerts(self, **kw: Any) -> pd.DataFrame:
        return db.read_alerts(self.store, **kw)

    def routes(self) -> Any:
        return load_routes(self.settings)


def make_env(store: Any, tmp: Path, *, sensors: tuple[str, ...] = ("a", "b", "c"), depths: tuple[float, ...] = (10.0,),
             days: int = 20, settings: dict | None = None, escalate: dict | None = None,
             timing: dict | None = None) -> Env:
    world = W.build(store, sensors=sensors, depths=depths, days=days, tags=TAGS)
    W.write_forecasts(world, range(days))
    rx = AlertReceiver(tmp / "received.jsonl").start()
    teams = {"north": ["team:north"], "south": ["team:south"], "ops": []}
    if escalate:
        teams["leads"] = []
    routes = W.routes_file(tmp / "routes.yaml", rx, teams, operators="ops", escalate=escalate,
                           notify={**QUIET_NOTIFY, **(timing or {})})
    cfg = Settings(_env_file=None, home=tmp, alert_routes_file=routes, **{**QUIET, **(settings or {})})
    return Env(store, world, rx, cfg, tmp)


@pytest.fixture
def env(store, tmp_path) -> Iterator[Env]:  # type: ignore[no-untyped-def]
    e = make_env(store, tmp_path)
    yield e
    e.rx.stop()


def drift_c(world: W.World, from_day: int = 10, site: str = "S1") -> Any:
    """Sensor c at ``site`` drifts upwards from ``from_day`` (a calibration fault: +0.05, then +0.01 a day)."""

    def bend(s: str, depth: float, sensor: str, day: pd.Timestamp, values: Any) -> Any:
        if s == site and sensor == "c" and day >= world.day(from_day):
            return values + 0.05 + 0.01 * (day - world.day(from_day)).days
        return values

    return bend


def png_of(message: dict) -> bytes:
    attachments = message["payload"]["attachments"]
    assert len(attachments) == 1 and attachments[0]["mimetype"] == "image/png"
    return base64.b64decode(attachments[0]["base64"])


# --- detection and classification ------------------------------------------------------------------------
def test_drift_on_one_of_three_replicates_is_one_sensor_fault_alert_to_its_team(env: Env) -> None:
    W.observe(env.world, range(14), bend=drift_c(env.world))
    for day in (9, 10, 11, 12, 13):
        env.cycle(day)
    alerts = env.alerts()
    assert list(alerts["kind"]) == ["sensor_fault"]
    a = alerts.iloc[0]
    assert (a["site"], a["sensor"], a["status"]) == ("S1", "c", "open")
    assert a["window_start"] == env.world.day(10)  # since when: the first day outside
    assert a["window_end"] == env.world.day(13) and a["observed"] > a["predicted_high"]
    north, south = env.messages("north"), env.messages("south")
    assert len(north) == 1 and south == [] and len(env.rx.messages()) == 1
    text = north[0]["payload"]["message"]
    assert "sensor fault (" in north[0]["payload"]["title"] and "sensor c" in text  # its type named
    assert "45.0000 N 7.0000 E" in text and "depth 10 cm" in text and "Since: 2024-05-11" in text
    assert "highest-density region" in text and "{'" not in text and "a 0." in text
    assert "Residual vs siblings" in text and "+0.05" in text and "comparison sensors agree" not in text
    assert png_of(north[0]).startswith(b"\x89PNG\r\n\x1a\n")
    incident = int(db.read_outbox(env.store).iloc[0]["incident_id"])
    assert north[0]["key"] == f"incident:{incident}:north:n1:opened:north#0"  # the key travels as a header
    assert "smmdn alerts ack --incident" in text and "smmdn alerts silence --incident" in text
    assert "What to check:" in text and "smmdn alerts maintenance S1" in text


def test_wet_up_of_the_whole_cluster_after_missed_rain_is_a_cluster_alert(env: Env) -> None:
    rain_day = env.world.day(10)

    def wet(site: str, depth: float, sensor: str, day: pd.Timestamp, values: Any) -> Any:
        return values + (0.08 if site == "S2" and day >= rain_day else 0.0)

    W.observe(env.world, range(13), bend=wet)
    for day in (9, 10, 11, 12):
        env.cycle(day)
    alerts = env.alerts()
    assert list(zip(alerts["kind"], alerts["site"], alerts["sensor"], strict=True)) == [("cluster", "S2", "*")]
    assert "3 of 3 sensors outside on the same side" in alerts.iloc[0]["details"]["basis"]
    south = env.messages("south")
    assert len(south) == 1 and env.messages("north") == []
    assert "hydrological event" in south[0]["payload"]["message"] and "all sensors" in south[0]["payload"]["message"]


def test_normal_data_raises_nothing(env: Env) -> None:
    W.observe(env.world, range(18))
    for day in (8, 12, 16, 17):
        outcome, delivery = env.cycle(day)
        assert outcome.observations > 0 and outcome.opened == 0 and delivery.attempted == 0
    assert env.alerts().empty and env.rx.messages() == []
    assert db.read_outbox(env.store).empty


def test_rerun_for_the_same_now_changes_nothing(env: Env) -> None:
    W.observe(env.world, range(13), bend=drift_c(env.world))
    first = env.detect(12)
    assert first.opened == 1
    again = env.detect(12)
    assert (again.opened, again.messages_queued, again.observations) == (0, 0, 0)
    assert env.deliver(12).sent == 1
    rerun = env.deliver(12)  # planning again at the same clock: nothing new to say
    assert rerun.notifications["queued"] == {} and rerun.sent == 0 and len(env.rx.messages()) == 1
    assert len(env.alerts()) == 1 and len(db.read_outbox(env.store)) == 1


def test_bimodal_mixture_observation_between_the_modes_is_caught_by_the_hdr_rule(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    e = make_env(store, tmp_path, sensors=("avg",), depths=(10.0,))
    lows: dict[tuple, float] = {}

    def bimodal(site: str, depth: float, t: pd.Timestamp, v: float) -> dict[str, float]:
        lows[(site, t)] = v - 0.06  # two regimes: dry (v - 0.06) or wet (v + 0.06); never in between
        return {"weight_0": 0.5, "weight_1": 0.5, "mean_0": v - 0.06, "mean_1": v + 0.06, "sigma_0": 0.01,
                "sigma_1": 0.01}

    W.write_forecasts(e.world, range(20), shape=bimodal)  # replaces the unimodal runs (same run ids)
    W.observe(e.world, range(12), day_sd=0.0)  # right between the modes, every day from day 0
    W.observe(e.world, range(6), day_sd=0.0, bend=lambda s, d, x, t, v: v - 0.06)  # days 0-5: on the dry mode
    outcome = e.detect(11)
    assert outcome.opened == 2  # both sites
    alerts = e.alerts()
    assert set(alerts["kind"]) == {"deviation"}  # one sensor per depth, no other depth: cause unknown
    assert alerts["pit"].between(0.4, 0.6).all()  # the PIT alone would call these values perfectly ordinary
    assert (alerts["window_start"] == e.world.day(6)).all()  # the days on a mode were fine
    details = alerts.iloc[0]["details"]
    assert len(details["hdr"]) == 2 and details["hdr"][0][1] < alerts.iloc[0]["observed"] < details["hdr"][1][0]
    e.rx.stop()


# --- lifecycle: ack, silence, maintenance, escalation, reminders, resolution --------------------------------
def test_ack_stops_reminders_and_escalation_but_not_the_resolution(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    e = make_env(store, tmp_path, settings={"alert_cooldown_hours": 24, "alert_escalate_after_hours": 72},
                 escalate={"north": "leads"}, timing={"repeat_interval": "24h", "resolve_hold": "0h"})
    W.observe(e.world, range(15), bend=drift_c(e.world))
    e.cycle(11)
    assert [m["payload"]["title"].split(":")[0] for m in e.messages("north")] == ["[smmdn] NEW"]
    e.cycle(12)  # a day later, unacknowledged: a reminder
    assert [m["payload"]["title"].split(":")[0] for m in e.messages("north")] == ["[smmdn] NEW", "[smmdn] STILL OPEN"]
    alert_id = int(e.alerts().iloc[0]["id"])
    with pytest.raises(Exception, match="--by"):
        operator.ack(store, alert_id, " ", e.world.now_after(12))
    operator.ack(store, alert_id, "Alice", e.world.now_after(12), note="on my way")
    for day in (13, 14):  # past the cooldown and the escalation time: nothing, because Alice is on it
        outcome, delivery = e.cycle(day)
        assert outcome.escalated == 0 and delivery.sent == 0
    assert len(e.rx.messages()) == 2 and e.messages("leads") == []
    row = e.alerts().iloc[0]
    assert (row["status"], row["acked_by"], row["ack_note"]) == ("acked", "Alice", "on my way")
    W.observe(e.world, range(15, 18))  # fixed: back to normal
    for day in (15, 16, 17):
        e.cycle(day)
    assert e.alerts().iloc[0]["status"] == "resolved"
    assert e.messages("north")[-1]["payload"]["title"].startswith("[smmdn] RESOLVED")


def test_unacknowledged_alert_escalates_to_the_escalation_team(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    e = make_env(store, tmp_path, settings={"alert_escalate_after_hours": 48}, escalate={"north": "leads"})
    W.observe(e.world, range(15), bend=drift_c(e.world))
    for day in (11, 12, 13, 14):
        e.cycle(day)
    leads = e.messages("leads")
    assert len(leads) == 1 and leads[0]["payload"]["title"].startswith("[smmdn] ESCALATED")
    assert png_of(leads[0]).startswith(b"\x89PNG")
    assert len(e.messages("north")) == 1  # the field team got the alert once; the lead got the escalation once
    # the client shows an escalation as a failure, a new alert as a warning (apprise's notify type)
    assert leads[0]["payload"]["type"] == "failure" and e.messages("north")[0]["payload"]["type"] == "warning"


def test_silence_suppresses_delivery_but_keeps_the_alert(env: Env) -> None:
    W.observe(env.world, range(13), bend=drift_c(env.world))
    with pytest.raises(Exception, match="unknown site"):
        operator.silence(env.store, "NOPE", by="bob", now=env.world.now_after(9), until=env.world.now_after(20))
    operator.silence(env.store, "S1", by="bob", now=env.world.now_after(9), until=env.world.now_after(20),
                            reason="probe c known broken")
    env.detect(11)
    plan = env.plan(11)
    assert plan.muted == 1 and plan.queued == {}  # a muted incident plans nothing
    env.cycle(12)
    assert len(env.alerts(status=db.ACTIVE)) == 1  # still listed
    assert env.rx.messages() == [] and db.read_outbox(env.store).empty


def test_message_queued_before_a_silence_is_suppressed_with_the_reason(env: Env) -> None:
    W.observe(env.world, range(13), bend=drift_c(env.world))
    env.detect(11)
    env.plan(11)  # queued, not yet sent
    sid = operator.silence(env.store, "S1", by="bob", now=env.world.now_after(11), until=env.world.now_after(20),
                            reason="probe c known broken")
    env.deliver(11, hours=1)
    assert env.rx.messages() == []
    box = db.read_outbox(env.store)
    assert list(box["status"]) == ["suppressed"] and f"silence #{sid} by bob" in box.iloc[0]["note"]
    assert "probe c known broken" in box.iloc[0]["note"]


def test_silence_of_another_depth_or_kind_does_not_suppress(env: Env) -> None:
    W.observe(env.world, range(13), bend=drift_c(env.world))
    operator.silence(env.store, "S1", by="bob", now=env.world.now_after(9), until=env.world.now_after(20),
                      depth_cm=50.0)
    operator.silence(env.store, "S1", by="bob", now=env.world.now_after(9), until=env.world.now_after(20),
                      kind="missing")
    env.cycle(11)
    assert len(env.messages("north")) == 1


def test_maintenance_window_suppresses_detection_and_delivery(env: Env) -> None:
    W.observe(env.world, range(16), bend=drift_c(env.world))
    operator.maintenance(env.store, "S1", by="carol", start=env.world.day(9), end=env.world.day(14),
                          now=env.world.now_after(8), reason="probe swap")
    for day in (9, 10, 11, 12, 13):
        outcome, _ = env.cycle(day)
        assert outcome.opened == 0
    assert env.alerts().empty and env.rx.messages() == []
    env.cycle(14)
    env.cycle(15)  # after the window the fault shows again (two days outside)
    assert list(env.alerts()["kind"]) == ["sensor_fault"] and len(env.messages("north")) == 1


def test_resolution_message_then_recurrence_within_cooldown_reopens_the_same_alert(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # resolve_hold 0h: the team is told at once, so the recurrence is a BACK (the hold would swallow both)
    e = make_env(store, tmp_path, settings={"alert_cooldown_hours": 24 * 5}, timing={"resolve_hold": "0h"})

    def episodes(site: str, depth: float, sensor: str, day: pd.Timestamp, values: Any) -> Any:
        bad = e.world.day(8) <= day < e.world.day(10) or day >= e.world.day(13)
        return values + 0.06 if site == "S1" and sensor == "c" and bad else values

    W.observe(e.world, range(16), bend=episodes)
    for day in range(9, 16):
        e.cycle(day)
    alerts = e.alerts()
    assert len(alerts) == 1 and alerts.iloc[0]["status"] == "open" and int(alerts.iloc[0]["revision"]) == 3
    titles = [m["payload"]["title"].split(":")[0] for m in e.messages("north")]
    assert titles == ["[smmdn] NEW", "[smmdn] RESOLVED", "[smmdn] BACK"]


def test_new_episode_after_the_cooldown_is_a_new_alert(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    e = make_env(store, tmp_path, settings={"alert_cooldown_hours": 12})

    def episodes(site: str, depth: float, sensor: str, day: pd.Timestamp, values: Any) -> Any:
        bad = e.world.day(8) <= day < e.world.day(10) or day >= e.world.day(14)
        return values + 0.06 if site == "S1" and sensor == "c" and bad else values

    W.observe(e.world, range(17), bend=episodes)
    e.detect(9)  # opens the first episode
    e.deliver(9)
    e.detect(16)  # one run over the next week: the first resolves, the second opens, in order
    e.deliver(16)
    alerts = e.alerts()
    assert list(alerts["status"]) == ["resolved", "open"]
    titles = [m["payload"]["title"].split(":")[0] for m in e.messages("north")]
    assert titles == ["[smmdn] NEW", "[smmdn] RESOLVED", "[smmdn] NEW"]


def test_missing_data_alert_and_its_resolution(env: Env) -> None:
    W.observe(env.world, range(10))
    W.observe(env.world, range(10, 14), sensors=("a", "b"))  # c stops reporting after day 9
    outcome, _ = env.cycle(9)
    assert outcome.opened == 0  # last reading day 9 23:00, now day 10 06:00: 7 h, not yet longer than 24 h
    env.cycle(10)  # 31 h: a day without data is enough (the default was 48 h: a day later)
    missing = env.alerts(kinds=["missing"])
    assert list(zip(missing["site"], missing["sensor"], strict=True)) == [("S1", "c"), ("S2", "c")]
    assert {m["path"] for m in env.rx.messages()} == {"/north", "/south"}
    assert "no data" in env.messages("north")[0]["payload"]["title"]
    W.observe(env.world, [14])  # c back; a and b still reporting (a day without them is missing too now)
    env.cycle(14)
    assert set(env.alerts(kinds=["missing"])["status"]) == {"resolved"}


def test_flatline_flags_from_validation_open_a_flatline_alert(env: Env) -> None:
    frame = W.readings(env.world, range(12))
    stuck = (frame["site"] == "S2") & (frame["sensor"] == "b") & (frame["time"] >= env.world.day(11))
    frame.loc[stuck, "vwc"] = 0.25
    frame["quality_flag"] = "ok"
    frame.loc[stuck, "quality_flag"] = "flatline"
    env.store.write_observations(frame, source="test")
    env.cycle(11)
    alerts = env.alerts()
    assert list(zip(alerts["kind"], alerts["site"], alerts["sensor"], strict=True)) == [("flatline", "S2", "b")]
    assert "flatline" in env.messages("south")[0]["payload"]["message"]


def test_averaged_network_uses_cross_depth_consistency(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    e = make_env(store, tmp_path, sensors=("avg",), depths=(5.0, 20.0, 50.0))

    def bend(site: str, depth: float, sensor: str, day: pd.Timestamp, values: Any) -> Any:
        if day < e.world.day(10):
            return values
        if site == "S1" and depth == 50.0:
            return values - 0.08  # a lone deep sensor drops while 5 and 20 cm agree: probe
        if site == "S2" and depth in (5.0, 20.0):
            return values + 0.08  # two depths wetter together: an event the forecast missed
        return values

    W.observe(e.world, range(13), bend=bend)
    for day in (9, 10, 11, 12):
        e.cycle(day)
    found = {(r.site, r.depth_cm, r.sensor, r.kind) for r in e.alerts().itertuples()}
    assert found == {("S1", 50.0, "avg", "sensor_fault"), ("S2", 5.0, "*", "cluster"), ("S2", 20.0, "*", "cluster")}
    text = e.messages("north")[0]["payload"]["message"]
    assert "one sensor per depth: cross-depth consistency" in text and "2 other depth(s) agree" in text
    lone = e.alerts().query("kind == 'sensor_fault'").iloc[0]["details"]  # the evidence issue 17's message shows
    assert lone["weak_attribution"] is True and lone["evidence"] == "cross-depth and model" and "weak" in text
    e.rx.stop()


# --- sensor replacement --------------------------------------------------------------------------------------
def test_sensor_replacement_closes_the_old_sensors_alerts(env: Env) -> None:
    W.observe(env.world, range(13), bend=drift_c(env.world))
    env.cycle(11)
    old = env.alerts(status=db.ACTIVE)
    assert list(old["sensor"]) == ["c"]
    at = env.world.day(12) + pd.Timedelta(hours=10)
    closed = operator.replace_sensor(env.store, "S1", 10.0, "c", "c2", at=at, by="dave", now=at,
                                      routes=env.routes())
    assert closed == [int(old.iloc[0]["id"])]
    env.deliver(12, hours=12)
    last = env.messages("north")[-1]["payload"]
    assert last["title"].startswith("[smmdn] RESOLVED") and "replaced by c2" in last["message"]
    sensors = env.store.read_sensors().query("site == 'S1'").set_index("sensor")
    assert sensors.loc["c", "active_to"] == at and sensors.loc["c2", "active_from"] == at
    # the registry is reloaded by every ingest and still lists c without an end: c must stay retired
    env.store.upsert_sensors(pd.DataFrame({"site": ["S1"], "depth_cm": [10.0], "sensor": ["c"]}))
    more = W.readings(env.world, range(13, 16), bend=drift_c(env.world))
    env.store.write_observations(more, source="test")  # the old logger channel keeps sending drifted values
    env.store.write_observations(W.readings(env.world, range(13, 16), sensors=("a",)).assign(sensor="c2"),
                                 source="test")
    for day in (13, 14, 15):
        env.cycle(day)
    active = env.alerts(status=db.ACTIVE)
    assert active.empty, active[["kind", "site", "depth_cm", "sensor", "window_start"]].to_dict("records")
    with pytest.raises(Exception, match="no sensor 'zz'"):
        operator.replace_sensor(env.store, "S1", 10.0, "zz", None, at=at, by="dave", now=at, routes=env.routes())


# --- delivery: outbox, retries, exactly once ---------------------------------------------------------------
def test_receiver_down_then_up_is_delivered_exactly_once_after_backoff(env: Env) -> None:
    W.observe(env.world, range(13), bend=drift_c(env.world))
    env.rx.down = True  # up but failing (HTTP 503)
    env.detect(11)
    first = env.deliver(11)
    assert (first.sent, first.retrying) == (0, 1) and env.rx.refused == 1
    row = db.read_outbox(env.store).iloc[0]
    assert row["status"] == "pending" and row["attempts"] == 1 and "503" in row["last_error"]
    assert row["next_attempt_at"] == env.world.now_after(11) + pd.Timedelta(seconds=60)
    assert env.deliver(11, hours=0.01).attempted == 0  # 36 s later: not due yet, no attempt
    port = env.rx.port
    env.rx.stop()  # now the port is closed: connection refused
    second = env.deliver(11, hours=0.02)
    row = db.read_outbox(env.store).iloc[0]
    assert second.retrying == 1 and row["attempts"] == 2 and "Connection error" in row["last_error"]
    assert row["next_attempt_at"] == env.world.now_after(11) + pd.Timedelta(hours=0.02, seconds=120)  # doubled
    rx = AlertReceiver(env.tmp / "received.jsonl", port=port).start()  # back up on the same address
    try:
        assert env.deliver(11, hours=1).sent == 1
        assert env.deliver(11, hours=2).attempted == 0 and env.deliver(12, hours=1).sent == 0
        assert len(rx.messages()) == 1
        row = db.read_outbox(env.store).iloc[0]
        assert row["status"] == "sent" and row["attempts"] == 3 and row["last_error"] is None
        alert = env.alerts().iloc[0]
        assert alert["notified_at"] == env.world.now_after(11) + pd.Timedelta(hours=1)
    finally:
        rx.stop()


def test_undeliverable_message_is_parked_as_failed_with_its_error_and_can_be_retried(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    e = make_env(store, tmp_path, settings={"alert_delivery_attempts": 3})
    W.observe(e.world, range(13), bend=drift_c(e.world))
    e.rx.down = True
    e.detect(11)
    for hours in (0, 1, 2, 3, 4):
        e.deliver(11, hours=hours)
    row = db.read_outbox(store).iloc[0]
    assert (row["status"], row["attempts"]) == ("failed", 3) and "503" in row["last_error"]
    assert e.deliver(11, hours=10).attempted == 0  # parked: no automatic attempts any more
    e.rx.down = False
    assert db.requeue(store, [int(row["id"])], e.world.now_after(11) + pd.Timedelta(hours=11)) == 1
    assert e.deliver(11, hours=11).sent == 1 and len(e.rx.messages()) == 1


def test_crash_between_send_and_mark_resends_after_the_lease_with_the_same_key(env: Env) -> None:
    W.observe(env.world, range(13), bend=drift_c(env.world))
    env.detect(11)
    env.plan(11)
    now = env.world.now_after(11)
    lease = pd.Timedelta(seconds=env.settings.alert_delivery_lease_s)
    [outbox_id] = db.due_ids(env.store, now, lease)
    row = db.claim(env.store, outbox_id, now, lease)
    ok, _ = notify.send(env.routes().resolve(row["target"]), row, env.settings)
    assert ok  # ... and the deliverer dies here, before marking the row sent
    assert env.deliver(11, hours=0.05).attempted == 0  # lease still running: nobody touches it
    assert env.deliver(11, hours=1).sent == 1  # lease over: sent again (at-least-once), same key
    keys = [m["key"] for m in env.rx.messages()]
    assert len(keys) == 2 and len(set(keys)) == 1 and keys[0].endswith(":opened:north#0")
    assert db.read_outbox(env.store).iloc[0]["status"] == "sent"


def test_two_deliverers_at_once_send_each_message_once(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from concurrent.futures import ThreadPoolExecutor

    e = make_env(store, tmp_path)
    north, south = drift_c(e.world), drift_c(e.world, site="S2")
    W.observe(e.world, range(13), bend=lambda *a: south(*a[:4], north(*a)))
    assert e.detect(12).opened == 2
    now = e.world.now_after(12)
    rows = [dict(idempotency_key=f"bulk:{i}", event="test", team="north", target="north#0", title=f"t{i}",
                 body="load", status="pending", attempts=0, next_attempt_at=now, created_at=now) for i in range(20)]
    db.enqueue(store, rows)
    with ThreadPoolExecutor(3) as pool:
        outcomes = list(pool.map(lambda _: notify.deliver_outbox(store, e.settings, now), range(3)))
    # 20 bulk + 2 sensor faults + the operators' "sensors excluded" alert (2 of the 6 sensors are excluded)
    assert sum(o.sent for o in outcomes) == 23, [o.to_dict() for o in outcomes]
    keys = [m["key"] for m in e.rx.messages()]
    assert len(keys) == 23 == len(set(keys))
    e.rx.stop()


def test_no_route_and_no_default_url_keeps_the_message_with_the_reason(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    world = W.build(store, tags={})
    W.write_forecasts(world, range(20))
    W.observe(world, range(13), bend=drift_c(world))
    cfg = Settings(_env_file=None, home=tmp_path, **QUIET)
    anomalies.detect(store, world.now_after(11), cfg)
    out = notify.deliver_outbox(store, cfg, world.now_after(11))
    row = db.read_outbox(store).iloc[0]
    assert out.retrying == 1 and row["target"] == "default#0" and "SMMDN_APPRISE_URLS is empty" in row["last_error"]
    rx = AlertReceiver(tmp_path / "rx.jsonl").start()
    try:  # the operator sets the default URL: the waiting message goes out
        cfg = Settings(_env_file=None, home=tmp_path, apprise_urls=rx.url, **QUIET)
        later = world.now_after(11) + pd.Timedelta(hours=2)  # before the first reminder is due
        assert notify.deliver_outbox(store, cfg, later).sent == 1 and len(rx.messages()) == 1
    finally:
        rx.stop()


def test_test_message_reaches_the_team(env: Env) -> None:
    outcome = notify.send_test(env.store, env.settings, "south", env.world.now_after(1), by="erin")
    assert outcome.sent == 1
    [message] = env.messages("south")
    assert "TEST" in message["payload"]["title"] and "erin" in message["payload"]["message"]
    with pytest.raises(Exception, match="unknown team"):
        notify.send_test(env.store, env.settings, "nobody", env.world.now_after(1))


def test_manual_resolve_is_announced_and_needs_a_name(env: Env) -> None:
    W.observe(env.world, range(13), bend=drift_c(env.world))
    env.cycle(11)
    alert_id = int(env.alerts().iloc[0]["id"])
    with pytest.raises(Exception, match="--by"):
        operator.resolve(env.store, alert_id, "", env.world.now_after(11), env.routes())
    operator.resolve(env.store, alert_id, "frank", env.world.now_after(11), env.routes(), note="recalibrated")
    env.deliver(11, hours=1)
    last = env.messages("north")[-1]["payload"]
    assert last["title"].startswith("[smmdn] RESOLVED") and "frank" in last["message"] and "recalibrated" in last[
        "message"]
    with pytest.raises(Exception, match="already resolved"):
        operator.ack(env.store, alert_id, "frank", env.world.now_after(11))
