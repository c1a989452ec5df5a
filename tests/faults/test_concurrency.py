"""Runs that overlap or die, on PostgreSQL + TimescaleDB: two ingest processes on one landing directory at
once; the daily cycle killed (SIGKILL) mid-way and rerun; the same day run by two processes at once. After
each, every reading, quarantined row, forecast and outbox message is there once and every landing file was
taken exactly once. The same day run twice in a row: tests/flows/test_daily.py; two deliverers at once:
tests/integration/test_alerts.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from tests.conftest import REPO
from tests.faults.ledger import assert_no_duplicates, landing_state
from tests.flows.conftest import HISTORY, TINY, Ops, run_daily

pytestmark = pytest.mark.postgres


def _child(code: str) -> subprocess.Popen[str]:
    """A separate Python process with this process's environment (the SMMDN_* settings of the test)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_two_ingest_processes_at_once_take_each_file_once(network, landing_env, pg_store) -> None:  # type: ignore[no-untyped-def]
    from smmdn.config import get_settings
    from smmdn.demo.feeds import write_toa5_day

    landing = landing_env
    start = pd.Timestamp(network.readings["time"].min())
    for n in range(6):  # six days per site, one file each
        for site in ("DEMO01", "DEMO02"):
            write_toa5_day(landing, site, network.readings, start + pd.Timedelta(days=n))
    files = landing_state(landing)["waiting"]
    expected = len(network.readings[network.readings["time"] < start + pd.Timedelta(days=6)].dropna(subset=["vwc"]))

    code = "import sys; from smmdn.cli import main; sys.exit(main(['ingest', 'sensors']))"
    first, second = _child(code), _child(code)
    outputs = [p.communicate(timeout=300)[0] for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outputs
    state = landing_state(landing)
    assert state["waiting"] == [] and not state["rejected"] and state["processed"] == files, state
    assert pg_store.count("observations") == expected
    assert_no_duplicates(pg_store)
    get_settings.cache_clear()


def test_a_promotion_interrupted_by_a_kill_is_completed_by_the_rerun(pg_store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The state the killed cycle below leaves (a same-day version judged promotable, registered as
    'challenger', never promoted): the rerun's training step makes it the champion instead of reporting
    'already trained' and leaving the day without a model."""
    from smmdn.config import Settings
    from smmdn.cycle.champion import train_and_judge, version_name
    from smmdn.cycle.day import resolve_day

    settings = Settings(_env_file=None, home=tmp_path)
    cycle = resolve_day("2024-04-06", settings)
    version = version_name("full", cycle)
    pg_store.register_model_version(version, kind="full", artifact_uri="file:///nowhere", status="challenger",
                                    note="no comparable champion: first model")
    outcome = train_and_judge(pg_store, settings, None, cycle, "full")  # type: ignore[arg-type]
    assert outcome.status == "exists" and pg_store.champion()["version"] == version == outcome.champion
    again = train_and_judge(pg_store, settings, None, cycle, "full")  # type: ignore[arg-type]
    assert again.status == "exists" and list(pg_store.model_versions()["status"]) == ["champion"]


def _daily_code(ops: Ops, n: int) -> str:
    """The real daily flow for day ``n`` in a child process, against this session's Prefect server."""
    return (f"from flows.daily import daily; "
            f"daily(day={ops.day(n).date().isoformat()!r}, history_days={HISTORY + 30}, train_overrides={TINY!r})")


def _prefect_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point child processes at the session's Prefect test server (the harness sets it in-process only)."""
    from prefect.settings import get_current_settings

    monkeypatch.setenv("PREFECT_API_URL", str(get_current_settings().api.url))


@pytest.mark.heavy
@pytest.mark.prefect
def test_a_cycle_killed_mid_way_is_rerun_to_completion_with_nothing_twice(ops: Ops, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL once the cycle has trained (its model registered), while it forecasts; the rerun of the day
    completes and adds each row once."""
    _prefect_env(monkeypatch)
    ops.drop_day(ops.day(HISTORY))
    ops.weather.today = ops.day(HISTORY) + pd.Timedelta(days=1)
    store = ops.store()
    child = _child(_daily_code(ops, HISTORY))
    deadline = time.monotonic() + 300
    while store.model_versions().empty and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert child.poll() is None, child.communicate()[0][-3000:]  # still running: killed mid-way
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)

    summary = run_daily(ops, HISTORY)
    fc = summary["forecast"]
    assert fc["status"] in ("complete", "exists") and len(store.latest_forecasts()) == 2 * 3 * 3, (
        str(fc), str(summary["training"]), str(store.model_versions().to_dict("records")))
    runs = store.forecast_runs()
    assert (runs["status"] == "complete").sum() == 1, runs
    state = landing_state(ops.home / "landing")
    assert state["waiting"] == [] and not state["rejected"], state
    assert_no_duplicates(store)


@pytest.mark.heavy
@pytest.mark.prefect
def test_the_same_day_run_by_two_processes_at_once_issues_once(ops: Ops, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _prefect_env(monkeypatch)
    ops.drop_day(ops.day(HISTORY))
    ops.weather.today = ops.day(HISTORY) + pd.Timedelta(days=1)
    files = landing_state(ops.home / "landing")["waiting"]
    code = _daily_code(ops, HISTORY)
    first, second = _child(code), _child(code)
    outputs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert 0 in (first.returncode, second.returncode), [o[-3000:] for o in outputs]
    store = ops.store()
    assert len(store.latest_forecasts()) == 2 * 3 * 3
    runs = store.forecast_runs()
    assert (runs["status"] == "complete").sum() == 1, runs
    state = landing_state(ops.home / "landing")
    assert state["waiting"] == [] and not state["rejected"] and sorted(state["processed"]) == sorted(files), state
    assert_no_duplicates(store)
    again = run_daily(ops, HISTORY)  # and a third run, in turn, finds everything done
    assert again["forecast"]["status"] == "exists", again["forecast"]
    assert_no_duplicates(store)

