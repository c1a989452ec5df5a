"""Model versions: the registry of trained models, champion/challenger status and lineage."""

from __future__ import annotations

from typing import Any

import pandas as pd
import sqlalchemy as sa

from smmdn.errors import InputError
from smmdn.store import tables as T
from smmdn.store.common import StoreHandle, Timeish, _now, _ts, json_columns


def register_model_version(
    store: StoreHandle,
    version: str,
    *,
    kind: str,
    artifact_uri: str,
    parent: str | None = None,
    train_start: Timeish = None,
    train_end: Timeish = None,
    metrics: dict | None = None,
    status: str = "challenger",
    note: str | None = None,
) -> None:
    if status not in T.MODEL_STATUSES:
        raise ValueError(f"unknown model status {status!r}")
    values = dict(
        parent=parent,
        kind=kind,
        artifact_uri=artifact_uri,
        train_start=_ts(train_start),
        train_end=_ts(train_end),
        metrics=metrics or {},
        status=status,
        note=note,
    )
    with store._begin() as conn:
        if conn.execute(sa.select(T.model_versions.c.version).where(T.model_versions.c.version == version)).first():
            conn.execute(T.model_versions.update().where(T.model_versions.c.version == version).values(**values))
        else:
            conn.execute(T.model_versions.insert().values(version=version, created_at=_now(), **values))


def promote(store: StoreHandle, version: str, note: str | None = None) -> str | None:
    """Make ``version`` the champion (the previous one retires). Returns the previous champion."""
    mv = T.model_versions
    with store._begin() as conn:
        if not conn.execute(sa.select(mv.c.version).where(mv.c.version == version)).first():
            raise InputError(
                f"unknown model version {version!r}",
                where="model_versions",
                column="version",
                fix="list versions with `smmdn models list`",
            )
        previous = conn.execute(sa.select(mv.c.version).where(mv.c.status == "champion")).scalar()
        conn.execute(mv.update().where(mv.c.status == "champion").values(status="retired"))
        conn.execute(
            mv.update()
            .where(mv.c.version == version)
            .values(status="champion", promoted_at=_now(), note=note if note is not None else mv.c.note)
        )
    return previous


def roll_back(store: StoreHandle, target: str, note: str) -> str | None:
    """Make ``target`` champion again and mark the champion it replaces rejected (an operator judged it
    bad), in one transaction: a second rollback then walks further back instead of flipping back."""
    mv = T.model_versions
    with store._begin() as conn:
        if not conn.execute(sa.select(mv.c.version).where(mv.c.version == target)).first():
            raise InputError(f"unknown model version {target!r}", where="model_versions", column="version",
                             fix="list versions with `smmdn models list`")
        previous = conn.execute(sa.select(mv.c.version).where(mv.c.status == "champion")).scalar()
        conn.execute(mv.update().where(mv.c.status == "champion").values(status="rejected", note=note))
        conn.execute(mv.update().where(mv.c.version == target).values(
            status="champion", promoted_at=_now(), note=f"rolled back to (from {previous})"))
    return previous


def set_model_status(store: StoreHandle, version: str, status: str, note: str | None = None) -> None:
    if status not in T.MODEL_STATUSES:
        raise ValueError(f"unknown model status {status!r}")
    mv = T.model_versions
    with store._begin() as conn:
        conn.execute(
            mv.update()
            .where(mv.c.version == version)
            .values(status=status, note=note if note is not None else mv.c.note)
        )


def champion(store: StoreHandle) -> dict[str, Any] | None:
    mv = T.model_versions
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(mv).where(mv.c.status == "champion")).mappings().first()
    return dict(row) if row else None


def model_versions(store: StoreHandle) -> pd.DataFrame:
    with store.engine.connect() as conn:
        frame = pd.read_sql(sa.select(T.model_versions).order_by(T.model_versions.c.created_at), conn)
    return json_columns(frame, ("metrics",))
