#!/usr/bin/env bash
# The README's first command: install purelb and run its main job on the embedded default,
# an edge gateway in a network-namespace sandbox (scripts/demo-embedded.sh says what it shows).
# Ctrl-C tears the sandbox down; --once (or no terminal on stdin) runs, prints and tears down.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh
bash scripts/venv.sh
exec bash scripts/demo-embedded.sh "$@"
