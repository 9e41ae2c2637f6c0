#!/usr/bin/env bash
# Create (or reuse) .venv and install purelb with its test extras, building the native
# extension. Prints the venv's python path on the last line.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[test]"
.venv/bin/python -c 'import purelb.fast as f; print("purelb native extension:", f.IMPLEMENTATION)' || true
# Manifest linting (checkov) has a large dependency tree of its own: keep it out of the
# product venv so its pins never constrain purelb's.
if [ ! -x .venv-lint/bin/checkov ]; then
  "$PY" -m venv .venv-lint
  .venv-lint/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv-lint/bin/python -m pip install -q "checkov>=3.2"
fi
