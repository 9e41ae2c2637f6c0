#!/usr/bin/env bash
# The README's first command: install purelb and run its main job on the embedded default.
# Until embedded mode lands this runs the allocation benchmark in quick mode.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh
bash scripts/venv.sh
exec .venv/bin/purelb bench alloc --quick "$@"
