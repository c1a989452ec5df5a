"""The daily cycle in shards: which sites each shard runs, what a finished shard leaves behind, and the drill.

Why by site: every per-site step of the day (forecast, detection, scoring) reads and writes only its own
sites' rows, so shards share nothing but the champion and the network-wide checks, which the parent runs
once. Shards are contiguous chunks of the sorted site ids (``Settings.shard_sites`` each), named by their
position and a digest of their sites: a registry that gains or loses a site gives new names, so a day run
with the old split is never taken for done with the new one.

A shard that finished an issue day records it in the store's watermarks (``("daily-shard", "<issue day>/
<shard id>")``). The parent skips a recorded shard, so a failed shard is retried alone and a rerun of the
day starts no shard at all. Nothing here imports Prefect: the flows (``flows/shard.py``) call it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from smmdn.config import Settings
from smmdn.errors import InputError

if TYPE_CHECKING:
    from smmdn.store import Store

WATERMARK_SOURCE = "daily-shard"
DRILL_DIR = "drills"  # under Settings.path("data"): one file per shard that must fail its next attempt


@dataclass(frozen=True)
class Shard:
    """One shard: its id (``003-1a2b3c4d``: position, then a digest of its sites) and its sites."""

    id: str
    sites: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "sites": list(self.sites)}


class ShardDrill(RuntimeError):
    """Raised by a shard whose drill file was present (a rehearsed failure: the retry must find it gone)."""


def plan_shards(sites: Iterable[str], per_shard: int) -> list[Shard]:
    """Split ``sites`` (deduplicated, sorted) into chunks of ``per_shard``; ``per_shard <= 0``: no shards."""
    if per_shard < 0:
        raise InputError(f"shard size {per_shard} is negative", where="SMMDN_SHARD_SITES",
                         fix="give 0 (no sharding) or the number of sites per shard")
    ordered = sorted({str(s) for s in sites})
    if per_shard == 0 or not ordered:
        return []
    chunks = [tuple(ordered[i:i + per_shard]) for i in range(0, len(ordered), per_shard)]
    return [Shard(f"{n:03d}-{_digest(chunk)}", chunk) for n, chunk in enumerate(chunks, start=1)]


def _digest(sites: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sites).encode()).hexdigest()[:8]


def registry_shards(store: Store, settings: Settings) -> list[Shard]:
    """The shards of the sites the store knows (ingest registered the registry's sites before this)."""
    if settings.shard_sites == 0:
        return []
    known = store.read_sites()
    return plan_shards(known["site"].astype(str) if not known.empty else [], settings.shard_sites)


def watermark_key(issue: str | pd.Timestamp, shard_id: str) -> tuple[str, str]:
    """The ledger key of one shard's issue day (the store's watermark API: source, key)."""
    return WATERMARK_SOURCE, f"{pd.Timestamp(issue).date().isoformat()}/{shard_id}"


def shard_done(store: Store, issue: str | pd.Timestamp, shard_id: str) -> pd.Timestamp | None:
    """When the shard finished ``issue`` (None: not yet, or it failed)."""
    return store.get_watermark(*watermark_key(issue, shard_id))


def mark_shard_done(store: Store, issue: str | pd.Timestamp, shard_id: str, at: pd.Timestamp) -> None:
    """Record the shard's issue day as finished, after every one of its steps succeeded."""
    store.set_watermark(*watermark_key(issue, shard_id), at)


def pending(store: Store, issue: str | pd.Timestamp, shards: Sequence[Shard]) -> list[Shard]:
    """The shards of ``issue`` not recorded as finished."""
    return [s for s in shards if shard_done(store, issue, s.id) is None]


def drill_path(settings: Settings, shard_id: str) -> Path:
    """The drill file: present, the shard's next attempt raises ``ShardDrill`` and removes it."""
    return settings.path("data") / DRILL_DIR / f"fail-{shard_id}"


def take_drill(settings: Settings, shard_id: str) -> None:
    """Fail this attempt if a drill was laid for the shard (operators rehearse a failed shard; the tests
    inject one the same way). The file is removed first, so exactly one attempt fails."""
    path = drill_path(settings, shard_id)
    try:
        path.unlink()
    except FileNotFoundError:
        return
    raise ShardDrill(f"shard {shard_id}: drill file {path} found (removed): this attempt fails on purpose")


def forecast_run_suffix(shard_id: str) -> str:
    """What a shard's forecast run id ends with (``<issue>-<version>-s<shard id>``): one run per shard."""
    return f"s{shard_id}"


def combine_counts(parts: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[str, int]:
    """The sum over shards of each count in ``keys`` (a missing count is 0)."""
    return {k: int(sum(int((p or {}).get(k) or 0) for p in parts)) for k in keys}
