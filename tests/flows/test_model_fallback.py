"""A champion whose artifact cannot be loaded: the day forecasts (and detects) with the previous good version
and the operators get a ``model_fallback`` alert, resolved once the champion loads again."""

from __future__ import annotations

import shutil

import pytest

from smmdn.alerts.routing import OPERATOR_KINDS
from tests.flows.conftest import HISTORY, Ops, run_daily

pytestmark = [pytest.mark.prefect, pytest.mark.postgres]


def test_an_unloadable_champion_falls_back_and_alerts_the_operators(ops: Ops) -> None:
    from smmdn.config import get_settings
    from smmdn.modelfiles import local_path, model_uri
    from smmdn.store import alerts as db

    first = run_daily(ops, HISTORY)["training"]["version"]
    store = ops.store()
    settings = get_settings()
    # a second champion (a copy of the first, promoted): the first becomes the previous good version
    copy = "full-copy-of-first"
    src = local_path(store.champion()["artifact_uri"])
    assert src.stat().st_mode & 0o777 == 0o700  # state is owner-only: weights and scalers too
    assert {f.name: f.stat().st_mode & 0o777 for f in src.iterdir()} == {f.name: 0o600 for f in src.iterdir()}
    shutil.copytree(src, local_path(model_uri(settings, copy)))
    store.register_model_version(copy, kind="full", artifact_uri=model_uri(settings, copy), status="challenger")
    store.promote(copy, note="test: second champion")
    weights = local_path(model_uri(settings, copy)) / "weights.pt"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 3])  # a truncated copy on the shared storage

    summary = run_daily(ops, HISTORY + 1, skip_training=True)
    fc = summary["forecast"]
    assert fc["status"] == "complete" and fc["model_version"] == first and fc["fallback_from"] == copy, fc
    assert fc["rows"] > 0 and "cannot be loaded" in store.forecast_runs().iloc[-1]["message"]
    assert store.champion()["version"] == copy  # statuses untouched: tomorrow tries the champion again
    assert summary["alerts"] is not None  # detection ran on the fallback's forecasts
    [alert] = db.read_alerts(store, status=db.ACTIVE, kinds=["model_fallback"]).to_dict("records")
    assert alert["site"] == "*" and alert["details"]["serving"] == first and copy in alert["details"]["champion"]
    assert "model_fallback" in OPERATOR_KINDS
    from smmdn.alerts.incidents import incident_of

    box = db.read_outbox(store)
    messages = box.loc[box["incident_id"] == incident_of(store, int(alert["id"]))]  # its incident's messages
    assert not messages.empty and set(messages["event"]) == {"opened"}  # queued for the operators (delivered too)

    weights.write_bytes(good)  # storage repaired
    again = run_daily(ops, HISTORY + 2, skip_training=True)["forecast"]
    assert again["model_version"] == copy and again["fallback_from"] is None
    assert db.read_alerts(store, status=db.ACTIVE, kinds=["model_fallback"]).empty
