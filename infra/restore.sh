#!/usr/bin/env bash
# Restore a dump made by infra/backup.sh into an EMPTY database (TimescaleDB-aware).
#
#   infra/restore.sh [-d DATABASE_URL] [-c] DUMP [-- PG_RESTORE_OPTIONS...]
#
# -d: the target database (else SMMDN_RESTORE_DATABASE_URL, else the libpq PG* variables); connect
#     as the owner/admin role, never as a flow or dashboard user.
# -c: create the target database first (connects to the 'postgres' maintenance database).
# Extra pg_restore options go after `--`, e.g. `-- --no-owner --role=smmdn_owner` when the dump's
# owner role does not exist on the target cluster.
#
# Procedure (TimescaleDB docs, "Backup and restore"): create the extension at the version recorded
# in DUMP.meta, SELECT timescaledb_pre_restore(), pg_restore, SELECT timescaledb_post_restore(),
# ANALYZE. The group roles smmdn_writer/smmdn_reader are created first (roles are not part of a
# database dump) so that their GRANTs restore; LOGIN users are re-created with infra/db-users.sh.
# Refuses a target that already has tables: restoring over live data would mix two histories.
set -euo pipefail

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

url="${SMMDN_RESTORE_DATABASE_URL:-}"
create=0
while getopts "d:ch" opt; do
  case "$opt" in
    d) url="$OPTARG" ;;
    c) create=1 ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[ "$#" -ge 1 ] || usage
dump="$1"
shift
[ "${1:-}" = "--" ] && shift
extra=("$@")
[ -f "$dump" ] || { echo "restore: no such dump: $dump" >&2; exit 1; }

url="${url/postgresql+psycopg:/postgresql:}"
url="${url/postgresql+psycopg2:/postgresql:}"
conn=()
[ -n "$url" ] && conn=(-d "$url")
# pg_restore without -d prints SQL instead of restoring: always name the target.
restore_target=(-d "${url:-${PGDATABASE:?set PGDATABASE or pass -d}}")
psql_() { psql "${conn[@]}" -X -q -v ON_ERROR_STOP=1 "$@"; }
query() { psql "${conn[@]}" -X -A -t -v ON_ERROR_STOP=1 -c "$1"; }

if [ "$create" -eq 1 ]; then
  if [ -n "$url" ]; then
    # Same server, 'postgres' database: swap the path of the URL, keep its query (sslmode, ...).
    base="${url%%\?*}"
    params="${url#"$base"}"
    target="${base##*/}"
    maint=(-d "${base%/*}/postgres${params}")
  else
    target="${PGDATABASE:?set PGDATABASE or pass -d}"
    maint=(-d postgres)
  fi
  echo "restore: creating database '$target'" >&2
  psql "${maint[@]}" -X -q -v ON_ERROR_STOP=1 -v db="$target" <<<'CREATE DATABASE :"db"'
fi

tables="$(query "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') AND schemaname NOT LIKE '\_timescaledb%' AND schemaname <> 'timescaledb_information'")"
if [ "$tables" != "0" ]; then
  echo "restore: the target database already has $tables tables: restore into a new, empty database" >&2
  exit 1
fi

wanted=""
[ -f "$dump.meta" ] && wanted="$(sed -n 's/^timescaledb_version=//p' "$dump.meta")"
if [ -n "$wanted" ]; then
  available="$(query "SELECT count(*) FROM pg_available_extension_versions WHERE name = 'timescaledb' AND version = '$wanted'")"
  if [ "$available" = "0" ]; then
    echo "restore: the dump needs TimescaleDB $wanted, which this server does not have installed;" \
      "restore on a server with that version, then ALTER EXTENSION timescaledb UPDATE" >&2
    exit 1
  fi
fi

psql_ -v ver="$wanted" <<'SQL'
SELECT format('CREATE ROLE %I NOLOGIN', g) FROM unnest(ARRAY['smmdn_writer', 'smmdn_reader']) AS g
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = g) \gexec
SELECT CASE WHEN :'ver' = '' THEN 'CREATE EXTENSION IF NOT EXISTS timescaledb'
            ELSE format('CREATE EXTENSION IF NOT EXISTS timescaledb VERSION %L', :'ver') END \gexec
SELECT timescaledb_pre_restore();
SQL
echo "restore: timescaledb_pre_restore() done (background workers stopped, restoring mode on)" >&2

echo "restore: pg_restore $dump" >&2
status=0
pg_restore "${restore_target[@]}" --format=custom --no-password --exit-on-error "${extra[@]}" "$dump" || status=$?
# post_restore even after a failure: it turns the background workers back on.
psql_ -c 'SELECT timescaledb_post_restore()' >/dev/null
echo "restore: timescaledb_post_restore() done" >&2
if [ "$status" -ne 0 ]; then
  echo "restore: pg_restore failed (exit $status); the target database is incomplete: drop it and retry" >&2
  exit "$status"
fi
psql_ -c 'ANALYZE'
echo "restore: done; re-create LOGIN users with infra/db-users.sh if this is a new cluster" >&2
