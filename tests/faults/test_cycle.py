"""One world on PostgreSQL + TimescaleDB, one module: a daily cycle over a poisoned landing directory after
a first attempt with the database down; then, on later days of the same world, a rejected file fixed and
dropped again, a corrupted and a malicious champion checkpoint, a broken forecast API, and the alert
endpoint down then up.

Every bad file is for site DEMO01 and owns one day of its own (``tests/faults/landing_files.py``), so the
store's rows of that day are that file's rows. Each case asserts: nothing lost (every record stored or
quarantined, or the file in ``landing/rejected`` with a reason), nothing duplicated, and the cycle issuing
forecasts for every site. Related cases elsewhere, not repeated: a non-finite cell and a non-TOA5 file in
a cycle (tests/flows/test_bad_landing_file.py; the non-finite file is here only for the record-by-record
accounting), a value the server refuses, an outage of write rights mid-ingest, a down database for ingest
alone, retry of rejected files (tests/integration/test_ingest_isolation.py), one truncated champion
(tests/flows/test_model_fallback.py).
"""

from __future__ import annotations

import os
import pickle
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.faults import landing_files
from tests.faults.ledger import assert_no_duplicates, landing_state, quarantine_of_day, stored_of_day
from tests.flows.conftest import HISTORY, START, Ops, run_daily
from tests.helpers.http_server import Reply, serve

pytestmark = [pytest.mark.prefect, pytest.mark.postgres]

CELLS = len(landing_files.COLUMNS)  # mapped columns per record
SOURCE_DAY = START + pd.Timedelta(days=9)  # the simulated day the bad files are cut from (no NAN cells)


@dataclass
class World:
    ops: Ops
    landing: Path
    cases: dict[str, landing_files.Case]
    before: dict[str, Any]  # landing before anything ran
    down_error: BaseException  # what the attempt with the database down raised
    after_down: dict[str, Any]  # landing after that attempt
    summary: dict[str, Any]  # the cycle's summary once the database is back


def _dead_url() -> str:
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"postgresql+psycopg://smmdn:pw@127.0.0.1:{port}/smmdn?connect_timeout=2"


@pytest.fixture(scope="module")
def world(prefect_harness, network, pg_cluster, pg_template, tmp_path_factory) -> Iterator[World]:  # type: ignore[no-untyped-def]
    """The flow tests' settings (tests/flows/conftest.py ``ops``), once for the whole module."""
    from smmdn.config import get_settings
    from smmdn.demo.feeds import WeatherServer, registry_yaml

    home = tmp_path_factory.mktemp("faults-cycle")
    name = f"faults_cycle_{os.getpid()}"
    url = pg_cluster.create_database(name, template=pg_template)
    weather = WeatherServer(network.sites, network.weather, seed=3).start()
    (home / "registry.yaml").write_text(registry_yaml(network.sites))
    env = {"SMMDN_HOME": str(home), "SMMDN_DATABASE_URL": url, "SMMDN_REGISTRY_FILE": str(home / "registry.yaml"),
           "SMMDN_HOLDOUT_DAYS": "8", "SMMDN_FORECAST_HORIZON": "3", "SMMDN_HTTP_RETRIES": "1",
           "SMMDN_HTTP_BACKOFF_S": "0.001", "SMMDN_FULL_RETRAIN_WEEKDAY": "6", **weather.settings_env()}
    try:
        with pytest.MonkeyPatch.context() as mp:
            for k, v in env.items():
                mp.setenv(k, v)
            get_settings.cache_clear()
            ops = Ops(home, weather, network, url)
            ops.drop_day(START, days=HISTORY)
            ops.drop_day(ops.day(HISTORY))
            landing = get_settings().path("landing")
            cases = landing_files.build(landing, network.readings, SOURCE_DAY)
            before = landing_state(landing)

            mp.setenv("SMMDN_DATABASE_URL", _dead_url())
            get_settings.cache_clear()
            with pytest.raises(Exception) as down:  # which error: asserted by the test below
                run_daily(ops, HISTORY)
            after_down = landing_state(landing)

            mp.setenv("SMMDN_DATABASE_URL", url)
            get_settings.cache_clear()
            summary = run_daily(ops, HISTORY)
            yield World(ops, landing, cases, before, down.value, after_down, summary)
    finally:
        weather.stop()
        get_settings.cache_clear()
        pg_cluster.drop_database(name)


