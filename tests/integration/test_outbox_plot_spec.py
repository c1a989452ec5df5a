"""Revision 0006 (plots drawn at delivery) on both backends: an upgrade from 0005 with messages and
quarantined rows pending loses nothing, the old rows go out with the PNG they were queued with, and a row
that carries only a plot spec gets its plot drawn by the deliverer; and back down again."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from smmdn.alerts.deliver import deliver_outbox
from smmdn.config import Settings
from smmdn.demo.receiver import AlertReceiver
from smmdn.store import Store, migrate
from smmdn.store import alerts as db
from smmdn.store import tables as T

NOW = datetime(2024, 5, 1, 6, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n" + b"queued-before-the-upgrade"


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    return request.getfixturevalue("pg_empty_url")


def _outbox_row(key: str, **extra: object) -> dict:
    return dict(idempotency_key=key, event="opened", team="default", target="default#0", title="[smmdn] NEW: x",
                body="body", status="pending", attempts=0, next_attempt_at=NOW, created_at=NOW, **extra)


def test_upgrade_keeps_pending_messages_and_quarantine_and_spec_rows_get_a_drawn_plot(
        empty_url: str, tmp_path: Path) -> None:
    store = Store(empty_url)
    migrate.upgrade(store.engine, "0005")
    with store.engine.begin() as conn:  # a database at 0005 with a message and a quarantined row pending
        conn.execute(sa.text(
            "INSERT INTO alert_outbox (idempotency_key, event, team, target, title, body, attachment, "
            "attachment_name, status, attempts, next_attempt_at, created_at) VALUES ('old', 'opened', 'default', "
            "'default#0', 'old title', 'old body', :png, 'alert-1-opened.png', 'pending', 0, :t, :t)"),
            {"png": PNG, "t": NOW})
        conn.execute(T.quarantine.insert().values(table_name="observations", source="toa5", site="S1", time=NOW,
                                                  row={"vwc": 1.7}, reason="vwc above 0.6", quarantined_at=NOW))
    assert migrate.upgrade(store.engine) == ("0005", migrate.head_revision())
    pending = db.read_outbox(store, status=["pending"], with_attachment=True)
    assert list(pending["idempotency_key"]) == ["old"] and bytes(pending.iloc[0]["attachment"]) == PNG
    assert pending.iloc[0]["attachment_spec"] is None or pd.isna(pending.iloc[0]["attachment_spec"])
    assert len(store.list_quarantine()) == 1

    store.upsert_sites(pd.DataFrame({"site": ["S1"], "latitude": [40.0], "longitude": [-100.0],
                                     "elevation_m": [500.0]}))
    spec = {"site": "S1", "depth_cm": 10.0, "sensor": "a", "day": "2024-04-30T00:00:00+00:00", "days": 7,
            "since": None, "title": "NEW: likely sensor fault — S1 10 cm a"}
    db.enqueue(store, [_outbox_row("new", attachment_spec=spec, attachment_name="alert-2-opened.png")])
    rx = AlertReceiver(tmp_path / "rx.jsonl").start()
    try:
        cfg = Settings(_env_file=None, home=tmp_path, apprise_urls=rx.url)
        out = deliver_outbox(store, cfg, NOW)
        assert (out.sent, out.failed, out.retrying) == (2, 0, 0)
        got = {m["key"]: m["payload"]["attachments"] for m in rx.messages()}
    finally:
        rx.stop()
    assert base64.b64decode(got["old"][0]["base64"]) == PNG  # the old row went out as queued
    assert base64.b64decode(got["new"][0]["base64"]).startswith(b"\x89PNG")  # drawn at send time
    migrate.downgrade(store.engine, "0005")
    with store.engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("alert_outbox")}
        assert "attachment_spec" not in columns
        assert conn.execute(sa.text("SELECT count(*) FROM alert_outbox")).scalar() == 2
    store.dispose()


def test_plots_are_drawn_once_per_spec_and_only_for_messages_that_go_out(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from smmdn.alerts import plots

    drawn: list[dict] = []
    real = plots.spec_png
    monkeypatch.setattr(plots, "spec_png", lambda s, spec: drawn.append(spec) or real(s, spec))  # a spy
    alert = dict(dedup_key="k", kind="sensor_fault", site="S1", depth_cm=10.0, sensor="a", window_start=NOW,
                 window_end=NOW, status="acked", acked_by="al", details={}, created_at=NOW, revision=2)
    acked = db.insert_alert(store, alert)
    spec = {"site": "S1", "depth_cm": 10.0, "sensor": "a", "day": "2024-04-30T00:00:00+00:00", "days": 7,
            "since": None, "title": "x"}
    db.enqueue(store, [
        _outbox_row("reminder", alert_id=acked, attachment_spec={**spec, "title": "muted"}) | {"event": "reminder"},
        _outbox_row("one#0", attachment_spec=spec), _outbox_row("one#1", attachment_spec=spec)])
    rx = AlertReceiver(tmp_path / "rx.jsonl").start()
    try:
        out = deliver_outbox(store, Settings(_env_file=None, home=tmp_path, apprise_urls=rx.url), NOW,
                             plan=False)  # only the rows queued here (planning: tests/integration/test_incidents.py)
    finally:
        rx.stop()
    assert (out.sent, out.suppressed) == (2, 1)
    assert [d["title"] for d in drawn] == ["x"]  # the acked reminder drew nothing; two targets, one drawing
