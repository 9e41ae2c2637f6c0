#!/usr/bin/env bash
# The whole test suite from a fresh machine: system tools, venv, ruff, pytest (native and
# PURELB_PURE=1 for the parts with two implementations). Under CI=true it fails if any
# root-only test was skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh
bash scripts/venv.sh
PY=.venv/bin/python
mkdir -p build/test-reports

echo "== ruff"
"$PY" -m ruff check .

echo "== pytest (native hot path)"
status=0
"$PY" -m pytest -q --junitxml=build/test-reports/native.xml "$@" || status=$?

echo "== pytest (PURELB_PURE=1: pure-Python fallback) on the unit suite"
PURELB_PURE=1 "$PY" -m pytest -q --junitxml=build/test-reports/pure.xml tests/unit || status=$?

"$PY" scripts/check_skips.py build/test-reports/*.xml || status=$?
exit $status