def test_the_database_down_at_start_fails_clearly_and_touches_no_file(world: World) -> None:
    """The flow run itself fails with the clear message (not the driver's raw ``OperationalError``, which
    only the CLI translated), and ``smmdn run`` reports it as the environment's failure."""
    from smmdn.commands import exits
    from smmdn.errors import SmmdnError

    assert isinstance(world.down_error, SmmdnError), repr(world.down_error)
    assert "start the database" in str(world.down_error), world.down_error
    assert "pw@" not in str(world.down_error)  # the password is masked
    error = exits.as_smmdn_error(world.down_error)
    assert error is not None and exits.exit_code(error) == exits.ENVIRONMENT, repr(world.down_error)
    assert world.after_down == world.before  # nothing moved, nothing rejected
    assert not world.before["processed"] and not world.before["rejected"]


def test_the_cycle_issues_for_every_site(world: World) -> None:
    fc = world.summary["forecast"]
    assert fc["status"] == "complete" and fc["series"] == 2 * 3, fc
    store = world.ops.store()
    latest = store.read_forecasts(issue_time=fc["issue_time"]) if "issue_time" in fc else store.latest_forecasts()
    assert set(latest["site"]) == {"DEMO01", "DEMO02"}
    assert not world.summary["ingest"]["failed"], world.summary["ingest"]


def test_nothing_is_left_waiting_and_every_rejection_has_its_reason(world: World) -> None:
    state = landing_state(world.landing)
    assert state["waiting"] == []
    assert sorted(state["processed"] + state["rejected"]) == sorted(world.before["waiting"])
    assert set(state["reasons"]) == set(state["rejected"])
    assert all(text.strip() for text in state["reasons"].values())


def test_nothing_is_duplicated(world: World) -> None:
    assert_no_duplicates(world.ops.store())


# key: (where the file ends, records quarantined whole, cells quarantined, cells stored) — from the file's
# construction in landing_files.build: 24 hourly records of 9 mapped columns
EXPECTED: dict[str, tuple[str, int, int, int | None]] = {
    "nonfinite": ("processed", 3, 0, 21 * CELLS),  # three records with inf / 1e999 / -Infinity
    "truncated": ("processed", 1, 0, None),  # the cut record, kept raw; all complete records stored (None:
    # from the file's length)
    "headeronly": ("processed", 0, 0, 0),
    "wrongcolumns": ("rejected", 0, 0, 0),
    "percent": ("rejected", 0, 0, 0),
    "nonutf8": ("processed", 1, 0, 23 * CELLS),  # the record with the 0x80 byte; the Latin-1 header is read
    "dupshuffled": ("processed", 0, 6 * CELLS, 24 * CELLS),  # each reading once, the repeats quarantined
    "future": ("processed", 0, 24 * CELLS, 0),
    "twice": ("processed", 0, 0, 24 * CELLS),
    "twice-renamed": ("processed", 0, 0, 24 * CELLS),  # same bytes: skipped, not stored twice
}


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_every_record_of_a_bad_file_is_stored_or_quarantined_or_the_file_rejected(world: World, key: str) -> None:
    case = world.cases[key]
    where, whole, cells, stored = EXPECTED[key]
    if stored is None:
        stored = (case.data_lines - whole) * CELLS
    store = world.ops.store()
    state = landing_state(world.landing)
    assert case.name in state[where], state
    got = (quarantine_of_day(store, landing_files.SITE, case.day), stored_of_day(store, landing_files.SITE, case.day))
    assert got == ((cells, whole), stored), got
    n_stored, (n_cells, n_whole) = got[1], got[0]
    if where == "processed":  # nothing lost: every record of the file accounted for
        assert n_stored + n_cells + n_whole * CELLS == case.data_lines * CELLS
    else:  # nothing partial: the whole file waits in rejected with its reason
        assert state["reasons"][case.name].strip()


