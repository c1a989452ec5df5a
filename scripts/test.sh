#!/usr/bin/env bash
# The test command (README, second command; .ci/run runs exactly this).
# Installs what the tests need (PostgreSQL 15 + TimescaleDB from source, Debian's Chromium, the locked venv),
# then pytest.
# The tests start their own throwaway PostgreSQL cluster, HTTP servers and Prefect test harness.
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/install-timescaledb.sh
bash infra/install-browser.sh
bash scripts/setup.sh
export DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false GX_ANALYTICS_ENABLED=false
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
