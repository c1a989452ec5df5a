"""Database roles: ``smmdn_writer`` for flows, ``smmdn_reader`` for dashboards and analysts.

Both are NOLOGIN group roles; operators create LOGIN users in them (``infra/db-users.sh``, or
``CREATE ROLE alice LOGIN PASSWORD … IN ROLE smmdn_reader``), so no password ever lives in the repo
and the migration needs none. The role that runs migrations (``smmdn db init``) owns the schema; flows
run as a writer and never need a superuser. PostgreSQL only: a no-op on SQLite.

Roles are cluster-wide, so creating them is idempotent (another database in the same cluster may have
made them already); privileges are per database. Default privileges make every table, view and
sequence that later migrations create (as the same owner) readable by ``smmdn_reader`` and writable
by ``smmdn_writer`` without another grant.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

WRITER = "smmdn_writer"
READER = "smmdn_reader"

_CREATE_ROLE = """
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
    CREATE ROLE {role} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION INHERIT;
  END IF;
EXCEPTION WHEN duplicate_object THEN
  NULL;  -- created concurrently by a migration of another database in this cluster
END
$$
"""

_CONNECT = """
DO $$
BEGIN
  EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO {writer}', current_database());
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO {reader}', current_database());
END
$$
"""

_REVOKE_CONNECT = """
DO $$
BEGIN
  EXECUTE format('REVOKE ALL ON DATABASE %I FROM {writer}, {reader}', current_database());
END
$$
"""

# Writers change data, never the schema: no CREATE on the schema, no TRUNCATE, no ownership (so no
# DROP/ALTER). Readers: SELECT on tables and views. Sequences: writers need USAGE for serial keys.
GRANTS = [
    f"GRANT USAGE ON SCHEMA public TO {WRITER}, {READER}",
    f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {WRITER}",
    f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {WRITER}",
    f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {READER}",
    f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {WRITER}",
    f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {WRITER}",
    f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {READER}",
]

REVOKES = [
    f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM {WRITER}, {READER}",
    f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM {WRITER}, {READER}",
    f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {WRITER}, {READER}",
    f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {WRITER}, {READER}",
    f"REVOKE ALL ON SCHEMA public FROM {WRITER}, {READER}",
]


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for role in (WRITER, READER):
        op.execute(_CREATE_ROLE.format(role=role))
    op.execute(_CONNECT.format(writer=WRITER, reader=READER))
    for statement in GRANTS:
        op.execute(statement)


def downgrade() -> None:
    # Revoke this database's privileges but keep the roles: they are cluster-wide, may hold members
    # and privileges in other databases, and dropping a role with members would orphan logins.
    if op.get_bind().dialect.name != "postgresql":
        return
    for statement in REVOKES:
        op.execute(statement)
    op.execute(_REVOKE_CONNECT.format(writer=WRITER, reader=READER))
