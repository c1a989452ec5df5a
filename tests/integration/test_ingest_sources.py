"""Adapters and ingest against a real HTTP server on 127.0.0.1 and a real store (SQLite; one PostgreSQL run).

Faults: 5xx then success, 429 with Retry-After, read timeout, truncated and malformed payloads,
duplicate and late-arriving data. Nothing here reaches beyond the loopback interface.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from pydantic import SecretStr

from smmdn.config import Settings
from smmdn.errors import SourceError
from smmdn.ingest import ingest_forcing, ingest_sensors
from smmdn.registry import Registry, parse_registry
from smmdn.sources.http import MAX_RETRY_AFTER_S, CappedRetry, NotJson, make_session
from smmdn.sources.sensorthings import fetch_datastream
from tests.conftest import shared_path
from tests.helpers.http_server import Reply, Server, serve
from tests.helpers.uscrn_render import daily01_text, hourly02_line

NOW = pd.Timestamp("2024-06-10T00:00Z")
HOURLY_PATH = "/uscrn/hourly02/2024/CRNH0203-2024-NE_Lincoln_11_SW.txt"
DAILY_PATH = "/uscrn/daily01/2020/CRND0103-2020-NC_Durham_11_W.txt"

REGISTRY = """
version: 7
sites:
  - id: lincoln
    name: Lincoln 11 SW
    lat: 40.70
    lon: -96.85
    tags: [team:plains]
    lst_utc_offset_hours: -6
    sensors: [{depth_cm: 5, sensor: avg}, {depth_cm: 10, sensor: avg}]
    sources:
      uscrn: {station_file: NE_Lincoln_11_SW, wban: "94996", product: hourly02}
    forcing:
      open_meteo: {latitude: 40.70, longitude: -96.85}
  - id: durham
    name: Durham 11 W
    lat: 35.97
    lon: -79.09
    lst_utc_offset_hours: -6
    sources:
      uscrn: {station_file: NC_Durham_11_W, wban: "03758", product: daily01}
    forcing:
      open_meteo: {latitude: 35.97, longitude: -79.09}
  - id: frost
    name: SensorThings site
    lat: 55.8
    lon: -4.2
    vwc_max: 0.6
    sources:
      sensorthings:
        datastreams: [{id: 93, depth_cm: 10, sensor: a}]
