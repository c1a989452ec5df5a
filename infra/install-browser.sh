#!/usr/bin/env bash
# Debian's Chromium for the tests that render a page as a person sees it (headless, no network needed).
# Idempotent: nothing happens when /usr/bin/chromium is there. Needs root (apt-get) or sudo.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "[install-browser] installing chromium"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
