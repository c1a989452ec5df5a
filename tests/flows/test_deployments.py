"""prefect.yaml loads (schedules, timezones, pools, entrypoints); a real process worker on the ``gpu`` pool
runs ``train`` for a parent that calls it with run_deployment, and the parent gets the result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.flows.conftest import HISTORY, TINY, Ops

REPO = Path(__file__).resolve().parents[2]


def test_prefect_yaml_deployments_have_schedules_pools_and_load() -> None:
    from prefect.flows import load_flow_from_entrypoint

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    deps = {d["name"]: d for d in spec["deployments"]}
    assert {"daily", "daily-shard", "weekly-retrain", "train", "backfill"} <= set(deps)
    assert deps["daily"]["work_pool"]["name"] == "cpu" and deps["train"]["work_pool"]["name"] == "gpu"
    assert deps["daily-shard"]["work_pool"]["name"] == "cpu" and not deps["daily-shard"]["schedules"]
    assert deps["weekly-retrain"]["work_pool"]["name"] == "gpu"
    for name in ("daily", "weekly-retrain"):
        (sched,) = deps[name]["schedules"]
        assert sched["timezone"] and len(sched["cron"].split()) == 5
    assert not deps["backfill"]["schedules"]  # on demand only
    for dep in deps.values():
        flow = load_flow_from_entrypoint(str(REPO / dep["entrypoint"]))
        assert flow.name == dep["entrypoint"].rsplit(":", 1)[1]
        params = set(flow.parameters.properties)
        assert set(dep.get("parameters") or {}) <= params, dep["name"]


def _create_pool(name: str, concurrency: int) -> None:
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    async def create() -> None:
        async with get_client() as client:
            await client.create_work_pool(WorkPoolCreate(name=name, type="process", concurrency_limit=concurrency),
                                          overwrite=True)

    asyncio.run(create())


def _stop(worker: subprocess.Popen) -> None:
    """Stop the worker's process group: SIGTERM, then SIGKILL if it is still shutting down after 30 s.

    Why: under load the worker's graceful shutdown can outlast the wait; the test's result is already
    decided by then, and a worker left behind would hold the pool for the rest of the session.
    """
    os.killpg(worker.pid, signal.SIGTERM)
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)


@pytest.mark.postgres
@pytest.mark.prefect
@pytest.mark.slow
def test_gpu_pool_worker_runs_train_for_the_parent(ops: Ops) -> None:
    from prefect import flow
    from prefect.settings import PREFECT_API_URL

    from flows.train import run_train, train

    ops.weather.today = ops.day(HISTORY + 1)
    from smmdn.config import get_settings
    from smmdn.ingest import ingest_forcing, ingest_landing, load_sites, registry_from_settings

    cfg = get_settings()
    store, reg = ops.store(), registry_from_settings(cfg)
    load_sites(store, reg)
    ingest_landing(store, cfg, reg)
    ingest_forcing(store, cfg, reg, api="historical-forecast", since=ops.day(-1))
    _create_pool("gpu", concurrency=1)

    deployment_id = train.from_source(source=str(REPO), entrypoint="flows/train.py:train").deploy(
        name="train", work_pool_name="gpu", print_next_steps=False)
    assert deployment_id
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "CUDA_VISIBLE_DEVICES": ""}
    worker = subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", "gpu", "--type", "process", "--limit", "1"],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        @flow(name="parent")
        def parent() -> dict:
            return run_train({"day": ops.day(HISTORY).date().isoformat(), "kind": "full", "history_days": 90,
                              "train_overrides": TINY}, remote=True)

        started = time.monotonic()
        outcome = parent()
        assert time.monotonic() - started < 300
    finally:
        _stop(worker)
    assert outcome["status"] == "promoted" and outcome["device"] == "cpu"
    assert store.champion()["version"] == outcome["version"]  # the worker's run wrote to the same database
