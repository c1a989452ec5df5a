"""Alembic environment: runs on the connection handed in by ``smmdn.store.migrate``."""

from __future__ import annotations

from alembic import context

from smmdn.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only via smmdn.store.migrate
    raise RuntimeError("run migrations through smmdn.store.migrate (smmdn db init)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
