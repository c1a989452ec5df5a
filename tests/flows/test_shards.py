"""The daily cycle sharded across two real process workers (Prefect test server, TimescaleDB, apprise to a
receiver on 127.0.0.1): one shard fails once (a drill file, the real mechanism operators use), the retry runs
that shard alone, the day's forecasts, alerts, scores and messages equal an unsharded run of the same day on
a copy of the same database, and a rerun of the day starts no shard and changes nothing.

Time budget: about 90 s on the 2-core CI machine (measured figure in docs/operations-guide.md, "Sizing").
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from smmdn.config import get_settings
from smmdn.demo.receiver import AlertReceiver
from tests.flows.conftest import HISTORY, TINY, Ops, run_daily
from tests.flows.test_deployments import _create_pool, _stop
from tests.helpers.alert_world import routes_file

pytestmark = [pytest.mark.postgres, pytest.mark.prefect, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
VALUES = ["mean", "sd", "q05", "q25", "q50", "q75", "q95"]


def _day_state(url: str, issue: pd.Timestamp) -> dict[str, Any]:
    """What a day leaves in the store, in comparable form (ids and clocks of the runs left out)."""
    from smmdn.store import Store
    from smmdn.store import alerts as db

    store = Store(url)
    try:
        fc = store.read_forecasts(issue_time=issue).sort_values(["site", "depth_cm", "valid_time"])
        alerts = db.read_alerts(store)
        with store.engine.connect() as conn:
            scores = conn.execute(sa.text("SELECT count(*), coalesce(sum(crps), 0) FROM verification")).one()
            outbox = conn.execute(sa.text("SELECT count(*) FROM alert_outbox")).scalar_one()
        return {
            "forecasts": fc.reset_index(drop=True),
            "alerts": sorted((a.kind, a.site, float(a.depth_cm), a.sensor, a.status) for a in alerts.itertuples()),
            "scores": (int(scores[0]), float(scores[1])), "outbox": int(outbox),
            "counts": {t: store.count(t) for t in ("forecasts", "forecast_runs", "alerts", "verification",
                                                   "watermarks")},
            "runs": store.forecast_runs(),
        }
    finally:
        store.dispose()


def _shard_runs() -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["shard"])))

    return asyncio.run(read())


def _titles(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((m["path"], m["payload"]["title"]) for m in messages)


def test_sharded_day_retries_the_failed_shard_alone_and_equals_the_unsharded_day(  # type: ignore[no-untyped-def]
        ops: Ops, pg_cluster, tmp_path, monkeypatch) -> None:
    from prefect.settings import PREFECT_API_URL

    from flows.daily import daily
    from flows.ingest import ingest
    from flows.shard import shard
    from smmdn.cycle.day import resolve_day
    from smmdn.cycle.shards import drill_path, registry_shards
    from smmdn.store import Store

    rx = AlertReceiver(tmp_path / "alerts.jsonl").start()
    sites = ops.network.sites
    teams = {f"field-{s.site[-1]}": [f"team:field-{s.site[-1]}"] for s in sites} | {"ops": []}
    monkeypatch.setenv("SMMDN_ALERT_ROUTES_FILE", str(routes_file(tmp_path / "routes.yaml", rx, teams,
                                                                  operators="ops")))
    get_settings.cache_clear()
    workers: list[subprocess.Popen] = []
    copy = f"{sa.engine.make_url(ops.url).database}_sharded"
    try:
        # the same history in both databases: a cold-start cycle, then the next day's data ingested
        run_daily(ops, HISTORY + 1)
        day = ops.day(HISTORY + 2)
        cycle = resolve_day(day.date().isoformat(), get_settings())
        ops.drop_day(day)
        ops.weather.today = day + pd.Timedelta(days=1)
        probe = pd.date_range(day, periods=24, freq="h", tz="UTC")  # a fourth probe far too wet: an alert
        ops.store().write_observations(pd.DataFrame({"time": probe, "site": sites[0].site, "depth_cm": 5.0,
                                                     "sensor": "d", "vwc": np.full(24, 0.58)}), source="test")
        ingest(now=cycle.now.isoformat())
        sharded_url = pg_cluster.create_database(copy, template=sa.engine.make_url(ops.url).database)

        # the shard pool: two process workers, whose shards write to the copy
        monkeypatch.setenv("SMMDN_DATABASE_URL", sharded_url)
        monkeypatch.setenv("SMMDN_SHARD_SITES", "1")
        get_settings.cache_clear()
        _create_pool("cpu", concurrency=2)
        shard.from_source(source=str(REPO), entrypoint="flows/shard.py:shard").deploy(
            name="daily-shard", work_pool_name="cpu", print_next_steps=False)
        env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "CUDA_VISIBLE_DEVICES": "",
               "PREFECT_WORKER_QUERY_SECONDS": "1"}  # poll every second (default 10 s): shards start sooner
        for _ in range(2):
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "prefect", "worker", "start", "--pool", "cpu", "--type", "process",
                 "--limit", "1"], env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True))

        # the unsharded day on the original database (in this process)
        monkeypatch.setenv("SMMDN_DATABASE_URL", ops.url)
        monkeypatch.setenv("SMMDN_SHARD_SITES", "0")
        get_settings.cache_clear()
        seen = len(rx.messages())
        kw = {"history_days": HISTORY + 30, "train_overrides": TINY, "skip_ingest": True, "skip_training": True}
        plain = daily(day=day.date().isoformat(), **kw)
        assert plain["alerts"]["result"]["opened"] >= 1 and "shards" not in plain
        plain_messages = rx.messages()[seen:]
        expected = _day_state(ops.url, cycle.issue)

        # the sharded day on the copy: two shards of one site, the second fails its first attempt
        monkeypatch.setenv("SMMDN_DATABASE_URL", sharded_url)
        monkeypatch.setenv("SMMDN_SHARD_SITES", "1")
        get_settings.cache_clear()
        shards = registry_shards(Store(sharded_url), get_settings())
        assert [s.sites for s in shards] == [(sites[0].site,), (sites[1].site,)]
        drill = drill_path(get_settings(), shards[1].id)
        drill.parent.mkdir(parents=True, exist_ok=True)
        drill.touch()
        seen = len(rx.messages())
        summary = daily(day=day.date().isoformat(), remote_shards=True, **kw)
        sharded_messages = rx.messages()[seen:]
        got = _day_state(sharded_url, cycle.issue)

        assert not drill.exists()  # the failing attempt took the drill
        assert summary["shards"]["submitted"] == [{"shard": shards[0].id, "attempt": 1},
                                                  {"shard": shards[1].id, "attempt": 1},
                                                  {"shard": shards[1].id, "attempt": 2}]  # the retry: alone
        assert summary["shards"]["failed"] == {} and summary["shards"]["pending"] == 0
        runs = _shard_runs()
        states = sorted((r.parameters["shard_id"], r.parameters["attempt"], r.state.type.value) for r in runs)
        assert states == [(shards[0].id, 1, "COMPLETED"), (shards[1].id, 1, "FAILED"),
                          (shards[1].id, 2, "COMPLETED")]
        failed_run = next(r for r in runs if r.state.type.value == "FAILED")
        assert "drill" in (failed_run.state.message or "")

        # one run per shard, each complete; the same forecasts, alerts, scores and messages as unsharded
        day_runs = got["runs"].loc[got["runs"]["issue_time"] == cycle.issue]
        assert sorted(day_runs["status"]) == ["complete", "complete"]
        assert all(r.endswith(f"-s{s.id}") for r, s in zip(sorted(day_runs["run_id"]), shards, strict=True))
        a, b = expected["forecasts"], got["forecasts"]
        assert len(a) == len(b) == 2 * 3 * 3  # 2 sites x 3 depths x 3 leads
        assert (a[["site", "depth_cm", "valid_time", "lead", "model_version"]].to_numpy()
                == b[["site", "depth_cm", "valid_time", "lead", "model_version"]].to_numpy()).all()
        np.testing.assert_allclose(b[VALUES].to_numpy(float), a[VALUES].to_numpy(float), rtol=1e-6, atol=1e-9)
        assert got["alerts"] == expected["alerts"] and any(k == "sensor_fault" for k, *_ in got["alerts"])
        assert got["scores"][0] == expected["scores"][0] > 0
        assert got["scores"][1] == pytest.approx(expected["scores"][1], rel=1e-6)
        assert got["outbox"] == expected["outbox"]
        assert _titles(sharded_messages) == _titles(plain_messages) and sharded_messages
        assert summary["alerts"]["result"]["opened"] == plain["alerts"]["result"]["opened"]
        assert summary["forecast"]["rows"] == plain["forecast"]["rows"] == 18

        # a rerun of the day: no shard submitted, nothing new anywhere
        again = daily(day=day.date().isoformat(), remote_shards=True, **kw)
        assert again["shards"]["submitted"] == [] and again["forecast"]["status"] == "exists"
        assert len(_shard_runs()) == 3
        after = _day_state(sharded_url, cycle.issue)
        assert after["counts"] == got["counts"] and after["outbox"] == got["outbox"]
        assert after["alerts"] == got["alerts"] and after["scores"] == got["scores"]
        assert len(rx.messages()) == seen + len(sharded_messages)
    finally:
        for worker in workers:
            _stop(worker)
        rx.stop()
        pg_cluster.drop_database(copy)
