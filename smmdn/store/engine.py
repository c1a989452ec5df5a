"""Engines for the two backends, configured once so every caller gets the same behaviour."""

from __future__ import annotations

import os

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from smmdn.store.errors import json_dumps

STATE_FILE_MODE = 0o600  # the SQLite database (and its -wal/-shm, which SQLite creates alike) owner-only


def _owner_only_sqlite_file(url: str) -> None:
    """Create the SQLite file owner-only before SQLite creates it world-readable (umask 022)."""
    database = sa.engine.make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    if not os.path.exists(database) and os.path.isdir(os.path.dirname(os.path.abspath(database))):
        os.close(os.open(database, os.O_CREAT | os.O_WRONLY, STATE_FILE_MODE))


def make_engine(url: str) -> Engine:
    """An engine for ``url``; plain ``postgresql://`` URLs are routed to psycopg 3."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite"):
        _owner_only_sqlite_file(url)
        engine = sa.create_engine(url, connect_args={"timeout": 30}, json_serializer=json_dumps)

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True, json_serializer=json_dumps)


def is_postgres(engine_or_conn: Engine | sa.Connection) -> bool:
    return engine_or_conn.dialect.name == "postgresql"
