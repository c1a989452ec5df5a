#!/usr/bin/env bash
# Install PostgreSQL 15 and build the TimescaleDB Apache-2 edition from Debian's source package.
#
# Why from source: Debian bookworm ships no timescaledb package, but trixie's source package builds
# against bookworm's postgresql-15 in about 30 s. The Apache edition has hypertables, time_bucket,
# upserts and drop_chunks; compression, continuous aggregates and policies need the Timescale licence
# (the timescale/timescaledb Docker image), and smmdn degrades gracefully without them.
#
# Idempotent: every step is skipped when its result is already present. Needs root (apt-get).
set -euo pipefail

PG_MAJOR="${PG_MAJOR:-15}"
PG_CONFIG="/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config"
BUILD_DIR="${TIMESCALEDB_BUILD_DIR:-/tmp/smmdn-timescaledb-build}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

log() { printf '[install-timescaledb] %s\n' "$*"; }

have_extension() {
  [ -x "$PG_CONFIG" ] || return 1
  local sharedir
  sharedir="$("$PG_CONFIG" --sharedir)"
  [ -f "${sharedir}/extension/timescaledb.control" ] && [ -f "$("$PG_CONFIG" --pkglibdir)/timescaledb.so" ]
}

apt_updated=0
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ "$apt_updated" -eq 0 ]; then
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

apt_install "postgresql-${PG_MAJOR}" "postgresql-client-${PG_MAJOR}"

if have_extension; then
  log "TimescaleDB already installed for PostgreSQL ${PG_MAJOR}: $(grep default_version "$("$PG_CONFIG" --sharedir)/extension/timescaledb.control")"
  exit 0
fi

apt_install "postgresql-server-dev-${PG_MAJOR}" cmake gcc make dpkg-dev libssl-dev

# A deb-src line for trixie that reuses the URI of this machine's own Debian sources (never a
# hard-coded host), in its own file so the machine's sources stay untouched.
SRC_LIST=/etc/apt/sources.list.d/smmdn-trixie-src.sources
if [ ! -f "$SRC_LIST" ]; then
  uri="$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | grep -i debian | head -n1 || true)"
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri="$(grep -hE '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v security | head -n1 || true)"
  fi
  [ -n "$uri" ] || { echo "no Debian source URI found in /etc/apt/sources.list{,.d}: add a deb-src line for trixie by hand" >&2; exit 1; }
  log "adding deb-src for trixie from ${uri}"
  printf 'Types: deb-src\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" \
    | $SUDO tee "$SRC_LIST" >/dev/null
  $SUDO apt-get update -qq
fi

mkdir -p "$BUILD_DIR"
cd "$BUILD_DIR"
if ! ls timescaledb_*.orig.tar.* >/dev/null 2>&1; then
  log "downloading the timescaledb source package"
  apt-get source --download-only timescaledb >/dev/null
fi
orig="$(ls timescaledb_*.orig.tar.* | head -n1)"
src_dir="$BUILD_DIR/src"
rm -rf "$src_dir" && mkdir -p "$src_dir"
tar -xf "$orig" -C "$src_dir" --strip-components=1
cd "$src_dir"
log "building $(basename "$orig") (Apache-2 edition)"
PATH="/usr/lib/postgresql/${PG_MAJOR}/bin:$PATH" ./bootstrap -DPG_CONFIG="$PG_CONFIG" -DAPACHE_ONLY=1 \
  -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DSEND_TELEMETRY_DEFAULT=NO -DWARNINGS_AS_ERRORS=OFF >/dev/null
make -s -C build -j"$(nproc)" >/dev/null
$SUDO make -s -C build install >/dev/null
have_extension || { echo "TimescaleDB build finished but the extension files are missing" >&2; exit 1; }
log "installed: $(grep default_version "$("$PG_CONFIG" --sharedir)/extension/timescaledb.control")"
