#!/usr/bin/env bash
# Install purelb into the current kubectl context: generate the gossip key Secret once
# (32 random bytes; kept across re-installs), then apply the kustomization.
# Rotation: docs/operations.md ("Rotating the gossip key").
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ns=purelb-system
kubectl apply -f "$here/namespace.yaml"
if ! kubectl -n "$ns" get secret purelb-gossip >/dev/null 2>&1; then
  key=$(head -c 32 /dev/urandom | base64 | tr -d '\n')
  kubectl -n "$ns" create secret generic purelb-gossip --from-literal=key-1="$key" >/dev/null
  echo "generated gossip key Secret $ns/purelb-gossip"
fi
kubectl apply -k "$here"