"""


@pytest.fixture
def server() -> Iterator[Server]:
    with serve() as s:
        yield s


@pytest.fixture
def settings(tmp_path: Path, server: Server) -> Settings:
    return Settings(
        _env_file=None, home=tmp_path, uscrn_url=f"{server.url}/uscrn", sensorthings_url=f"{server.url}/sta/v1.1",
        open_meteo_url=f"{server.url}/v1/forecast", open_meteo_archive_url=f"{server.url}/v1/archive",
        cosmos_url=f"{server.url}/cosmos", http_retries=2, http_backoff_s=0.0, http_read_timeout_s=5.0,
    )


@pytest.fixture
def registry() -> Registry:
    return parse_registry(REGISTRY)


@pytest.fixture
def db(sqlite_store, registry):  # type: ignore[no-untyped-def]
    sqlite_store.upsert_sites(registry.sites_frame())
    return sqlite_store


def hourly_file(hours: int, start: str = "2024-06-01T01:00Z", spike_at: int | None = None) -> str:
    lines = []
    for i in range(hours):
        t = pd.Timestamp(start) + pd.Timedelta(hours=i)
        d = 0.0005 * (i % 24)  # a daily cycle, so no depth looks like a stuck sensor
        lines.append(hourly02_line("94996", t, -6, [0.45 if i == spike_at else 0.20 + d, 0.25 + d, None,
                                                    0.16 + d, 0.18 + d]))
    return "".join(line + "\n" for line in lines)


def counts(store) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    return store.count("observations"), store.count("quarantine")


# --- HTTP behaviour ----------------------------------------------------------------------------------
def test_500_then_success_is_retried(server, settings, registry, db) -> None:  # type: ignore[no-untyped-def]
    server.route(HOURLY_PATH, Reply("boom", status=500), Reply(hourly_file(30)))
    [s] = ingest_sensors(db, settings, registry, sites=["lincoln"], since=pd.Timestamp("2024-01-01T00:00Z"), now=NOW)
    assert s.status == "ok", s.line()
    assert server.hits(HOURLY_PATH) == 2
    assert s.inserted == 30 * 4 and db.count("observations") == 120
    assert server.log[0].headers["User-Agent"] == settings.user_agent


def test_429_with_retry_after_is_honoured_and_capped(server, settings) -> None:  # type: ignore[no-untyped-def]
    server.route("/sta/v1.1/Datastreams(1)", Reply("slow down", status=429, headers={"Retry-After": "0"}),
                 Reply(json.dumps({"unitOfMeasurement": {"symbol": "m3/m3"}})))
    server.route("/sta/v1.1/Datastreams(1)/Observations", Reply(json.dumps({"value": []})))
    frame = fetch_datastream(make_session(settings), settings, 1)
    assert frame.empty and server.hits("/sta/v1.1/Datastreams(1)") == 2

    class FakeResponse:
        headers = {"Retry-After": "3600"}  # noqa: RUF012

        def getheader(self, name: str) -> str | None:
            return self.headers.get(name)

    retry = CappedRetry(total=1, respect_retry_after_header=True)
    assert retry.get_retry_after(FakeResponse()) == MAX_RETRY_AFTER_S  # an hour would stall the whole run


def test_sensorthings_page_that_is_not_json_is_asked_again(server, settings) -> None:  # type: ignore[no-untyped-def]
    """A proxy's HTML page with HTTP 200 in the middle of the paging: asked again (``http_retries``), every
    value of the good answer read once; still broken after the retries: ``NotJson`` naming the URL."""
    html = Reply("<!DOCTYPE html><html><body>502 Bad Gateway</body></html>", headers={"Content-Type": "text/html"})
    server.route("/sta/v1.1/Datastreams(1)", html, Reply(json.dumps({"unitOfMeasurement": {"symbol": "m3/m3"}})))
    server.route("/sta/v1.1/Datastreams(1)/Observations", html,
                 Reply(_page([("2024-06-01T00:00:00Z", 0.3), ("2024-06-01T01:00:00Z", 0.31)], None)))
    frame = fetch_datastream(make_session(settings), settings, 1)
    assert list(frame["value"]) == [0.3, 0.31]
    assert server.hits("/sta/v1.1/Datastreams(1)") == 2 and server.hits("/sta/v1.1/Datastreams(1)/Observations") == 2

    server.route("/sta/v1.1/Datastreams(2)", *[html] * (settings.http_retries + 1))
    with pytest.raises(NotJson, match=r"Datastreams\(2\).*not JSON.*after 3 attempt"):
        fetch_datastream(make_session(settings), settings, 2)


def test_read_timeout_is_a_clear_source_error_and_nothing_is_written(server, tmp_path, registry, db) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(_env_file=None, home=tmp_path, uscrn_url=f"{server.url}/uscrn", http_retries=0,
                        http_read_timeout_s=0.2)
    server.route(HOURLY_PATH, Reply(hourly_file(5), hang_s=5))
    [s] = ingest_sensors(db, settings, registry, sites=["lincoln"], since=pd.Timestamp("2024-01-01T00:00Z"), now=NOW)
    assert s.status == "failed" and s.retryable
    assert HOURLY_PATH in s.error and "SMMDN_USCRN_URL" in s.error and "Timeout" in s.error
    assert counts(db) == (0, 0) and db.get_watermark("uscrn", "lincoln") is None


def test_truncated_payload_fails_cleanly(server, settings, registry, db) -> None:  # type: ignore[no-untyped-def]
    body = hourly_file(40)
    server.route(HOURLY_PATH, Reply(body, truncate_to=len(body) // 2))
    [s] = ingest_sensors(db, settings, registry, sites=["lincoln"], since=pd.Timestamp("2024-01-01T00:00Z"), now=NOW)
    assert s.status == "failed" and HOURLY_PATH in s.error
    assert counts(db) == (0, 0) and db.get_watermark("uscrn", "lincoln") is None


def test_malformed_payload_fails_cleanly(server, settings, registry, db) -> None:  # type: ignore[no-untyped-def]
    server.route(HOURLY_PATH, Reply("<html><body>Service moved</body></html>\n"))
    [s] = ingest_sensors(db, settings, registry, sites=["lincoln"], since=pd.Timestamp("2024-01-01T00:00Z"), now=NOW)
    assert s.status == "failed" and "fields" in s.error
    assert counts(db) == (0, 0)


# --- USCRN ingest ------------------------------------------------------------------------------------
def test_uscrn_incremental_idempotent_and_late_arriving(server, settings, registry, db) -> None:  # type: ignore[no-untyped-def]
    since = pd.Timestamp("2024-01-01T00:00Z")
    server.route(HOURLY_PATH, Reply(hourly_file(48, spike_at=30)))
    [first] = ingest_sensors(db, settings, registry, sites=["lincoln"], since=since, now=NOW)
    assert (first.inserted, first.quarantined, first.flagged) == (48 * 4, 0, 1)
    assert first.watermark_after == pd.Timestamp("2024-06-03T00:00Z")
    assert db.get_watermark("uscrn", "lincoln") == first.watermark_after
    forcing = db.read_forcing(sites=["lincoln"])
    assert not forcing.empty

    [again] = ingest_sensors(db, settings, registry, sites=["lincoln"], now=NOW)  # same file, from watermark
    assert (again.inserted, again.updated, again.status) == (0, 0, "empty")
    assert db.count("observations") == 192

    server.route(HOURLY_PATH, Reply(hourly_file(60, spike_at=30)))  # 12 late hours appended to the year file
    [late] = ingest_sensors(db, settings, registry, sites=["lincoln"], now=NOW)
    assert late.inserted == 12 * 4 and late.updated == 0
    assert db.count("observations") == 240

    [replay] = ingest_sensors(db, settings, registry, sites=["lincoln"], since=since, now=NOW)  # full backfill
    assert (replay.inserted, replay.updated) == (0, 0)
    obs = db.read_observations(sites=["lincoln"])
    assert obs.duplicated(["time", "site", "depth_cm", "sensor"]).sum() == 0
    assert (obs["quality_flag"] == "spike").sum() == 1
    assert db.get_watermark("uscrn", "lincoln") == pd.Timestamp("2024-06-03T12:00Z")  # never moved back


def test_uscrn_daily_from_real_values_and_quarantine(server, settings, registry, db) -> None:  # type: ignore[no-untyped-def]
    csv = pd.read_csv(shared_path("data", "uscrn-daily-2020", "uscrn_daily01_2020.csv"), dtype={"wban": str})
    rows = csv[csv["wban"] == "03758"].head(90).copy()
    rows.iloc[40, rows.columns.get_loc("soil_moisture_10_daily")] = 0.95  # planted: above 0.8
    server.route(DAILY_PATH, Reply(daily01_text(rows)))
    [s] = ingest_sensors(db, settings, registry, sites=["durham"], since=pd.Timestamp("2020-01-01T00:00Z"),
                         until=pd.Timestamp("2020-12-31T00:00Z"), now=NOW)
    assert s.status == "ok" and s.quarantined == 1
    q = db.list_quarantine(table="observations")
    assert len(q) == 1 and "vwc_out_of_range" in q["reason"].iloc[0]
    stored = db.read_observations(sites=["durham"])
    soil = rows[[f"soil_moisture_{d}_daily" for d in (5, 10, 20, 50, 100)]].iloc[1:]  # since is exclusive
    expected = soil.notna().sum().sum() - 1
    assert len(stored) == expected
    assert stored["time"].min() == pd.Timestamp("2020-01-02", tz="UTC")  # since is exclusive
    runs = db.validation_runs()
    assert len(runs) == 1 and not runs["success"].iloc[0]


def test_release_rewrites_rows_that_now_pass(server, settings, registry, db) -> None:  # type: ignore[no-untyped-def]
    from smmdn.quality.release import release_rows
    from smmdn.quality.rules import ObservationRules

    body = hourly_file(10).replace("  0.200 ", "  0.850 ", 1)  # first 5 cm reading 0.85
    server.route(HOURLY_PATH, Reply(body))
    [s] = ingest_sensors(db, settings, registry, sites=["lincoln"], since=pd.Timestamp("2024-01-01T00:00Z"), now=NOW)
    assert s.quarantined == 1
    qid = int(db.list_quarantine()["id"].iloc[0])
    still = release_rows(db, [qid], rules=ObservationRules(), now=NOW)
    assert still.released == [] and qid in still.still_rejected  # same rules: still impossible
    out = release_rows(db, [qid], rules=ObservationRules(vwc_max=0.9), now=NOW)
    assert out.released == [qid] and out.written == 1
    assert db.list_quarantine().empty and len(db.list_quarantine(released=True)) == 1
    assert db.read_observations(sites=["lincoln"])["vwc"].max() == pytest.approx(0.85)


# --- SensorThings ------------------------------------------------------------------------------------
def _page(values: list[tuple[str, float | None]], next_link: str | None) -> str:
    body: dict[str, object] = {"value": [{"phenomenonTime": t, "result": v} for t, v in values]}
    if next_link:
        body["@iot.nextLink"] = next_link
    return json.dumps(body)


def test_sensorthings_pages_units_and_watermark(server, settings, registry, db) -> None:  # type: ignore[no-untyped-def]
    real = json.loads(shared_path("formats", "sensorthings", "bgs-datastreams-by-feature.geosense.json").read_text())
    ds93 = next(e for g in real.values() for e in g if e["@iot.id"] == 93)  # real entity, unit "%"
    server.route("/sta/v1.1/Datastreams(93)", Reply(json.dumps(ds93)))
    obs = "/sta/v1.1/Datastreams(93)/Observations"
    base = f"{server.url}{obs}"
    server.route(obs,
                 Reply(_page([("2024-06-01T00:00:00Z/2024-06-01T01:00:00Z", 30.0), ("2024-06-01T02:00:00Z", 31.0)],
                             f"{base}?$skip=2&$top=2")),
                 Reply(_page([("2024-06-01T03:00:00.000Z", 32.0), ("2024-06-01T04:00:00Z", 33.0)],
                             f"{base}?$skip=4&$top=2")),
                 Reply(_page([("2024-06-01T05:00:00Z", 95.0)], None)))
    [s] = ingest_sensors(db, settings, registry, sites=["frost"], now=NOW)
    assert s.status == "ok", s.line()
    assert server.hits(obs) == 3
    first = server.log[1]
    assert first.query["$orderby"] == ["phenomenonTime asc"] and "$filter" not in first.query
    assert server.log[2].query == {"$skip": ["2"], "$top": ["2"]}  # nextLink followed verbatim
    stored = db.read_observations(sites=["frost"]).set_index("time")["vwc"]
    assert stored.iloc[0] == pytest.approx(0.30) and stored.index[0] == pd.Timestamp("2024-06-01T01:00Z")
    assert s.inserted == 4 and s.quarantined == 1  # 0.95 exceeds the site's 0.6 limit
    assert db.get_watermark("sensorthings", "frost") == pd.Timestamp("2024-06-01T05:00Z")

    server.route(obs, Reply(_page([], None)))
    [again] = ingest_sensors(db, settings, registry, sites=["frost"], now=NOW)
    assert again.status == "empty"
    assert server.log[-1].query["$filter"] == ["phenomenonTime gt 2024-06-01T05:00:00.000Z"]


def test_sensorthings_refuses_non_moisture_units(server, settings, registry, db) -> None:  # type: ignore[no-untyped-def]
    server.route("/sta/v1.1/Datastreams(93)", Reply(json.dumps({"unitOfMeasurement": {"symbol": "mbar"}})))
    [s] = ingest_sensors(db, settings, registry, sites=["frost"], now=NOW)
    assert s.status == "failed" and "mbar" in s.error and db.count("observations") == 0


# --- Open-Meteo --------------------------------------------------------------------------------------
def _om(site_values: list[float | None], times: list[str]) -> dict[str, object]:
    return {"latitude": 1.0, "longitude": 2.0, "utc_offset_seconds": -21600,
            "daily": {"time": times, "precipitation_sum": site_values, "temperature_2m_max": [20.0] * len(times)}}


def test_open_meteo_forecast_multi_site_issue_time_and_apikey(server, settings, registry, db) -> None:  # type: ignore[no-untyped-def]
    settings = settings.model_copy(update={"open_meteo_api_key": SecretStr("secret-key")})
    times = ["2024-06-10", "2024-06-11", "2024-06-12"]
    server.route("/v1/forecast", Reply("busy", status=429, headers={"Retry-After": "0"}),
                 Reply(json.dumps([_om([0.0, 1.0, None], times), _om([2.0, None, 3.0], times)])))
    [s] = ingest_forcing(db, settings, registry, sites=["lincoln", "durham"], variables=["precipitation_sum",
                         "temperature_2m_max"], forecast_days=3, now=NOW)
    assert s.status == "ok", s.line()
    req = server.log[-1]
    assert req.query["latitude"] == ["40.7000,35.9700"] and req.query["apikey"] == ["secret-key"]
    assert req.query["timezone"] == ["Etc/GMT+6"] and req.query["forecast_days"] == ["3"]
    stored = db.read_forcing(kinds=["forecast"])
    assert set(stored["site"]) == {"lincoln", "durham"}
    assert db.get_watermark("open-meteo", "forecast:daily") == NOW.floor("h")
    # nulls are not stored as zeros: lincoln's third day has no precipitation value
    assert stored.isna().sum().sum() > 0 or len(stored) < 12


def test_open_meteo_all_null_is_refused_and_nothing_is_written(server, settings, registry, db) -> None:  # type: ignore[no-untyped-def]
    payload = json.loads(shared_path("formats", "open-meteo", "forecast-daily-allnull.json").read_text())
    server.route("/v1/forecast", Reply(json.dumps(payload)))
    [s] = ingest_forcing(db, settings, registry, sites=["lincoln"], variables=["temperature_2m_max"], now=NOW)
    assert s.status == "failed" and "null" in s.error
    assert db.count("forcing") == 0 and db.get_watermark("open-meteo", "forecast:daily") is None


def test_open_meteo_archive_window_from_watermark(server, settings, registry, db) -> None:  # type: ignore[no-untyped-def]
    payload = json.loads(shared_path("formats", "open-meteo", "archive-daily.json").read_text())
    server.route("/v1/archive", Reply(json.dumps(payload)))
    [s] = ingest_forcing(db, settings, registry, sites=["lincoln"], api="archive", variables=["temperature_2m_max"],
                         since=pd.Timestamp("2022-12-28T00:00Z"), until=pd.Timestamp("2023-01-08T00:00Z"), now=NOW)
    assert s.status == "ok" and s.forcing_inserted == 11
    q = server.log[-1].query
    assert q["start_date"] == ["2022-12-29"] and q["end_date"] == ["2023-01-08"]
    assert db.get_watermark("open-meteo", "archive:daily") == pd.Timestamp("2023-01-08", tz="UTC")


# --- PostgreSQL --------------------------------------------------------------------------------------
@pytest.mark.postgres
def test_uscrn_ingest_on_timescaledb_is_idempotent(server, settings, registry, pg_store) -> None:  # type: ignore[no-untyped-def]
    pg_store.upsert_sites(registry.sites_frame())
    server.route(HOURLY_PATH, Reply(hourly_file(24)))
    since = pd.Timestamp("2024-01-01T00:00Z")
    [a] = ingest_sensors(pg_store, settings, registry, sites=["lincoln"], since=since, now=NOW)
    [b] = ingest_sensors(pg_store, settings, registry, sites=["lincoln"], since=since, now=NOW)
    assert (a.inserted, b.inserted, b.updated) == (96, 0, 0)
    assert pg_store.count("observations") == 96


def test_source_error_names_url_and_setting(settings) -> None:  # type: ignore[no-untyped-def]
    dead = settings.model_copy(update={"uscrn_url": "http://127.0.0.1:9/uscrn", "http_retries": 0})
    from smmdn.sources.uscrn import fetch_uscrn

    with pytest.raises(SourceError, match=r"127\.0\.0\.1:9.*SMMDN_USCRN_URL"):
        fetch_uscrn(make_session(dead), dead, "x", station_file="X", until=pd.Timestamp("2024-01-01T00:00Z"))


def test_lookback_picks_up_revisions_and_replays_do_not_repeat_quarantine(server, settings, registry, db) -> None:  # type: ignore[no-untyped-def]
    since = pd.Timestamp("2024-01-01T00:00Z")
    body = hourly_file(24).replace("  0.200 ", "  0.850 ", 1)  # one impossible reading
    server.route(HOURLY_PATH, Reply(body))
    [first] = ingest_sensors(db, settings, registry, sites=["lincoln"], since=since, now=NOW)
    assert first.quarantined == 1
    [replay] = ingest_sensors(db, settings, registry, sites=["lincoln"], since=since, now=NOW)
    assert replay.quarantined == 0 and db.count("quarantine") == 1  # same bad row, not quarantined twice

    revised = body.replace("  0.208 ", "  0.230 ", 1)  # NOAA revises the 5 cm value of hour 16
    assert revised != body
    server.route(HOURLY_PATH, Reply(revised))
    [plain] = ingest_sensors(db, settings, registry, sites=["lincoln"], now=NOW)
    assert plain.updated == 0  # the watermark alone never looks back
    [looked] = ingest_sensors(db, settings, registry, sites=["lincoln"], now=NOW, lookback=pd.Timedelta(hours=12))
    assert looked.updated == 1 and looked.inserted == 0
    assert db.get_watermark("uscrn", "lincoln") == pd.Timestamp("2024-06-02T00:00Z")


def test_sensorthings_never_follows_a_next_link_to_another_host(server, settings, registry, db) -> None:  # type: ignore[no-untyped-def]
    server.route("/sta/v1.1/Datastreams(93)", Reply(json.dumps({"unitOfMeasurement": {"symbol": "%"}})))
    server.route("/sta/v1.1/Datastreams(93)/Observations",
                 Reply(_page([("2024-06-01T00:00:00Z", 30.0)], "http://example.invalid/v1.1/Observations?$skip=1")))
    [s] = ingest_sensors(db, settings, registry, sites=["frost"], now=NOW)
    assert s.status == "failed" and "example.invalid" in s.error and "serviceRootUrl" in s.error
    assert db.count("observations") == 0


def test_naive_and_string_times_from_callers_are_taken_as_utc(server, settings, registry, db) -> None:  # type: ignore[no-untyped-def]
    server.route(HOURLY_PATH, Reply(hourly_file(6)))
    [s] = ingest_sensors(db, settings, registry, sites=["lincoln"], since="2024-06-01T03:00",  # type: ignore[arg-type]
                         now="2024-06-10", landing=False)  # type: ignore[arg-type]
    assert s.status == "ok" and s.inserted == 3 * 4  # hours 04:00..06:00 UTC


def test_bad_data_failures_are_not_retryable(server, settings, registry, db) -> None:  # type: ignore[no-untyped-def]
    percent = "".join(line.replace("   0.2", "  20.2") + "\n" for line in hourly_file(4).splitlines())
    server.route(HOURLY_PATH, Reply(percent))
    [s] = ingest_sensors(db, settings, registry, sites=["lincoln"], since=pd.Timestamp("2024-01-01T00:00Z"), now=NOW)
    assert s.status == "failed" and not s.retryable and "percent" in s.error
    assert db.count("observations") == 0