def test_a_rejected_file_fixed_and_dropped_again_is_stored_once(world: World) -> None:
    from smmdn.cli import main

    case = world.cases["wrongcolumns"]
    store = world.ops.store()
    rejected = world.landing / "rejected" / case.name
    fixed = world.landing / case.name.replace(".dat", "-fixed.dat")
    fixed.write_bytes(rejected.read_bytes().replace(b'"SWC_', b'"VWC_'))
    landing_files.settle(fixed)
    counts = assert_no_duplicates(store)
    assert main(["ingest", "sensors", "--site", landing_files.SITE]) == 0
    assert stored_of_day(store, landing_files.SITE, case.day) == case.data_lines * CELLS
    assert main(["ingest", "sensors", "--site", landing_files.SITE]) == 0  # and a rerun adds nothing
    after = assert_no_duplicates(store)
    assert after["observations"] == counts["observations"] + case.data_lines * CELLS
    assert (world.landing / "processed" / fixed.name).exists()


class _Evil:
    """A pickle that would create ``marker`` when unpickled (what a crafted checkpoint does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_a_malicious_champion_is_refused_not_run_and_the_day_falls_back(world: World) -> None:
    """Two bad champions in a row on the model storage: a truncated weights.pt (promoted first, now retired)
    and a pickle with ``__reduce__`` (the champion). The pickle is never executed; the day forecasts with
    the last version that loads, past both (one bad champion alone: tests/flows/test_model_fallback.py)."""
    from smmdn.config import get_settings
    from smmdn.modelfiles import local_path, model_uri

    store = world.ops.store()
    settings = get_settings()
    first = store.champion()["version"]
    good = local_path(store.champion()["artifact_uri"])
    marker = world.ops.home / "pwned"
    for bad in ("full-truncated-copy", "full-malicious-copy"):
        target = local_path(model_uri(settings, bad))
        shutil.copytree(good, target)
        weights = target / "weights.pt"
        if bad == "full-truncated-copy":
            weights.write_bytes(weights.read_bytes()[:200])
        else:
            with open(weights, "wb") as fh:
                pickle.dump({"lstm.weight_ih_l0": _Evil(marker)}, fh)
        store.register_model_version(bad, kind="full", artifact_uri=model_uri(settings, bad), status="challenger")
        store.promote(bad, note="test: a bad checkpoint")

    summary = run_daily(world.ops, HISTORY + 1, skip_training=True)
    fc = summary["forecast"]
    assert not marker.exists()  # refused, not executed
    assert fc["status"] == "complete" and fc["series"] == 2 * 3, fc
    assert fc["model_version"] == first and fc["fallback_from"] == "full-malicious-copy", fc
    assert "refusing to load" in fc["fallback_error"], fc
    assert "cannot be loaded" in store.forecast_runs().iloc[-1]["message"]
    assert_no_duplicates(store)

@contextmanager
def _settings(**env: str) -> Iterator[None]:
    """Override ``SMMDN_*`` settings for one step of the module's world, then restore them."""
    from smmdn.config import get_settings

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()


