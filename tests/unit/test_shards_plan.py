"""Shard planning (smmdn.cycle.shards): chunks of sorted sites, names that change with their sites, the
per-shard watermark, and the drill that fails exactly one attempt."""

from __future__ import annotations

from pathlib import Path

import pytest

from smmdn.config import Settings
from smmdn.cycle.shards import (
    ShardDrill,
    combine_counts,
    drill_path,
    mark_shard_done,
    pending,
    plan_shards,
    take_drill,
    watermark_key,
)
from smmdn.errors import InputError


def test_sites_are_split_into_sorted_chunks_and_zero_means_no_shards() -> None:
    shards = plan_shards(["S5", "S1", "S3", "S2", "S4", "S1"], 2)
    assert [s.sites for s in shards] == [("S1", "S2"), ("S3", "S4"), ("S5",)]
    assert [s.id[:4] for s in shards] == ["001-", "002-", "003-"]
    assert plan_shards(["S1", "S2"], 0) == [] and plan_shards([], 3) == []
    with pytest.raises(InputError, match="SMMDN_SHARD_SITES"):
        plan_shards(["S1"], -1)


def test_a_shard_is_named_by_its_sites() -> None:
    before = plan_shards(["S1", "S2", "S3", "S4"], 2)
    assert plan_shards(["S4", "S3", "S2", "S1"], 2) == before  # the order given does not matter
    after = plan_shards(["S1", "S2", "S2b", "S3", "S4"], 2)  # a new site: later shards get new names
    assert after[0].id == before[0].id and after[1].id != before[1].id
    assert watermark_key("2024-05-01T00:00:00+00:00", before[0].id) == ("daily-shard", f"2024-05-01/{before[0].id}")


def test_a_finished_shard_is_no_longer_pending(sqlite_store) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    shards = plan_shards(["S1", "S2", "S3"], 1)
    assert pending(sqlite_store, "2024-05-01", shards) == shards
    mark_shard_done(sqlite_store, "2024-05-01", shards[1].id, pd.Timestamp("2024-05-02T06:00Z"))
    assert pending(sqlite_store, "2024-05-01", shards) == [shards[0], shards[2]]
    assert pending(sqlite_store, "2024-05-02", shards) == shards  # per issue day


def test_the_drill_fails_one_attempt_and_is_gone(tmp_path: Path) -> None:
    cfg = Settings(_env_file=None, home=tmp_path)
    take_drill(cfg, "001-abc")  # no drill: nothing happens
    path = drill_path(cfg, "001-abc")
    path.parent.mkdir(parents=True)
    path.touch()
    with pytest.raises(ShardDrill, match="001-abc"):
        take_drill(cfg, "001-abc")
    assert not path.exists()
    take_drill(cfg, "001-abc")  # the retry passes


def test_counts_add_up_over_shards() -> None:
    assert combine_counts([{"rows": 3, "series": 1}, {"rows": 4}, {}], ("rows", "series")) == {"rows": 7, "series": 1}
