#!/usr/bin/env bash
# Back up the smmdn TimescaleDB database: pg_dump custom format plus a .meta file.
#
#   infra/backup.sh [-d DATABASE_URL] OUTPUT
#
# OUTPUT: a file (e.g. /backups/smmdn.dump) or an existing directory (a file named
# smmdn-<UTC time>.dump is created in it). Next to it, OUTPUT.meta records the server and
# TimescaleDB versions: a TimescaleDB dump restores only into the SAME extension version.
# Connection: -d, else SMMDN_BACKUP_DATABASE_URL, else the libpq PG* variables (PGHOST, PGUSER,
# PGPASSWORD, PGDATABASE, ...). Use the owner/admin role: it must read every table and the
# TimescaleDB catalog. SQLAlchemy URLs (postgresql+psycopg://) are accepted.
# pg_dump's warnings about circular foreign keys in hypertable/chunk catalog tables are expected.
#
# Writes to a temporary name and renames when complete, so a failed run never leaves a file that
# looks like a good backup; the dump is then listed with pg_restore as a check that it is readable.
set -euo pipefail

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

url="${SMMDN_BACKUP_DATABASE_URL:-}"
while getopts "d:h" opt; do
  case "$opt" in
    d) url="$OPTARG" ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[ "$#" -eq 1 ] || usage
output="$1"

url="${url/postgresql+psycopg:/postgresql:}"
url="${url/postgresql+psycopg2:/postgresql:}"
conn=()
[ -n "$url" ] && conn=(-d "$url")

if [ -d "$output" ]; then
  output="${output%/}/smmdn-$(date -u +%Y%m%dT%H%M%SZ).dump"
fi
tmp="${output}.partial"
trap 'rm -f "$tmp" "$tmp.meta"' EXIT

query() { psql "${conn[@]}" -X -A -t -v ON_ERROR_STOP=1 -c "$1"; }
database="$(query 'SELECT current_database()')"
server_version="$(query 'SHOW server_version_num')"
tsdb_version="$(query "SELECT coalesce((SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'), '')")"

echo "backup: dumping database '$database' (PostgreSQL $server_version, TimescaleDB ${tsdb_version:-none})" >&2
pg_dump "${conn[@]}" --format=custom --compress=6 --file="$tmp"
pg_restore --list "$tmp" >/dev/null

cat >"$tmp.meta" <<META
database=$database
server_version_num=$server_version
timescaledb_version=$tsdb_version
pg_dump_version=$(pg_dump --version | awk '{print $NF}')
created_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)
META
mv "$tmp.meta" "$output.meta"
mv "$tmp" "$output"
trap - EXIT
echo "backup: wrote $output ($(du -h "$output" | cut -f1)) and $output.meta" >&2
echo "$output"
