"""A canary secret in every SecretStr setting never reaches stdout, log records, Prefect's database,
artifacts, alert deliveries or our own database.

The paths that leaked before issue 18: the Open-Meteo API key in the URL that sources/http.py put into a
SourceError, which the CLI printed, Prefect logged and the ingest-summary artifact showed.
"""

from __future__ import annotations

import logging
import socket
import sqlite3
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.helpers.http_server import Reply, serve

pytestmark = [pytest.mark.prefect, pytest.mark.postgres]

REGISTRY = """
version: 1
sites:
  - id: canary_site
    name: Canary
    lat: 45.0
    lon: -93.0
    forcing:
      open_meteo: {latitude: 45.0, longitude: -93.0}
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _canaries() -> dict[str, str]:
    from smmdn.config import Settings

    names = [n for n, f in Settings.model_fields.items() if "SecretStr" in str(f.annotation)]
    assert {"open_meteo_api_key", "apprise_urls"} <= set(names)
    port = _closed_port()
    return {n: (f"json://127.0.0.1:{port}/CanaryTok{i}x9q" if "url" in n else f"CanaryKey{i}x9q")
            for i, n in enumerate(names)}


def _prefect_db_text() -> str:
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    path = PREFECT_SERVER_DATABASE_CONNECTION_URL.value().split(":///", 1)[1]
    with sqlite3.connect(path) as conn:
        return "\n".join(conn.iterdump())


def _our_db_text(url: str) -> str:
    libpq = make_url(url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(libpq) as conn:
        tables = [t for (t,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        return "\n".join(str(r) for t in tables for (r,) in conn.execute(f'SELECT t::text FROM "{t}" t'))


class _Records(logging.Handler):
    """Every record, kept as formatted (Prefect reconfigures the root logger, so caplog's handler may go)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(logging.Formatter().format(record))


def test_canary_secrets_appear_nowhere(prefect_harness, pg_url, tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from prefect.logging.handlers import APILogWorker

    from flows.ingest import ingest
    from smmdn.cli import main
    from smmdn.config import get_settings
    from tests.flows.conftest import artifacts

    canaries = _canaries()
    (tmp_path / "registry.yaml").write_text(REGISTRY)
    with serve() as upstream:
        # an upstream that fails and, like some do, echoes the key back in its error body
        echo = Reply(f"error: invalid apikey={canaries['open_meteo_api_key']}", status=400)
        for path in ("/forecast", "/archive", "/historical"):
            upstream.route(path, echo)
        env = {"SMMDN_HOME": str(tmp_path), "SMMDN_DATABASE_URL": pg_url,
               "SMMDN_REGISTRY_FILE": str(tmp_path / "registry.yaml"), "SMMDN_HTTP_RETRIES": "0",
               "SMMDN_OPEN_METEO_URL": f"{upstream.url}/forecast",
               "SMMDN_OPEN_METEO_ARCHIVE_URL": f"{upstream.url}/archive",
               "SMMDN_OPEN_METEO_HISTORICAL_FORECAST_URL": f"{upstream.url}/historical",
               "SMMDN_ALERT_DELIVERY_ATTEMPTS": "1",
               **{f"SMMDN_{k.upper()}": v for k, v in canaries.items()}}
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        get_settings.cache_clear()
        try:
            handler = _Records()
            loggers = [logging.getLogger(n) for n in ("smmdn", "prefect", "flows", "apprise", "")]
            for lg in loggers:
                lg.addHandler(handler)
            try:
                assert main(["db", "init"]) == 0
                assert main(["sites", "load"]) == 0
                assert main(["ingest", "forcing"]) == 1  # the upstream refused: a failed batch, one line
                assert main(["--debug", "ingest", "forcing", "--api", "historical-forecast"]) == 1
                assert main(["alerts", "test", "default"]) == 1  # apprise fails on the closed port
                result = ingest(now="2024-06-01T00:00:00+00:00", per_site=False)
            finally:
                for lg in loggers:
                    lg.removeHandler(handler)
            APILogWorker.drain_all(timeout=30)  # every log record shipped to Prefect's database
        finally:
            get_settings.cache_clear()
        assert upstream.hits("/forecast") >= 2  # the key really was sent: the checks below are not vacuous
        assert any(canaries["open_meteo_api_key"] in str(r.query) for r in upstream.log)

    captured = capsys.readouterr()
    records = "\n".join(handler.texts)
    summary_artifacts = artifacts("ingest-summary")
    shown = "\n".join(str(a.data) + str(a.description) for a in summary_artifacts)
    prefect_db, our_db = _prefect_db_text(), _our_db_text(pg_url)
    places = {"stdout": captured.out, "stderr": captured.err, "log records": records, "artifacts": shown,
              "Prefect's database": prefect_db, "smmdn's database": our_db, "flow result": str(result)}
    for where, text in places.items():
        for name, secret in canaries.items():
            token = secret.rsplit("/", 1)[-1]
            assert token not in text, f"{name} leaked into {where}"
    # the failures themselves were reported (redacted), so the searched texts hold the error paths
    assert "apikey=***" in captured.out and "apikey=***" in records and "apikey=***" in shown
    assert "apikey=***" in prefect_db
    assert "Connection error" in our_db  # the failed delivery's error text was stored (redacted)
