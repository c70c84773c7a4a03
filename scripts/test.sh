#!/usr/bin/env bash
# The whole test suite (the README's second command). Real-data tests read $CTXREC_DATA
# (default ../shared/data when it exists); without it they are skipped with a reason, except in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${CTXREC_DATA:-}" ] && [ -d ../shared/data ]; then
  export CTXREC_DATA="$(cd .. && pwd)/shared/data"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest -q "$@"