def test_a_broken_forecast_api_still_issues_for_every_site_flagged_stale(world: World) -> None:
    """The forecast API answers an HTML error page with status 200, the historical-forecast API cut-off JSON:
    both forcing batches fail, nothing of theirs is written, and the day issues for every site with
    yesterday's forcing, flagged stale (tests/flows/test_daily.py: the same for a plain 503)."""
    store = world.ops.store()
    before = assert_no_duplicates(store)
    forcing_before = store.count("forcing")
    with serve() as upstream:
        upstream.route("/v1/forecast", Reply("<!DOCTYPE html><html><body>Service temporarily unavailable</body>"
                                             "</html>", headers={"Content-Type": "text/html"}))
        upstream.route("/historical-forecast/v1/forecast",
                       Reply('{"latitude": 35.8, "daily": {"time": ["2024-04-08",', headers={"Content-Type":
                                                                                             "application/json"}))
        with _settings(SMMDN_OPEN_METEO_URL=f"{upstream.url}/v1/forecast",
                       SMMDN_OPEN_METEO_HISTORICAL_FORECAST_URL=f"{upstream.url}/historical-forecast/v1/forecast"):
            summary = run_daily(world.ops, HISTORY + 2, skip_training=True)
        assert upstream.hits("/v1/forecast") >= 1 and upstream.hits("/historical-forecast/v1/forecast") >= 1
    failed = [r for r in summary["ingest"]["failed"] if "forcing" in r["source"]]
    assert len(failed) == 2, summary["ingest"]
    fc = summary["forecast"]
    assert fc["status"] == "complete" and fc["series"] == 2 * 3 and fc["stale_forcing"] is True, fc
    assert store.count("forcing") == forcing_before  # the archive's rows only; nothing of the bad answers
    after = assert_no_duplicates(store)
    assert after["forecast_runs"] == before["forecast_runs"] + 1


def test_the_alert_endpoint_down_then_up_delivers_each_message_once(world: World, capsys) -> None:  # type: ignore[no-untyped-def]
    """A day whose messages (the failing sensor's alerts, the operators' ones) meet a closed port: they stay
    queued with their error; the receiver comes up on that port and the next delivery sends each once, the
    one after sends nothing ("messages" = what the local receiver got). The backoff schedule itself is
    tests/integration/test_alerts.py."""
    from smmdn.cli import main
    from smmdn.demo.receiver import AlertReceiver
    from smmdn.store import alerts as db

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free again once closed: nobody listens there yet
    url = f"json://127.0.0.1:{port}/alerts"
    store = world.ops.store()
    with _settings(SMMDN_APPRISE_URLS=url):
        summary = run_daily(world.ops, HISTORY + 4, skip_training=True)
        assert summary["forecast"]["status"] == "complete" and summary["forecast"]["series"] == 2 * 3
        outbox = db.read_outbox(store)
        waiting = outbox[outbox["status"] == "pending"]
        assert len(waiting) >= 1, outbox[["event", "status", "last_error"]]  # the seed's sensor fault, at least
        # today's met the closed port; earlier days' had no destination at all (no URL set before): all wait
        assert waiting["last_error"].str.contains("Connection error").any(), waiting["last_error"].tolist()
        receiver = AlertReceiver(world.ops.home / "received.jsonl", port=port).start()
        try:
            # the backoff runs on the delivery's wall clock (the day's ``now`` is simulated): a day past it
            due = max(pd.Timestamp.now(tz="UTC"), pd.Timestamp(outbox["next_attempt_at"].max()))
            later = due + pd.Timedelta(days=1)
            assert main(["alerts", "deliver", "--now", later.isoformat()]) == 0
            keys = [m["key"] for m in receiver.messages()]
            # every waiting message once (a later clock may also queue reminders: new keys, sent once too)
            assert all(keys.count(k) == 1 for k in waiting["idempotency_key"]), (keys, capsys.readouterr().out)
            assert len(keys) == len(set(keys))
            assert main(["alerts", "deliver", "--now", later.isoformat()]) == 0
            assert [m["key"] for m in receiver.messages()] == keys  # the same clock again: nothing sent twice
        finally:
            receiver.stop()
    after = db.read_outbox(store)
    assert set(after.loc[after["id"].isin(waiting["id"]), "status"]) == {"sent"}
    assert_no_duplicates(store)
