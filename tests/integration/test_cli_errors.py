"""The CLI's one exit-code table: 0 ok, 1 check failed, 2 bad usage or input, 3 environment.

Each class on the real thing: a PostgreSQL port nobody listens on, a role the server refuses, a home
without a database, bad dates and ids. One line with the fix on stderr, a traceback only with --debug.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from smmdn.cli import main
from smmdn.config import get_settings
from tests.conftest import REPO, shared_path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("SMMDN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SMMDN_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield tmp_path / "home"
    get_settings.cache_clear()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_line_error(err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.startswith(("error:", "internal error:"))]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "fix:" in lines[0], err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_database_down_is_exit_3_with_one_line(home, capsys) -> None:  # type: ignore[no-untyped-def]
    url = f"postgresql+psycopg://smmdn:secret-pw@127.0.0.1:{_closed_port()}/smmdn?connect_timeout=2"
    assert main(["alerts", "--url", url, "list"]) == 3
    err = capsys.readouterr().err
    _one_line_error(err, "start the database", "127.0.0.1")
    assert "secret-pw" not in err
    assert main(["--debug", "alerts", "--url", url, "list"]) == 3  # the same error, with its traceback
    assert "Traceback" in capsys.readouterr().err
    assert main(["alerts", "--url", url, "list", "--debug"]) == 3  # the switch is accepted anywhere
    assert "Traceback" in capsys.readouterr().err


def test_ingest_with_the_database_down_is_exit_3(home, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    url = f"postgresql+psycopg://smmdn:pw@127.0.0.1:{_closed_port()}/smmdn?connect_timeout=2"
    registry = tmp_path / "registry.yaml"
    registry.write_text("version: 1\nsites:\n  - {id: a, name: A, lat: 45, lon: -93}\n")
    assert main(["ingest", "--url", url, "--registry", str(registry), "sensors"]) == 3
    _one_line_error(capsys.readouterr().err, "SMMDN_DATABASE_URL")


@pytest.mark.postgres
def test_a_permission_the_server_refuses_is_exit_3(home, pg_url, pg_cluster, capsys) -> None:  # type: ignore[no-untyped-def]
    database = make_url(pg_url).database
    with pg_cluster.connect(database) as conn:
        conn.autocommit = True
        conn.execute("CREATE ROLE no_rights LOGIN PASSWORD 'no-rights-pw'")
    url = make_url(pg_url).set(username="no_rights", password="no-rights-pw").render_as_string(False)
    assert main(["quarantine", "--url", url, "list"]) == 3
    err = capsys.readouterr().err
    _one_line_error(err, "refused access", "permission denied")
    assert "no-rights-pw" not in err


def test_a_home_without_a_database_is_exit_3_naming_db_init(home, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["alerts", "list"]) == 3
    _one_line_error(capsys.readouterr().err, "smmdn db init")


def test_a_bad_date_is_exit_2_before_any_database_work(home, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["forecasts", "export", "--since", "yesterday-ish"]) == 2
    _one_line_error(capsys.readouterr().err, "--since", "'yesterday-ish'", "ISO 8601")
    assert main(["forecasts", "export", "--since", ""]) == 2  # empty is not 'no date'
    capsys.readouterr()
    assert main(["ingest", "--registry", "x.yaml", "sensors", "--since", "31/12/2024"]) == 2
    _one_line_error(capsys.readouterr().err, "--since")


def test_quarantine_release_of_a_missing_id_is_exit_2(home, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["db", "init"]) == 0
    capsys.readouterr()
    assert main(["quarantine", "release", "99"]) == 2
    _one_line_error(capsys.readouterr().err, "99", "smmdn quarantine list")


@pytest.mark.parametrize("argv", [["alerts", "--no-such-flag"], ["quarantine", "release", "not-a-number"],
                                  ["ingest", "retry", "--no-such-flag", "--debug"]])
def test_bad_usage_is_exit_2(home, capsys, argv) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as done:  # argparse's own exit, with its usage line
        main(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err and "Traceback" not in err


def test_no_command_is_exit_2(home, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main([]) == 2


def test_ingest_retry_of_a_file_not_rejected_is_exit_2(home, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    registry = tmp_path / "registry.yaml"
    registry.write_text("version: 1\nsites:\n  - {id: a, name: A, lat: 45, lon: -93}\n")
    assert main(["ingest", "--registry", str(registry), "retry", "nothing.dat"]) == 2
    _one_line_error(capsys.readouterr().err, "nothing.dat")
    assert main(["ingest", "--registry", str(registry), "retry"]) == 2
    capsys.readouterr()


def test_ingest_retry_cli_brings_a_fixed_file_in(home, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    sample = shared_path("formats", "toa5", "Station_Daily.head.dat")
    registry = tmp_path / "registry.yaml"
    body = ("version: 1\nsites:\n  - id: station\n    name: Logger\n    lat: 45\n    lon: -93\n    sources:\n"
            "      toa5:\n        station: {station}\n        table: Daily\n        utc_offset_hours: -6\n"
            "        columns:\n          RH_Min: {{depth_cm: 10, sensor: a, unit: percent}}\n")
    registry.write_text(body.format(station="Wrong"))
    landing = home / "landing"
    landing.mkdir(parents=True)
    (landing / "day.dat").write_bytes(sample.read_bytes())
    os.utime(landing / "day.dat", (time.time() - 3600,) * 2)
    assert main(["ingest", "--registry", str(registry), "sensors"]) == 1  # rejected: a check failed
    assert "rejected" in capsys.readouterr().out and (landing / "rejected" / "day.dat.reason.txt").exists()
    registry.write_text(body.format(station="Station"))
    assert main(["sites", "load", str(registry)]) == 0
    assert main(["ingest", "--registry", str(registry), "retry", "day.dat"]) == 0
    assert "toa5[station:day.dat] ok" in capsys.readouterr().out
    assert (landing / "processed" / "day.dat").exists()


def test_ingest_exits_3_when_the_database_refuses_writes_and_keeps_the_file(home, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A landing file meets a read-only database: nothing is rejected, the file waits, the exit code says 3."""
    sample = shared_path("formats", "toa5", "Station_Daily.head.dat")
    registry = tmp_path / "registry.yaml"
    registry.write_text("version: 1\nsites:\n  - id: station\n    name: Logger\n    lat: 45\n    lon: -93\n"
                        "    sources:\n      toa5:\n        station: Station\n        table: Daily\n"
                        "        utc_offset_hours: -6\n        columns:\n"
                        "          RH_Min: {depth_cm: 10, sensor: a, unit: percent}\n")
    assert main(["sites", "load", str(registry)]) == 0
    landing = home / "landing"
    landing.mkdir(parents=True, exist_ok=True)
    (landing / "day.dat").write_bytes(sample.read_bytes())
    os.utime(landing / "day.dat", (time.time() - 3600,) * 2)
    read_only = f"sqlite:///file:{home / 'data' / 'smmdn.db'}?mode=ro&uri=true"
    capsys.readouterr()
    assert main(["ingest", "--url", read_only, "--registry", str(registry), "sensors"]) == 3
    out = capsys.readouterr().out
    assert "toa5[station:day.dat] failed" in out and "refused access: attempt to write a readonly database" in out
    assert "rerun once it is back" in out
    assert (landing / "day.dat").exists() and not (landing / "rejected").exists()


def test_the_installed_command_prints_no_traceback(home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The real entry point in a fresh process: stderr is the one line, the exit status the table's."""
    env = {**os.environ, "SMMDN_HOME": str(home), "PYTHONPATH": str(REPO)}
    env.pop("SMMDN_DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-m", "smmdn.cli", "forecasts", "export", "--since", "13/13/2024"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr
    _one_line_error(done.stderr, "--since")
