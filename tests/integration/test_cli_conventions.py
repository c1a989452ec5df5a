"""CLI conventions an operator relies on: ``--version``; ``--json`` on every list and show command (valid JSON,
the same records the table shows); tables with a header line; promoting a rejected model asks first (or takes
``--force``); rollback walks back along the lineage instead of flipping between two versions; after a demo,
the CLI finds the demo's home by itself."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from smmdn.cli import main
from smmdn.config import get_settings
from smmdn.demo.receiver import AlertReceiver
from smmdn.registry import example_registry_path
from smmdn.store import Store
from tests.helpers import alert_world as W


@pytest.fixture
def home(tmp_path, monkeypatch) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    store = Store(url)
    store.init()
    world = W.build(store, tags={"S1": ["team:north"]})
    W.write_forecasts(world, range(20))
    W.observe(world, range(13), bend=lambda site, depth, sensor, day, v: v + 0.08 if sensor == "c" and
              day >= world.day(9) else v)
    rx = AlertReceiver(tmp_path / "rx.jsonl").start()
    routes = W.routes_file(tmp_path / "routes.yaml", rx, {"north": ["team:north"]})
    for key, value in {"SMMDN_DATABASE_URL": url, "SMMDN_HOME": str(tmp_path), "SMMDN_ALERT_ROUTES_FILE": str(routes),
                       "SMMDN_DRIFT_MIN_PAIRS": "100000"}.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    assert main(["alerts", "detect", "--now", world.now_after(12).isoformat()]) == 0
    assert main(["alerts", "silence", "S1", "--for", "1d", "--by", "bob", "--depth", "50"]) == 0
    yield {"store": store, "url": url, "world": world}
    rx.stop()
    get_settings.cache_clear()


def _out(capsys: pytest.CaptureFixture, argv: list[str], rc: int = 0) -> str:
    capsys.readouterr()
    assert main(argv) == rc, argv
    return capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture) -> None:
    from smmdn import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"smmdn {__version__}"


LISTS = [["alerts", "list"], ["alerts", "list", "--all"], ["alerts", "silences"], ["alerts", "outbox"],
         ["models", "list"], ["sites", "list"], ["quarantine", "list"], ["forecasts", "show"]]


@pytest.mark.parametrize("argv", LISTS, ids=" ".join)
def test_every_list_command_has_json_and_a_header(home, capsys, argv: list[str]) -> None:  # type: ignore[no-untyped-def]
    store: Store = home["store"]
    store.register_model_version("v1", kind="full", artifact_uri="file:///m/v1", metrics={"holdout_crps": 0.0123})
    records = json.loads(_out(capsys, [*argv, "--json"]))
    assert isinstance(records, list)
    table = _out(capsys, argv)
    if records:
        first = records[0]
        key = next(k for k in ("version", "site", "id") if k in first)
        assert str(first[key]) in table  # the same rows
        header = next(line for line in table.splitlines() if str(first[key]) not in line and line.strip()
                      and not line[0].isdigit())
        assert any(word in header for word in ("id", "version", "site")), table


def test_show_commands_have_json(home, capsys) -> None:  # type: ignore[no-untyped-def]
    from smmdn.store import alerts as db

    alert_id = int(db.read_alerts(home["store"]).iloc[0]["id"])
    shown = json.loads(_out(capsys, ["alerts", "show", str(alert_id), "--json"]))
    assert shown["id"] == alert_id and shown["kind"] and isinstance(shown["deliveries"], list)
    assert main(["sites", "load", str(example_registry_path())]) == 0
    site = json.loads(_out(capsys, ["sites", "show", "NE_Lincoln_11_SW", "--json"]))
    assert site["site"] == "NE_Lincoln_11_SW" and len(site["sensors"]) == 5


def test_promoting_a_rejected_model_needs_force_and_rollback_walks_the_lineage(home, capsys) -> None:  # type: ignore[no-untyped-def]
    store: Store = home["store"]
    store.register_model_version("a", kind="full", artifact_uri="file:///m/a")
    store.register_model_version("b", kind="fine-tune", parent="a", artifact_uri="file:///m/b")
    store.register_model_version("c", kind="fine-tune", parent="b", artifact_uri="file:///m/c")
    store.register_model_version("bad", kind="full", artifact_uri="file:///m/bad")
    store.set_model_status("bad", "rejected", note="held-out CRPS 0.020 > champion 0.015")
    for version in ("a", "b", "c"):
        store.promote(version)

    capsys.readouterr()
    assert main(["models", "promote", "bad"]) == 2  # no terminal to ask: refused, with the fix
    err = capsys.readouterr().err
    assert "was rejected (held-out CRPS 0.020 > champion 0.015)" in err and "--force" in err
    assert store.champion()["version"] == "c"

    assert "rolled back from c" in _out(capsys, ["models", "rollback"])
    assert store.champion()["version"] == "b"
    assert "rolled back from b" in _out(capsys, ["models", "rollback"])  # further back, not to c again
    assert store.champion()["version"] == "a"
    assert main(["models", "rollback"]) == 2  # a has no parent and nothing was champion before it
    status = store.model_versions().set_index("version")["status"]
    assert status["c"] == status["b"] == "rejected" and status["a"] == "champion"

    assert "champion: bad" in _out(capsys, ["models", "promote", "bad", "--force"])


def test_after_a_demo_the_cli_finds_its_home(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    demo = tmp_path / "var" / "demo"
    (demo / "data").mkdir(parents=True)
    Store(f"sqlite:///{demo / 'data' / 'smmdn.db'}").init()
    (demo / "summary.json").write_text("{}", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    for key in ("SMMDN_HOME", "SMMDN_DATABASE_URL"):
        monkeypatch.delenv(key, raising=False)
    get_settings.cache_clear()
    try:
        assert main(["alerts", "list"]) == 0
        captured = capsys.readouterr()
        assert "0 active alert(s)" in captured.out and "using the demo's home var/demo" in captured.err
        assert not (tmp_path / "var" / "data" / "smmdn.db").exists()  # nothing created at the default home
    finally:
        get_settings.cache_clear()
