"""Forecast runs and their mixture rows. A run is invisible to views until it completes, so a half-written
run is never served.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

import pandas as pd
import sqlalchemy as sa

from smmdn.errors import InputError
from smmdn.store import tables as T
from smmdn.store.bulk import WriteResult, upsert_frame
from smmdn.store.common import StoreHandle, Timeish, _now, _ts, _utc_column, require_sites, time_filters
from smmdn.store.frames import expand_mixture, forecasts_for_write

# a forecast row as stored: its key, the mixture arrays, the summary (the bulk lanes and their benchmark use it)
FORECAST_COLUMNS = ("valid_time", "site", "depth_cm", "issue_time", "model_version", "lead", "run_id", "weights",
                    "means", "sigmas", "mean", "sd", "q05", "q25", "q50", "q75", "q95")


def start_forecast_run(
    store: StoreHandle,
    issue_time: Timeish,
    model_version: str,
    *,
    run_id: str | None = None,
    input_freshness: dict | None = None,
    validation: dict | None = None,
    stale_forcing: bool = False,
) -> str:
    """Register a run as 'running': its forecasts stay invisible to views until it completes."""
    run_id = run_id or uuid.uuid4().hex
    with store._begin() as conn:
        existing = conn.execute(
            sa.select(T.forecast_runs.c.run_id).where(T.forecast_runs.c.run_id == run_id)
        ).first()
        values = dict(
            issue_time=_ts(issue_time),
            model_version=model_version,
            status="running",
            started_at=_now(),
            finished_at=None,
            stale_forcing=stale_forcing,
            input_freshness=input_freshness or {},
            validation=validation or {},
        )
        if existing:
            conn.execute(T.forecast_runs.update().where(T.forecast_runs.c.run_id == run_id).values(**values))
        else:
            conn.execute(T.forecast_runs.insert().values(run_id=run_id, **values))
    return run_id


def finish_forecast_run(store: StoreHandle, run_id: str, status: str = "complete", message: str | None = None) -> None:
    if status not in T.RUN_STATUSES:
        raise ValueError(f"unknown run status {status!r}")
    with store._begin() as conn:
        n = conn.execute(
            sa.select(sa.func.count()).select_from(T.forecasts).where(T.forecasts.c.run_id == run_id)
        ).scalar_one()
        conn.execute(
            T.forecast_runs.update()
            .where(T.forecast_runs.c.run_id == run_id)
            .values(status=status, finished_at=_now(), n_rows=n, message=message)
        )


def write_forecasts(store: StoreHandle, frame: pd.DataFrame, run_id: str,
                    model_version: str | None = None) -> WriteResult:
    """Upsert a forecast frame (canonical mixture columns) belonging to ``run_id``."""
    out, k = forecasts_for_write(frame)
    if "model_version" not in out.columns:
        if model_version is None:
            raise InputError(
                "forecasts need a model_version",
                where="forecasts",
                column="model_version",
                fix="pass model_version= or add the column",
            )
        out["model_version"] = model_version
    out["run_id"] = run_id
    out["lead"] = out["lead"].astype(int)
    columns = list(FORECAST_COLUMNS)
    key = ["site", "depth_cm", "valid_time", "issue_time", "model_version"]
    arrays = {
        name: [f"{prefix}_{i}" for i in range(k)]
        for name, prefix in (("weights", "weight"), ("means", "mean"), ("sigmas", "sigma"))
    }
    f = T.forecasts.c
    may_exist = sa.select(
        sa.exists().where(
            f.valid_time.between(_ts(out["valid_time"].min()), _ts(out["valid_time"].max())),
            f.issue_time.in_([_ts(t) for t in out["issue_time"].unique()]),
            f.model_version.in_(out["model_version"].unique().tolist()),
        )
    )
    with store._begin() as conn:
        require_sites(conn, out["site"], "forecasts")
        return upsert_frame(conn, T.forecasts, out, columns, key, columns[5:], arrays=arrays, fresh_probe=may_exist)


def read_forecast_query(store: StoreHandle, query) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    with store.engine.connect() as conn:
        frame = pd.read_sql(query, conn)
    for column in ("valid_time", "issue_time"):
        if column in frame:
            frame[column] = _utc_column(frame[column])
    for column in ("weights", "means", "sigmas"):
        frame[column] = [json.loads(v) if isinstance(v, str) else list(v) for v in frame[column]]
    return expand_mixture(frame)


def read_forecasts(
    store: StoreHandle,
    issue_time: Timeish = None,
    sites: Sequence[str] | None = None,
    start: Timeish = None,
    end: Timeish = None,
    complete_only: bool = True,
    issued_before: Timeish = None,
) -> pd.DataFrame:
    """Forecasts by issue time and/or valid-time window (only from complete runs by default)."""
    f, r = T.forecasts, T.forecast_runs
    query = sa.select(f).join(r, r.c.run_id == f.c.run_id)
    if complete_only:
        query = query.where(r.c.status == "complete")
    if issue_time is not None:
        query = query.where(f.c.issue_time == _ts(issue_time))
    if issued_before is not None:
        query = query.where(f.c.issue_time < _ts(issued_before))
    if sites:
        query = query.where(f.c.site.in_(list(sites)))
    query = time_filters(query, f.c.valid_time, start, end)
    query = query.order_by(f.c.site, f.c.depth_cm, f.c.issue_time, f.c.valid_time)
    return read_forecast_query(store, query)


def latest_forecasts(store: StoreHandle, sites: Sequence[str] | None = None) -> pd.DataFrame:
    """The ``latest_forecasts`` view: each series' newest complete forecast."""
    view = sa.table("latest_forecasts", *(sa.column(c.name) for c in T.forecasts.columns))
    query = sa.select(view)
    if sites:
        query = query.where(view.c.site.in_(list(sites)))
    return read_forecast_query(store, query.order_by(view.c.site, view.c.depth_cm, view.c.valid_time))


def forecast_runs(store: StoreHandle) -> pd.DataFrame:
    with store.engine.connect() as conn:
        frame = pd.read_sql(sa.select(T.forecast_runs).order_by(T.forecast_runs.c.issue_time), conn)
    for column in ("issue_time", "started_at", "finished_at"):
        frame[column] = _utc_column(frame[column])
    return frame


# --- forecasts -----------------------------------------------------------------------------------------
def forecasts_issued_before(store: StoreHandle, start: Timeish, end: Timeish,
                            sites: Sequence[str] | None = None) -> pd.DataFrame:
    """Per (site, depth, valid day) in [start, end): the latest complete forecast issued before that day
    (newest finished run on ties), chosen in SQL so only one row per valid day travels.

    Canonical forecast frame (``weight_k`` … columns), like ``Store.read_forecasts``.
    """
    f, r = T.forecasts, T.forecast_runs
    rank = sa.func.row_number().over(
        partition_by=(f.c.site, f.c.depth_cm, f.c.valid_time),
        order_by=(f.c.issue_time.desc(), r.c.finished_at.desc(), r.c.run_id.desc())).label("_rank")
    inner = sa.select(*f.c, rank).join(r, r.c.run_id == f.c.run_id).where(
        r.c.status == "complete", f.c.issue_time < f.c.valid_time)
    inner = time_filters(inner, f.c.valid_time, start, end)
    if sites:
        inner = inner.where(f.c.site.in_(list(sites)))
    ranked = inner.subquery()
    query = sa.select(*(ranked.c[c.name] for c in f.c)).where(ranked.c._rank == 1)
    return read_forecast_query(store, query)
