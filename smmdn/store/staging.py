"""A file's observations staged chunk by chunk, then published with one merge, inside one transaction.

Why: a logger file too big to hold in memory is parsed and validated a chunk at a time, but it must
still be stored all or nothing. Each chunk is copied into a temporary table of the caller's
transaction (nothing is visible to anyone else, and the hypertable is not touched yet); ``publish``
merges the whole table into ``observations`` with one statement. A failure anywhere rolls the
transaction back and the temporary table with it. Keys repeated across chunks (each chunk's own
duplicates were handled by validation) go to quarantine exactly as validation would send them:
identical copies after the first as ``duplicate``, conflicting values all as
``duplicate_conflicting_values``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pandas as pd
import sqlalchemy as sa

from smmdn.store import tables as T
from smmdn.store.bulk import WriteResult, copy_frame, merge_staged
from smmdn.store.common import require_sites
from smmdn.store.frames import observations_for_write

if TYPE_CHECKING:
    from smmdn.store.store import Store

KEY = ("site", "depth_cm", "sensor", "time")
_names = itertools.count()


class ObservationStage:
    """Observations of one file, staged in a temporary table of the transaction ``tx``."""

    def __init__(self, tx: Store, source: str) -> None:
        if tx._conn is None:
            raise RuntimeError("staging needs a transaction: use `with store.transaction() as tx`")
        self.conn: sa.Connection = tx._conn
        self.tx = tx
        self.source = source
        self.chunks = 0
        self.rows = 0
        self._columns: list[str] | None = None
        self._table: sa.Table | None = None
        self._known_sites: set[str] = set()
        self._spans: dict[tuple[str, float, str], list[tuple[int, int]]] = {}  # per series: chunks' time spans
        self._now = datetime.now(UTC)
        self.name = f"stage_obs_{os.getpid()}_{next(_names)}"

    def _create(self, columns: list[str]) -> sa.Table:
        cols = [sa.Column(c, T.observations.c[c].type) for c in columns] + [sa.Column("chunk", sa.Integer)]
        table = sa.Table(self.name, sa.MetaData(), *cols, prefixes=["TEMPORARY"], postgresql_on_commit="DROP")
        table.create(self.conn)
        return table

    def add(self, frame: pd.DataFrame) -> int:
        """Stage one chunk of validated observations (``quality_flag`` included); returns its row count."""
        if frame.empty:
            return 0
        out = observations_for_write(frame)
        out["source"] = self.source
        out["ingested_at"] = self._now
        out["updated_at"] = self._now
        if self._columns is None:
            flags = [c for c in T.OBSERVATION_FLAG_COLUMNS if c in out.columns]
            self._columns = ["time", "site", "depth_cm", "sensor", "vwc", "quality_flag", *flags,
                             "source", "ingested_at", "updated_at"]
            self._table = self._create(self._columns)
        assert self._table is not None
        new_sites = out["site"][~out["site"].astype(str).isin(self._known_sites)]
        if not new_sites.empty:
            require_sites(self.conn, new_sites, "observations")
            self._known_sites |= set(map(str, pd.unique(new_sites)))
        out["chunk"] = self.chunks
        ns = out["time"].astype("int64")
        spans = ns.groupby([out["site"].astype(str), out["depth_cm"], out["sensor"].astype(str)]).agg(["min", "max"])
        for series, (lo, hi) in zip(spans.index, spans.to_numpy().tolist(), strict=True):
            self._spans.setdefault(series, []).append((lo, hi))
        for column in self._columns:
            if column not in out.columns:
                out[column] = None
        copy_frame(self.conn, self._table, out, [*self._columns, "chunk"], T.observations)
        self.chunks += 1
        self.rows += len(out)
        return len(out)

    def _spans_overlap(self) -> bool:
        """True when two chunks cover overlapping times of one series (only then can a key repeat).

        Why: a logger file is in time order, so this spares the grouping of every staged row.
        """
        for spans in self._spans.values():
            ordered = sorted(spans)
            if any(later[0] <= earlier[1] for earlier, later in itertools.pairwise(ordered)):
                return True
        return False

    def _repeated_keys(self) -> int:
        """Keys staged by more than one chunk → a temporary table of them; how many there are."""
        keys = ", ".join(KEY)
        dup = f"{self.name}_dup"
        self.conn.execute(sa.text(
            f"CREATE TEMPORARY TABLE {dup} AS SELECT {keys}, min(chunk) AS first_chunk, "
            f"count(DISTINCT vwc) AS values_n FROM {self.name} GROUP BY {keys} HAVING count(*) > 1"))
        return int(self.conn.execute(sa.text(f"SELECT count(*) FROM {dup}")).scalar_one())

    def _quarantine_repeats(self) -> int:
        """Move rows whose key another chunk staged too into quarantine (read one chunk at a time)."""
        dup = f"{self.name}_dup"
        match = " AND ".join(f"d.{k} = s.{k}" for k in KEY)
        moved = 0
        for chunk in range(self.chunks):
            rows = self.conn.execute(sa.text(
                f"SELECT s.time, s.site, s.depth_cm, s.sensor, s.vwc, CASE WHEN d.values_n > 1 "
                f"THEN 'duplicate_conflicting_values' ELSE 'duplicate' END AS reason FROM {self.name} s "
                f"JOIN {dup} d ON {match} WHERE s.chunk = :chunk AND (d.values_n > 1 OR s.chunk > d.first_chunk)"),
                {"chunk": chunk}).all()
            if rows:
                frame = pd.DataFrame(rows, columns=["time", "site", "depth_cm", "sensor", "vwc", "reason"])
                frame["time"] = pd.to_datetime(frame["time"], utc=True)
                moved += self.tx.write_quarantine(frame, table="observations", source=self.source)
        outer = " AND ".join(f"d.{k} = {self.name}.{k}" for k in KEY)
        self.conn.execute(sa.text(
            f"DELETE FROM {self.name} WHERE EXISTS (SELECT 1 FROM {dup} d WHERE {outer} "
            f"AND (d.values_n > 1 OR {self.name}.chunk > d.first_chunk))"))
        self.conn.execute(sa.text(f"DROP TABLE {dup}"))
        return moved

    def publish(self) -> tuple[WriteResult, int]:
        """Merge everything staged into ``observations`` → (write counts, rows sent to quarantine as repeats)."""
        if self._table is None or self._columns is None:
            return WriteResult(), 0
        overlap = self.chunks > 1 and self._spans_overlap()
        repeats = self._quarantine_repeats() if overlap and self._repeated_keys() else 0
        result = merge_staged(self.conn, T.observations, self.name, self._columns, list(KEY),
                              ["vwc", "quality_flag", *self._columns[6:-3], "source"], ["updated_at"])
        self.drop()
        return result, repeats

    def drop(self) -> None:
        """Remove the staging table (PostgreSQL drops it at commit anyway)."""
        if self._table is not None:
            self.conn.execute(sa.text(f"DROP TABLE IF EXISTS {self.name}"))
            self._table = None


@contextmanager
def staged_observations(tx: Store, source: str) -> Iterator[ObservationStage]:
    """An ``ObservationStage`` that leaves no table behind, also when the caller's block fails."""
    stage = ObservationStage(tx, source)
    try:
        yield stage
    except BaseException:
        if not tx.is_postgres:  # PostgreSQL undoes the CREATE with the transaction; SQLite keeps temp tables
            with suppress(Exception):  # the connection itself failed: it is discarded with its temp tables
                stage.drop()
        raise
