"""Weather forcing: observed, archive and forecast kinds in one long table, read back wide with the
best kind per hour (observed > archive > the latest forecast issued by ``as_of``).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import sqlalchemy as sa

from smmdn.errors import InputError
from smmdn.store import tables as T
from smmdn.store.bulk import WriteResult, upsert_rows
from smmdn.store.common import StoreHandle, Timeish, _now, _ts, _utc_column, require_sites, time_filters
from smmdn.store.frames import forcing_long_for_write, rows_of

FORCING_PRIORITY = {"observed": 0, "archive": 1, "forecast": 2}


def write_forcing(
    store: StoreHandle, frame: pd.DataFrame, source: str, kind: str = "observed", issue_time: Timeish = None
) -> WriteResult:
    """Upsert wide canonical forcing. Weather forecasts need ``issue_time`` (argument or column)."""
    if kind not in T.FORCING_KINDS:
        raise InputError(
            f"unknown forcing kind {kind!r}",
            where="forcing",
            column="kind",
            fix=f"use one of {', '.join(T.FORCING_KINDS)}",
        )
    if kind == "forecast" and issue_time is None and "issue_time" not in frame.columns:
        raise InputError(
            "weather forecasts need an issue_time",
            where="forcing",
            column="issue_time",
            fix="pass issue_time= or an issue_time column",
        )
    long = forcing_long_for_write(frame, _ts(issue_time) if kind == "forecast" else None)
    if "issue_time" not in long.columns or kind != "forecast":
        long["issue_time"] = pd.Timestamp(T.NO_ISSUE_TIME)
    now = _now()
    long["kind"], long["source"], long["ingested_at"], long["updated_at"] = kind, source, now, now
    columns = [
        "time",
        "site",
        "variable",
        "kind",
        "source",
        "issue_time",
        "value",
        "ingested_at",
        "updated_at",
    ]
    with store._begin() as conn:
        require_sites(conn, long["site"], "forcing")
        return upsert_rows(
            conn,
            T.forcing,
            columns,
            rows_of(long, columns),
            ["site", "variable", "kind", "source", "issue_time", "time"],
            ["value"],
            ["updated_at"],
        )


def read_forcing(
    store: StoreHandle,
    sites: Sequence[str] | None = None,
    start: Timeish = None,
    end: Timeish = None,
    kinds: Sequence[str] | None = None,
    source: str | None = None,
    as_of: Timeish = None,
    variables: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Wide forcing (time, site, variables…); where kinds overlap: observed > archive > the
    latest forecast issued at or before ``as_of``. Adds ``forcing_kind`` per row (the worst used).

    ``as_of``: forecasts issued by then, other forcing ingested by then (replays without hindsight).
    """
    t = T.forcing
    query = sa.select(t.c.time, t.c.site, t.c.variable, t.c.kind, t.c.issue_time, t.c.value)
    query = time_filters(query, t.c.time, start, end)
    if sites:
        query = query.where(t.c.site.in_(list(sites)))
    if kinds:
        query = query.where(t.c.kind.in_(list(kinds)))
    if source:
        query = query.where(t.c.source == source)
    if variables:
        query = query.where(t.c.variable.in_(list(variables)))
    if as_of is not None:
        # A weather forecast was knowable at its issue time (even if archived into the store later,
        # e.g. from the historical-forecast API); other forcing only once it was ingested.
        cutoff = _ts(as_of)
        query = query.where(
            sa.or_(
                sa.and_(t.c.kind == "forecast", t.c.issue_time <= cutoff),
                sa.and_(t.c.kind != "forecast", t.c.ingested_at <= cutoff),
            )
        )
    with store.engine.connect() as conn:
        long = pd.read_sql(query, conn)
    if long.empty:
        return pd.DataFrame(
            {"time": pd.Series([], dtype="datetime64[ns, UTC]"), "site": pd.Series([], dtype=object)}
        )
    long["time"] = _utc_column(long["time"])
    long["issue_time"] = _utc_column(long["issue_time"])
    long["rank"] = long["kind"].map(FORCING_PRIORITY)
    long = long.sort_values(
        ["site", "time", "variable", "rank", "issue_time"], ascending=[True, True, True, True, False]
    )
    best = long.drop_duplicates(["site", "time", "variable"], keep="first")
    wide = best.pivot_table(index=["time", "site"], columns="variable", values="value", aggfunc="first")
    kind_rank = best.groupby(["time", "site"])["rank"].max()
    wide = wide.reset_index()
    wide.columns.name = None
    names = {v: k for k, v in FORCING_PRIORITY.items()}
    wide["forcing_kind"] = kind_rank.reindex(pd.MultiIndex.from_frame(wide[["time", "site"]])).map(names).to_numpy()
    return wide.sort_values(["site", "time"]).reset_index(drop=True)
