#!/usr/bin/env bash
# Create .venv and install smmdn with locked versions (idempotent; seconds when already done).
#
# CPU torch first: a plain `torch` requirement may pull several GB of CUDA wheels; 2.13.0 resolves to
# the CPU build here. On a GPU host install the CUDA build of the same version before this script.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
EXTRAS="${SMMDN_EXTRAS:-test}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
stamp=".venv/.smmdn-installed"
digest="$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)-${EXTRAS}"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
  exit 0
fi
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0" -c constraints.txt
python -m pip install -q -c constraints.txt -e ".[${EXTRAS}]"
echo "$digest" > "$stamp"
echo "smmdn installed in .venv ($(python -c 'import smmdn; print(smmdn.__version__)'))"
