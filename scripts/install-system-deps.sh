#!/usr/bin/env bash
# Install the system tools the test suite and demo use (Debian 12/13). Needs root;
# without root it only reports what is missing, so the non-root tests can still run.
set -euo pipefail

# tool on PATH -> Debian package that provides it
declare -A TOOLS=(
  [ip]=iproute2
  [sysctl]=procps
  [ping]=iputils-ping
  [arping]=iputils-arping
  [tcpdump]=tcpdump
  [bird]=bird2
  [gcc]=gcc
  # the real NetBox of tests/netbox (scripts/netbox-up.sh also installs what it lacks)
  [pg_ctlcluster]=postgresql
  [redis-server]=redis-server
  [pg_config]=libpq-dev
  [curl]=curl
)

missing=()
for tool in "${!TOOLS[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${TOOLS[$tool]}")
done
python3 -c 'import sysconfig, os, sys; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)' \
  || missing+=(python3-dev)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
# kubectl: scripts/venv.sh provides one (Debian's kubernetes-client is too old to test with)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-system-deps: not root; missing packages: ${missing[*]} (root-only tests will skip)" >&2
  exit 0
fi
echo "install-system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
