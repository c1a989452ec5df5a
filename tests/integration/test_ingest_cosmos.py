"""COSMOS-UK HTTP adapter: the real SPENF portal export served on 127.0.0.1, parsed by ``cosmos.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from smmdn.config import Settings
from smmdn.ingest import ingest_sensors
from smmdn.registry import parse_registry
from tests.conftest import shared_path
from tests.helpers.http_server import Reply, Server, serve

pytest.importorskip("smmdn.sources.cosmos", reason="cosmos.py (COSMOS-UK CSV parser) not written yet")

NOW = pd.Timestamp("2024-06-10T00:00Z")
EXPORT = "/cosmos/SPENF/1day.csv"
REGISTRY = """
version: 1
sites:
  - id: spen_farm
    name: Spen Farm (COSMOS-UK SPENF)
    lat: 53.87
    lon: -1.32
    sources:
      cosmos: {site_id: SPENF, resolution: 1day}
"""


@pytest.fixture
def env(tmp_path: Path, sqlite_store) -> Iterator[tuple[Server, Settings, object, object]]:  # type: ignore[no-untyped-def]
    registry = parse_registry(REGISTRY)
    sqlite_store.upsert_sites(registry.sites_frame())
    with serve() as server:
        settings = Settings(_env_file=None, home=tmp_path, cosmos_url=f"{server.url}/cosmos", http_retries=1,
                            http_backoff_s=0.0)
        yield server, settings, registry, sqlite_store


def test_real_export_is_ingested_with_replicate_sensors(env) -> None:  # type: ignore[no-untyped-def]
    server, settings, registry, store = env
    server.route(EXPORT, Reply("oops", status=503), Reply(shared_path("data", "cosmos-uk",
                                                                    "SPENF-2016-11-24-2021-09-05.csv").read_bytes()))
    [s] = ingest_sensors(store, settings, registry, since=pd.Timestamp("2016-01-01T00:00Z"), now=NOW)
    assert s.status == "ok", s.line()
    assert server.hits(EXPORT) == 2
    assert server.log[-1].query["start"] == ["2016-01-01"]
    obs = store.read_observations(sites=["spen_farm"])
    assert len(obs) > 1000 and obs["vwc"].max() <= 1.0  # percent turned into m3/m3
    at_depth = obs.groupby("depth_cm")["sensor"].nunique()
    assert at_depth.max() >= 2  # TDT1 and TDT2 replicates at one depth stay separate series
    assert not store.read_forcing(sites=["spen_farm"]).empty
    [again] = ingest_sensors(store, settings, registry, now=NOW)  # same export, from the watermark
    assert again.inserted == 0 and store.count("observations") == len(obs)


def test_malformed_export_writes_nothing(env) -> None:  # type: ignore[no-untyped-def]
    server, settings, registry, store = env
    server.route(EXPORT, Reply("<html>maintenance</html>\n"))
    [s] = ingest_sensors(store, settings, registry, since=pd.Timestamp("2016-01-01T00:00Z"), now=NOW)
    assert s.status == "failed" and EXPORT in s.error
    assert store.count("observations") == 0 and store.get_watermark("cosmos", "spen_farm") is None


def test_garbage_exports_raise_only_source_errors(tmp_path: Path) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from smmdn.errors import SourceError
    from smmdn.sources.cosmos_http import fetch_cosmos
    from smmdn.sources.http import make_session

    real = shared_path("data", "cosmos-uk", "SPENF-2016-11-24-2021-09-05.csv").read_text()[:3000]
    with serve() as server:
        cfg = Settings(_env_file=None, home=tmp_path, cosmos_url=f"{server.url}/cosmos", http_retries=0)
        session = make_session(cfg)

        @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(cut=st.integers(0, len(real)), junk=st.text(max_size=30), at=st.integers(0, len(real)))
        def check(cut: int, junk: str, at: int) -> None:
            server.route(EXPORT, Reply((real[:at] + junk + real[at:])[:cut]))
            try:
                obs, _ = fetch_cosmos(session, cfg, "spen_farm", site_id="SPENF")
            except SourceError:
                return
            assert obs.empty or set(obs["site"]) == {"spen_farm"}

        check()
