"""Detection and verification run per shard of sites (``sites=``) then once for the network (``sites=[]``) leave
the same alerts, outbox rows and scores as one run over every site; a shard never touches another shard's
alerts. Two stores of the same world (tests/helpers/alert_world.py), day after day, on TimescaleDB."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from smmdn.alerts import step
from smmdn.config import Settings
from smmdn.cycle.shards import plan_shards
from smmdn.demo.receiver import AlertReceiver
from smmdn.store import Store
from smmdn.store import alerts as db
from smmdn.store.verification import read_verification
from smmdn.verify import verification
from tests.helpers import alert_world as W

SITES = ("S1", "S2", "S3")
TAGS = {"S1": ["team:north"], "S2": ["team:south"], "S3": ["team:south"]}


def _world(store: Any) -> W.World:
    world = W.build(store, sites=SITES, days=16, tags=TAGS)
    W.write_forecasts(world, range(16))

    def bend(site: str, depth: float, sensor: str, day: pd.Timestamp, values: Any) -> Any:
        if site == "S1" and sensor == "c" and day >= world.day(10):  # a drifting probe: a sensor fault
            return values + 0.05 + 0.01 * (day - world.day(10)).days
        return values

    W.observe(world, range(10), bend=bend)
    W.observe(world, range(10, 16), bend=bend, sensors=("a", "c"))  # S1..S3 sensor b silent: missing alerts
    return world


def _alerts(store: Any, sites: set[str] | None = None) -> list[tuple]:
    found = db.read_alerts(store)
    rows = [(a.kind, a.site, float(a.depth_cm), a.sensor, a.status, str(a.window_start), str(a.escalated_at),
             str(a.resolved_at)) for a in found.itertuples()]
    return sorted(r for r in rows if sites is None or r[1] in sites)


def _outbox(store: Any) -> list[tuple]:
    box = db.read_outbox(store)
    return sorted((str(r.event), str(r.team), str(r.title)) for r in box.itertuples()) if len(box) else []


def _scores(store: Any) -> pd.DataFrame:
    v = read_verification(store)
    return v.sort_values(["site", "depth_cm", "sensor", "issue_time", "valid_time"]).reset_index(drop=True)


@pytest.mark.postgres
def test_shards_then_network_equal_one_run_over_every_site(pg_url: str, pg_empty_url: str, tmp_path: Path) -> None:
    def store_at(url: str) -> Any:
        s = Store(url)
        s.init()
        return s

    whole, parts = store_at(pg_url), store_at(pg_empty_url)
    rx = AlertReceiver(tmp_path / "received.jsonl").start()
    try:
        routes = W.routes_file(tmp_path / "routes.yaml", rx, {"north": ["team:north"], "south": ["team:south"],
                                                              "ops": []}, operators="ops")
        cfg = Settings(_env_file=None, home=tmp_path, alert_routes_file=routes, alert_escalate_after_hours=48,
                       drift_min_pairs=1)
        worlds = _world(whole), _world(parts)
        shards = plan_shards(SITES, 2)
        assert [s.sites for s in shards] == [("S1", "S2"), ("S3",)]
        for day in range(9, 14):
            now = worlds[0].now_after(day)
            step.detect(whole, now, cfg)
            verification.verify(whole, now, cfg)
            for shard in reversed(shards):  # S3 first: the S1 alerts' clocks are not its business
                others = set(SITES) - set(shard.sites)
                before = _alerts(parts, others)
                step.detect(parts, now, cfg, sites=shard.sites)
                verification.score(parts, now, cfg, sites=shard.sites)
                assert _alerts(parts, others) == before, (day, shard.id)
            step.detect(parts, now, cfg, sites=[])
            verification.verify(parts, now, cfg, sites=[])
            assert _alerts(parts) == _alerts(whole), day
            assert _outbox(parts) == _outbox(whole), day
        kinds = {a[0] for a in _alerts(whole)}
        assert {"sensor_fault", "missing"} <= kinds  # the world did raise alerts of both kinds
        assert any(a[6] != "None" for a in _alerts(whole))  # and one was escalated (by its own shard)
        a, b = _scores(whole), _scores(parts)
        assert len(a) == len(b) > 0
        pd.testing.assert_frame_equal(a.drop(columns=["scored_at"], errors="ignore"),
                                      b.drop(columns=["scored_at"], errors="ignore"))
        drift = verification.drift_report(parts, now, cfg).to_dict()
        assert drift == verification.drift_report(whole, now, cfg).to_dict()
        assert step.detect(parts, now, cfg, sites=shards[0].sites).observations == 0  # a rerun: nothing new
    finally:
        rx.stop()
        whole.dispose()
        parts.dispose()
