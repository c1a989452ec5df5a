"""Open-Meteo misbehaving, served by a real HTTP server on 127.0.0.1, through ``smmdn ingest forcing`` on
PostgreSQL + TimescaleDB: HTTP 500, malformed JSON, an HTML page instead of JSON, a server that never
answers and one that trickles its body a byte at a time. Each: a non-zero exit naming the URL, nothing
written, then the upstream recovers and the rerun stores every value once. The cycle going on with a
broken forecast API is in tests/faults/test_cycle.py; USCRN/SensorThings 5xx, truncated and malformed
payloads at the library level in tests/integration/test_ingest_sources.py, the deadline in
tests/integration/test_http_deadline.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pandas as pd
import pytest

from tests.flows.conftest import START
from tests.helpers.http_server import Reply, serve

pytestmark = pytest.mark.postgres

TODAY = START + pd.Timedelta(days=20)
JSON = {"Content-Type": "application/json"}

MODES: dict[str, Callable[[bytes], Reply]] = {
    "http-500": lambda good: Reply("internal server error", status=500),
    "malformed-json": lambda good: Reply(good[: len(good) // 2] + b",}", headers=JSON),
    "html-not-json": lambda good: Reply("<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>",
                                        headers={"Content-Type": "text/html"}),
    "never-answers": lambda good: Reply(good, headers=JSON, hang_s=60),
    "trickles": lambda good: Reply(good, headers=JSON, trickle_s=0.5),
}
# the exit-code table (smmdn.commands.exits): an upstream that fails, hangs or answers 200 with a body that
# is not JSON (a proxy's HTML page, a cut-off document) is the environment (3), asked again within the run
# first (test below). Either way the watermark stays and the next run asks again.
EXIT = {"http-500": 3, "malformed-json": 3, "html-not-json": 3, "never-answers": 3, "trickles": 3}


@pytest.fixture
def forcing_env(network, pg_url, tmp_path, monkeypatch) -> Iterator[dict]:  # type: ignore[no-untyped-def]
    """Settings for the simulated sites on a fresh TimescaleDB; short HTTP limits so faults end in seconds."""
    from smmdn.cli import main
    from smmdn.config import get_settings
    from smmdn.demo.feeds import WeatherServer, registry_yaml

    weather = WeatherServer(network.sites, network.weather, seed=3).start()
    weather.today = TODAY
    (tmp_path / "registry.yaml").write_text(registry_yaml(network.sites))
    env = {"SMMDN_HOME": str(tmp_path), "SMMDN_DATABASE_URL": pg_url, "SMMDN_REGISTRY_FILE": str(tmp_path /
           "registry.yaml"), "SMMDN_HTTP_RETRIES": "1", "SMMDN_HTTP_BACKOFF_S": "0.001",
           "SMMDN_HTTP_CONNECT_TIMEOUT_S": "1", "SMMDN_HTTP_READ_TIMEOUT_S": "1", "SMMDN_HTTP_DEADLINE_S": "2"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    assert main(["sites", "load", str(tmp_path / "registry.yaml")]) == 0
    try:
        yield {"weather": weather, "monkeypatch": monkeypatch}
    finally:
        weather.stop()
        get_settings.cache_clear()


def _point_at(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    from smmdn.config import get_settings

    monkeypatch.setenv("SMMDN_OPEN_METEO_URL", url)
    get_settings.cache_clear()


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_broken_forecast_api_writes_nothing_and_the_recovered_rerun_stores_once(forcing_env, pg_store, capsys,
                                                                                 mode: str) -> None:  # type: ignore[no-untyped-def]
    from smmdn.cli import main

    weather, monkeypatch = forcing_env["weather"], forcing_env["monkeypatch"]
    lat, lon = zip(*weather.by_coord, strict=True)
    status, payload = weather.answer("/v1/forecast", {"latitude": [",".join(map(str, lat))],
                                                      "longitude": [",".join(map(str, lon))],
                                                      "daily": ["precipitation_sum,temperature_2m_mean"]})
    good = json.dumps(payload).encode()
    assert status == 200 and len(good) > 200
    with serve() as upstream:
        upstream.route("/v1/forecast", MODES[mode](good))
        _point_at(monkeypatch, f"{upstream.url}/v1/forecast")
        capsys.readouterr()
        code = main(["ingest", "forcing"])
        out = capsys.readouterr()
        assert upstream.hits("/v1/forecast") >= 1
    text = out.out + out.err
    assert code == EXIT[mode], text
    assert f"{upstream.url}/v1/forecast" in text or "127.0.0.1" in text, text  # names the upstream
    assert pg_store.count("forcing") == 0  # nothing partial
    assert not pg_store.read_forcing().shape[0]

    _point_at(monkeypatch, weather.settings_env()["SMMDN_OPEN_METEO_URL"])
    assert main(["ingest", "forcing"]) == 0
    stored = pg_store.count("forcing")
    assert stored > 0
    assert main(["ingest", "forcing"]) == 0  # the same answer again: nothing added, nothing twice
    assert pg_store.count("forcing") == stored
    forcing = pg_store.read_forcing()
    assert not forcing.duplicated(["time", "site"]).any()


@pytest.mark.parametrize("mode", ["malformed-json", "html-not-json"])
def test_one_answer_that_is_not_json_is_asked_again_within_the_run(forcing_env, pg_store, capsys, caplog,
                                                                   mode: str) -> None:  # type: ignore[no-untyped-def]
    """HTTP 200 with a broken body once, then the good answer: the run asks again (``SMMDN_HTTP_RETRIES``=1),
    stores every value once and exits 0; the first answer is named in the log, nothing of it is stored."""
    from smmdn.cli import main

    weather, monkeypatch = forcing_env["weather"], forcing_env["monkeypatch"]
    lat, lon = zip(*weather.by_coord, strict=True)
    status, payload = weather.answer("/v1/forecast", {"latitude": [",".join(map(str, lat))],
                                                      "longitude": [",".join(map(str, lon))],
                                                      "daily": ["precipitation_sum,temperature_2m_mean"]})
    good = json.dumps(payload).encode()
    assert status == 200
    with serve() as upstream:
        upstream.route("/v1/forecast", MODES[mode](good), Reply(good, headers=JSON))
        _point_at(monkeypatch, f"{upstream.url}/v1/forecast")
        capsys.readouterr()
        code = main(["ingest", "forcing"])
        out = capsys.readouterr()
        hits = upstream.hits("/v1/forecast")
        stored = pg_store.count("forcing")
        assert main(["ingest", "forcing"]) == 0  # the same good answer again: nothing added
        again = pg_store.count("forcing")
    assert code == 0, out.out + out.err
    assert hits == 2  # the broken answer, then the good one
    said = [r.getMessage() for r in caplog.records if r.name == "smmdn.sources.http"]
    assert len(said) == 1 and "not JSON" in said[0] and "asking again" in said[0], said
    assert stored > 0 and again == stored
    assert not pg_store.read_forcing().duplicated(["time", "site"]).any()


@pytest.mark.heavy
@pytest.mark.prefect
@pytest.mark.parametrize("mode", sorted(MODES))
def test_the_cycle_issues_for_every_site_whatever_the_forecast_api_does(ops, monkeypatch, mode: str) -> None:  # type: ignore[no-untyped-def]
    """Each mode for the forecast API during a day after a good one: the day still issues for every
    series, flagged stale, and nothing of the bad answer is stored."""
    from smmdn.config import get_settings
    from tests.faults.ledger import assert_no_duplicates
    from tests.flows.conftest import HISTORY, run_daily

    run_daily(ops, HISTORY)
    store = ops.store()
    forcing = store.count("forcing")
    with serve() as upstream:
        upstream.route("/v1/forecast", MODES[mode](b'{"latitude": 0, "daily": {"time": []}}' * 20))
        monkeypatch.setenv("SMMDN_OPEN_METEO_URL", f"{upstream.url}/v1/forecast")
        monkeypatch.setenv("SMMDN_HTTP_READ_TIMEOUT_S", "1")
        monkeypatch.setenv("SMMDN_HTTP_DEADLINE_S", "2")
        get_settings.cache_clear()
        summary = run_daily(ops, HISTORY + 1, skip_training=True)
    fc = summary["forecast"]
    assert fc["status"] == "complete" and fc["series"] == 2 * 3 and fc["stale_forcing"] is True, fc
    assert any("forcing" in r["source"] for r in summary["ingest"]["failed"]), summary["ingest"]
    assert store.count("forcing") >= forcing  # the historical-forecast API (still good) may add its day
    assert_no_duplicates(store)
