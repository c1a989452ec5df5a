"""Flow tests: a simulated network served on 127.0.0.1, real TimescaleDB, and the session's one Prefect test
harness (``prefect_harness``, tests/conftest.py).

Tiny model settings keep every training under a few seconds on 2 cores.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

TINY = {"hidden": 8, "seq_len": 30, "warmup": 5, "max_epochs": 3, "batch_size": 32, "valid_steps": 10,
        "fine_tune_epochs": 1, "patience": 2, "min_epochs": 1, "chunks_per_location": 4, "device": "cpu",
        "calibrate": False}
START = pd.Timestamp("2024-03-01", tz="UTC")
HISTORY = 36  # days of logger history before the first cycle


@pytest.fixture(scope="session")
def network() -> Any:
    from smmdn.demo.simulate import simulate_network

    return simulate_network(2, START, HISTORY + 30, failure_day=HISTORY + 2, seed=3)


@dataclass
class Ops:
    home: Path
    weather: Any
    network: Any
    url: str

    def drop_day(self, day: pd.Timestamp, days: int = 1) -> None:
        from smmdn.config import get_settings
        from smmdn.demo.feeds import write_toa5_day

        for s in self.network.sites:
            write_toa5_day(get_settings().path("landing"), s.site, self.network.readings, day, days=days)

    def day(self, n: int) -> pd.Timestamp:
        return START + pd.Timedelta(days=n)

    def store(self) -> Any:
        from smmdn.store import Store

        return Store(self.url)


@pytest.fixture
def ops(prefect_harness, network, pg_url, tmp_path, monkeypatch) -> Iterator[Ops]:  # type: ignore[no-untyped-def]
    """Settings pointing at a fresh TimescaleDB database, a landing dir and the loopback weather server."""
    from smmdn.config import get_settings
    from smmdn.demo.feeds import WeatherServer, registry_yaml

    weather = WeatherServer(network.sites, network.weather, seed=3).start()
    (tmp_path / "registry.yaml").write_text(registry_yaml(network.sites))
    env = {"SMMDN_HOME": str(tmp_path), "SMMDN_DATABASE_URL": pg_url, "SMMDN_REGISTRY_FILE": str(tmp_path /
           "registry.yaml"), "SMMDN_HOLDOUT_DAYS": "8", "SMMDN_FORECAST_HORIZON": "3", "SMMDN_HTTP_RETRIES": "1",
           "SMMDN_HTTP_BACKOFF_S": "0.001", "SMMDN_FULL_RETRAIN_WEEKDAY": "6", **weather.settings_env()}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    ops = Ops(tmp_path, weather, network, pg_url)
    ops.drop_day(START, days=HISTORY)
    try:
        yield ops
    finally:
        weather.stop()
        get_settings.cache_clear()


def run_daily(ops: Ops, n: int, **kwargs: Any) -> dict[str, Any]:
    """Drop day ``n``'s logger file, advance the weather server and run the real daily flow for it."""
    from flows.daily import daily

    day = ops.day(n)
    ops.drop_day(day)
    ops.weather.today = day + pd.Timedelta(days=1)
    return daily(day=day.date().isoformat(), history_days=HISTORY + 30, train_overrides=TINY, **kwargs)


def artifacts(key: str) -> list[Any]:
    """Artifacts with this key, newest first: the harness is shared by the whole session, so several flow runs
    (and tests) publish the same key and an unsorted read returns any of them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                                               sort=ArtifactSort.CREATED_DESC)

    return asyncio.run(read())


def flow_run_logs(name: str) -> tuple[list[Any], list[Any]]:
    """(flow runs called ``name``, the log records of the newest of them and of its task runs)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName, LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # log records travel to the server in batches: send what is queued first

    async def read() -> tuple[list[Any], list[Any]]:
        async with get_client() as client:
            runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])),
                                               sort=FlowRunSort.START_TIME_DESC)
            if not runs:
                return runs, []
            logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[runs[0].id])))
            return runs, logs

    return asyncio.run(read())


def task_run_logs(name: str) -> tuple[list[Any], list[Any]]:
    """(task runs called ``name``, newest first; the log records of the newest one and of the task runs nested
    in it): the daily cycle's ingest, validate, train and forecast steps are task runs of its flow run, each
    with its own logs (ingest's per-source tasks are nested in it, Prefect's ``__parents__`` input)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        LogFilter,
        LogFilterTaskRunId,
        TaskRunFilter,
        TaskRunFilterName,
    )
    from prefect.client.schemas.sorting import TaskRunSort
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()

    async def read() -> tuple[list[Any], list[Any]]:
        async with get_client() as client:
            runs = await client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=[name])),
                                               sort=TaskRunSort.EXPECTED_START_TIME_DESC)
            if not runs:
                return runs, []
            siblings = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id={"any_": [runs[0].flow_run_id]}), limit=200)
            mine = {runs[0].id}
            grown = True
            while grown:  # the nested runs, at any depth
                grown = False
                for t in siblings:
                    parents = {getattr(p, "id", None) for p in (t.task_inputs or {}).get("__parents__", [])}
                    if t.id not in mine and parents & mine:
                        mine.add(t.id)
                        grown = True
            logs = await client.read_logs(log_filter=LogFilter(task_run_id=LogFilterTaskRunId(any_=list(mine))))
            return runs, logs

    return asyncio.run(read())
