#!/usr/bin/env bash
# Create .venv with the CPU build of torch and install ctxrec in editable mode.
# Usage: bash scripts/setup.sh            (idempotent; re-running only installs what changed)
# GPU users: see docs/getting-started.md, "Installing" (On a GPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first, pinned, so nothing later can resolve a CUDA wheel.
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -r requirements.txt
.venv/bin/python -m pip install --quiet --no-deps -e .
echo "ctxrec installed in $(pwd)/.venv"
