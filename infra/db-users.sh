#!/usr/bin/env bash
# Create or update LOGIN users in the smmdn group roles (smmdn_writer / smmdn_reader).
#
#   infra/db-users.sh                      # the compose defaults, see below
#   infra/db-users.sh NAME GROUP [PASSWORD_VARIABLE]
#
# NAME GROUP: one user, e.g. `grafana smmdn_reader`; its password is read from the environment
# variable PASSWORD_VARIABLE (default SMMDN_NEW_DB_PASSWORD) — never from the command line, where
# `ps` and shell history would show it.
# Without arguments (what the compose stack runs): ${SMMDN_APP_DB_USER:-smmdn_app} in smmdn_writer
# with SMMDN_APP_DB_PASSWORD (required), and ${SMMDN_READER_DB_USER:-smmdn_dashboards} in
# smmdn_reader with SMMDN_READER_DB_PASSWORD (skipped when empty).
#
# Connection: SMMDN_ADMIN_DATABASE_URL (a libpq or SQLAlchemy URL) or the libpq PG* variables, as a
# role with CREATEROLE (the migration owner or the cluster admin). Needs psql >= 15 (\getenv).
# Idempotent: an existing user gets its password reset and is (re)added to the group.
set -euo pipefail

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# SQLAlchemy URLs carry a driver (postgresql+psycopg://); libpq wants plain postgresql://.
url="${SMMDN_ADMIN_DATABASE_URL:-}"
url="${url/postgresql+psycopg:/postgresql:}"
url="${url/postgresql+psycopg2:/postgresql:}"
conn=()
[ -n "$url" ] && conn=(-d "$url")

create_user() {
  local name="$1" group="$2" password_var="$3"
  case "$group" in
    smmdn_writer | smmdn_reader) ;;
    *) echo "db-users: group must be smmdn_writer or smmdn_reader, not '$group'" >&2; exit 2 ;;
  esac
  if [ -z "${!password_var:-}" ]; then
    echo "db-users: \$$password_var is empty: set a password for '$name' (e.g. openssl rand -hex 24)" >&2
    exit 1
  fi
  # The password travels to psql in its environment only and is quoted by format(%L) server-side.
  SMMDN_DB_USER_PASSWORD="${!password_var}" psql "${conn[@]}" -X -q -v ON_ERROR_STOP=1 \
    -v user="$name" -v grp="$group" <<'SQL'
\getenv pw SMMDN_DB_USER_PASSWORD
-- Keep the password out of the server log where this session is allowed to say so.
DO $$ BEGIN SET log_statement = 'none'; SET log_min_duration_statement = -1;
EXCEPTION WHEN insufficient_privilege THEN NULL; END $$;
-- The groups normally come from migration 0004; made here too so users can be set up first.
SELECT format('CREATE ROLE %I NOLOGIN', g) FROM unnest(ARRAY['smmdn_writer', 'smmdn_reader']) AS g
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = g) \gexec
SELECT format('CREATE ROLE %I', :'user') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'user') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION INHERIT PASSWORD %L',
              :'user', :'pw') \gexec
SELECT format('GRANT %I TO %I', :'grp', :'user') \gexec
-- Dashboards: a runaway query is cancelled instead of starving the flows.
SELECT format('ALTER ROLE %I SET statement_timeout = %L', :'user', '5min') WHERE :'grp' = 'smmdn_reader' \gexec
SQL
  echo "db-users: '$name' can log in as a member of $group"
}

case "$#" in
  0)
    create_user "${SMMDN_APP_DB_USER:-smmdn_app}" smmdn_writer SMMDN_APP_DB_PASSWORD
    if [ -n "${SMMDN_READER_DB_PASSWORD:-}" ]; then
      create_user "${SMMDN_READER_DB_USER:-smmdn_dashboards}" smmdn_reader SMMDN_READER_DB_PASSWORD
    fi
    ;;
  2 | 3) create_user "$1" "$2" "${3:-SMMDN_NEW_DB_PASSWORD}" ;;
  *) usage ;;
esac
