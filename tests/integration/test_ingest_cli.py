"""``smmdn sites``, ``smmdn ingest`` and ``smmdn quarantine`` in-process, against loopback HTTP and SQLite."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from smmdn.cli import main
from smmdn.config import get_settings
from smmdn.registry import example_registry_path, load_registry
from tests.helpers.http_server import Reply, Server, serve
from tests.helpers.uscrn_render import hourly02_line

PATH = "/u/hourly02/2024/CRNH0203-2024-NE_Lincoln_11_SW.txt"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Server, str]]:
    with serve() as server:
        monkeypatch.setenv("SMMDN_HOME", str(tmp_path))
        monkeypatch.setenv("SMMDN_USCRN_URL", f"{server.url}/u")
        monkeypatch.setenv("SMMDN_HTTP_RETRIES", "0")
        monkeypatch.setenv("SMMDN_REGISTRY_FILE", str(example_registry_path()))
        get_settings.cache_clear()
        yield server, f"sqlite:///{tmp_path / 'cli.db'}"
        get_settings.cache_clear()


def test_example_registry_is_real_uscrn_stations() -> None:
    reg = load_registry(example_registry_path())
    lincoln = reg.site("NE_Lincoln_11_SW")
    assert lincoln.sources.uscrn.wban == "94996" and lincoln.lat == pytest.approx(40.70)
    assert {s.depth_cm for s in lincoln.sensors} == {5, 10, 20, 50, 100}
    assert reg.vwc_max()["NM_Las_Cruces_20_N"] == 0.5 and reg.vwc_max()["NE_Lincoln_11_SW"] == 0.8
    assert all(s.time_label_note for s in reg.sites)


def test_sites_load_list_show(env, capsys) -> None:  # type: ignore[no-untyped-def]
    _, url = env
    assert main(["sites", "--url", url, "load"]) == 0
    assert main(["sites", "--url", url, "load", str(example_registry_path())]) == 0  # idempotent
    out = capsys.readouterr().out
    assert "version 1, 4 sites, 20 sensors" in out and "sites: 0 new, 0 updated" in out
    assert main(["sites", "--url", url, "list"]) == 0
    assert "NC_Durham_11_W" in capsys.readouterr().out
    assert main(["sites", "--url", url, "show", "NE_Lincoln_11_SW"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert "team:plains" in shown["tags"] and len(shown["sensors"]) == 5
    assert shown["attributes"]["sources"]["uscrn"]["station_file"] == "NE_Lincoln_11_SW"
    assert main(["sites", "--url", url, "show", "nowhere"]) == 2


def test_sites_load_rejects_a_broken_registry(env, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    _, url = env
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nsites:\n  - {id: a, name: A, lat: 95, lon: 0}\n")
    assert main(["sites", "--url", url, "load", str(bad)]) == 2
    assert "sites.0.lat" in capsys.readouterr().err


def test_ingest_and_quarantine_commands(env, capsys) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    server, url = env
    lines = [hourly02_line("94996", pd.Timestamp("2024-03-01T01:00Z") + pd.Timedelta(hours=i), -6,
                           [0.9 if i == 3 else 0.2 + 0.001 * i, 0.25 + 0.001 * i, 0.3 + 0.001 * i,
                            0.31 + 0.001 * i, 0.32 + 0.001 * i]) for i in range(12)]
    server.route(PATH, Reply("\n".join(lines) + "\n"))
    assert main(["sites", "--url", url, "load"]) == 0
    code = main(["ingest", "--url", url, "sensors", "--site", "NE_Lincoln_11_SW", "--since", "2024-01-01T00:00Z",
                 "--until", "2024-12-31T00:00Z"])
    out = capsys.readouterr().out
    assert code == 0 and "uscrn[NE_Lincoln_11_SW] ok" in out and "new 59" in out and "quarantined 1" in out

    assert main(["quarantine", "--url", url, "list"]) == 0
    listing = capsys.readouterr().out
    assert "1 open row(s)" in listing and "vwc_out_of_range" in listing
    assert listing.splitlines()[1].split()[:2] == ["id", "table_name"]  # the header
    qid = listing.splitlines()[2].split()[0]
    assert main(["quarantine", "--url", url, "release", qid]) == 1  # still above the site's 0.8
    assert main(["quarantine", "--url", url, "release", qid, "--vwc-max", "0.95"]) == 0
    assert "released 1 row(s), wrote 1" in capsys.readouterr().out
    assert main(["quarantine", "--url", url, "list", "--released"]) == 0
    assert "1 released row(s)" in capsys.readouterr().out

    server.route(PATH, Reply("garbage\n"))
    assert main(["ingest", "--url", url, "sensors", "--site", "NE_Lincoln_11_SW", "--since",
                 "2024-01-01T00:00Z"]) == 1
    assert "failed" in capsys.readouterr().out
