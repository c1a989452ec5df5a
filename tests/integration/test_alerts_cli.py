"""``smmdn alerts …`` end to end on the embedded SQLite store, delivering to a json:// receiver on 127.0.0.1:
list, show, ack (named), silence / silences / unsilence, maintenance, resolve, replace (sensor), outbox,
retry, test, routes, detect / deliver / verify; bad input exits 2 with the fix."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from smmdn.cli import main
from smmdn.config import get_settings
from smmdn.demo.receiver import AlertReceiver
from smmdn.store import Store
from smmdn.store import alerts as db
from tests.helpers import alert_world as W


@pytest.fixture
def cli(tmp_path, monkeypatch) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    store = Store(url)
    store.init()
    world = W.build(store, tags={"S1": ["team:north"], "S2": ["team:south"]})
    W.write_forecasts(world, range(20))

    def bend(site, depth, sensor, day, values):  # type: ignore[no-untyped-def]
        return values + 0.08 if site == "S1" and sensor == "c" and day >= world.day(9) else values

    W.observe(world, range(13), bend=bend)
    rx = AlertReceiver(tmp_path / "rx.jsonl").start()
    routes = W.routes_file(tmp_path / "routes.yaml", rx, {"north": ["team:north"], "south": ["team:south"]},
                           notify={"repeat_interval": "30d"})  # reminders: tests/integration/test_incidents.py
    for key, value in {"SMMDN_DATABASE_URL": url, "SMMDN_HOME": str(tmp_path), "SMMDN_ALERT_ROUTES_FILE": str(routes),
                       "SMMDN_ALERT_COOLDOWN_HOURS": "720", "SMMDN_DRIFT_MIN_PAIRS": "100000"}.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield {"store": store, "world": world, "rx": rx, "url": url}
    rx.stop()
    get_settings.cache_clear()


def run(capsys, *args: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    rc = main(["alerts", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_operator_workflow(cli, capsys) -> None:  # type: ignore[no-untyped-def]
    world, rx, store = cli["world"], cli["rx"], cli["store"]
    rc, out, _ = run(capsys, "detect", "--now", world.now_after(12).isoformat())
    assert rc == 0 and '"opened": 1' in out
    rc, out, _ = run(capsys, "deliver", "--now", world.now_after(12).isoformat())
    assert rc == 0 and '"sent": 1' in out and len(rx.messages()) == 1
    rc, out, _ = run(capsys, "list")
    assert rc == 0 and "1 active alert(s)" in out and "sensor_fault" in out and "north" in out
    alert_id = int(db.read_alerts(store).iloc[0]["id"])
    rc, out, _ = run(capsys, "show", str(alert_id))
    assert rc == 0 and "opened" in out and "sent" in out and "Where: site S1" in out
    rc, _, err = run(capsys, "ack", str(alert_id), "--by", " ")
    assert rc == 2 and "fix: pass --by <your name>" in err
    rc, out, _ = run(capsys, "ack", str(alert_id), "--by", "Alice")
    assert rc == 0 and "acknowledged by Alice" in out
    rc, out, _ = run(capsys, "silence", "S2", "--for", "7d", "--by", "bob", "--reason", "fence down")
    assert rc == 0 and "silence #1" in out
    rc, _, err = run(capsys, "silence", "S2", "--for", "soon", "--by", "bob")
    assert rc == 2 and "duration" in err and "7d" in err
    rc, out, _ = run(capsys, "maintenance", "S2", "--start", "2099-01-01", "--end", "2099-01-03", "--by", "carol")
    assert rc == 0 and "maintenance #2" in out
    rc, out, _ = run(capsys, "silences")
    assert rc == 0 and "2 silence(s)" in out and "fence down" in out
    rc, out, _ = run(capsys, "unsilence", "1")
    assert rc == 0 and run(capsys, "unsilence", "1")[0] == 2
    rc, out, _ = run(capsys, "resolve", str(alert_id), "--by", "frank", "--note", "probe reseated")
    assert rc == 0 and "resolved by frank" in out and "messages sent 1" in out
    assert "probe reseated" in rx.messages()[-1]["payload"]["message"]
    rc, out, _ = run(capsys, "list", "--all")
    assert "1 alert(s)" in out and "resolved" in out
    rc, out, _ = run(capsys, "replace", "S1", "10", "c", "--new", "c2", "--at", "2024-05-14T09:00",
                     "--by", "dave")
    assert rc == 0 and "sensor c ends 2024-05-14T09:00:00+00:00, c2 starts" in out
    rc, out, _ = run(capsys, "test", "south", "--by", "erin")
    assert rc == 0 and "sent 1" in out and rx.messages()[-1]["path"] == "/south"
    rc, out, _ = run(capsys, "routes", "--site", "S1", "--site", "S9")
    assert rc == 0 and "site S1: north" in out and "site S9: default" in out and "json://…" in out
    rc, out, _ = run(capsys, "verify", "--now", world.now_after(12).isoformat())
    assert rc == 0 and '"scored"' in out


def test_failed_messages_are_listed_and_retried(cli, capsys) -> None:  # type: ignore[no-untyped-def]
    world, rx = cli["world"], cli["rx"]
    rx.down = True
    run(capsys, "detect", "--now", world.now_after(12).isoformat())
    for hours in range(0, 13):
        run(capsys, "deliver", "--now", (world.now_after(12) + pd.Timedelta(hours=hours * 3)).isoformat())
    rc, out, _ = run(capsys, "outbox")
    assert rc == 0 and "failed" in out and "503" in out and "attempts" in out.splitlines()[1]
    rc, out, _ = run(capsys, "outbox", "--json")
    assert rc == 0 and [r["attempts"] for r in json.loads(out)] == [12]
    rx.down = False
    outbox_id = int(db.read_outbox(cli["store"]).iloc[0]["id"])
    rc, out, _ = run(capsys, "retry", str(outbox_id))
    assert rc == 0 and "1 message(s) requeued; sent 1" in out and len(rx.messages()) == 1


def test_unknown_things_exit_2_with_the_fix(cli, capsys) -> None:  # type: ignore[no-untyped-def]
    rc, _, err = run(capsys, "ack", "999", "--by", "x")
    assert rc == 2 and "no alert 999" in err and "smmdn alerts list" in err
    rc, _, err = run(capsys, "silence", "NOWHERE", "--for", "1d", "--by", "x")
    assert rc == 2 and "unknown site" in err
    rc, _, err = run(capsys, "test", "nobody")
    assert rc == 2 and "unknown team" in err
    rc, _, err = run(capsys, "maintenance", "S1", "--start", "2024-05-03", "--end", "2024-05-01", "--by", "x")
    assert rc == 2 and "ends before it starts" in err


def test_incidents_are_listed_acknowledged_and_silenced_as_a_whole(cli, capsys) -> None:  # type: ignore[no-untyped-def]
    from smmdn.store import incidents as idb

    world, store = cli["world"], cli["store"]
    run(capsys, "detect", "--now", world.now_after(12).isoformat())
    run(capsys, "deliver", "--now", world.now_after(12).isoformat())
    alert_id = int(db.read_alerts(store).iloc[0]["id"])
    sibling = db.insert_alert(store, dict(dedup_key="sib", kind="deviation", site="S1", depth_cm=10.0, sensor="a",
                                          window_start=world.day(11), window_end=world.day(12), status="open",
                                          details={}, created_at=world.now_after(12), revision=1))
    run(capsys, "deliver", "--now", (world.now_after(12) + pd.Timedelta(hours=1)).isoformat())
    incident = int(idb.read_incidents(store).iloc[0]["id"])
    rc, out, _ = run(capsys, "incidents")
    assert rc == 0 and "1 open incident(s)" in out and f"#{incident} open" in out and "root alert" in out
    assert f"alert #{sibling} deviation" in out and f"inhibited by #{alert_id} (sensor-fault-siblings)" in out
    rc, out, _ = run(capsys, "show", str(sibling))
    assert rc == 0 and f"incident        {incident}" in out and f"by alert #{alert_id}: sensor-fault-siblings" in out
    rc, out, _ = run(capsys, "incidents", str(incident), "--json")
    assert rc == 0 and {m["id"] for m in json.loads(out)["members"]} == {alert_id, sibling}
    rc, _, err = run(capsys, "ack", "--by", "x")
    assert rc == 2 and "alert id or --incident" in err
    rc, out, _ = run(capsys, "ack", "--incident", str(incident), "--by", "Alice")
    assert rc == 0 and f"incident {incident} acknowledged by Alice" in out
    assert set(db.read_alerts(store, status=["acked"])["id"]) == {alert_id, sibling}
    rc, out, _ = run(capsys, "silence", "--incident", str(incident), "--for", "2d", "--by", "bob")
    assert rc == 0 and "silence(s) [1, 2]" in out
    rc, _, err = run(capsys, "incidents", "999")
    assert rc == 2 and "no incident 999" in err
