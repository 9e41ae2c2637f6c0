#!/usr/bin/env bash
# netbox-up.sh - run a REAL NetBox (IPAM) server on loopback for integration tests.
#
#   eval "$(scripts/netbox-up.sh)"      # then use $NETBOX_URL and $NETBOX_TOKEN
#   scripts/netbox-down.sh [--purge]    # stops only what this script started (pid files)
#
# What it does (idempotent: every step reuses what already exists):
#   1. apt: postgresql, redis-server, libpq-dev, gcc, curl (only those missing).
#   2. Finds a Python >= 3.12 (NetBox 4.7 needs it), in this order:
#        $NETBOX_PYTHON; python3.14/3.13/3.12 on PATH; pyenv-installed 3.12+;
#        apt python3.13 (Debian 13); else a debootstrapped Debian 13 chroot
#        (python3.13) under the state dir, in which NetBox then runs.
#   3. venv + `pip install netbox==$NETBOX_VERSION` (PyPI wheel).
#   4. Private PostgreSQL cluster and Redis on their own loopback ports (the
#      machine's own services on 5432/6379, if any, are never touched).
#   5. Config, migrations (once per database + version), superuser, API tokens
#      (v1 "Token <40>" and v2 "Bearer nbt_<key>.<secret>").
#   6. gunicorn on 127.0.0.1:$NETBOX_PORT (default 8001), in the background.
# All state lives under $NETBOX_STATE_DIR (default /var/tmp/netbox-local).
# Progress goes to stderr; stdout carries only `export ...` lines (NETBOX_ADMIN_USER,
# NETBOX_TOKEN_V1, NETBOX_TOKEN_V2, NETBOX_AUTH_HEADER), the last two being
# NETBOX_URL and NETBOX_TOKEN. Use: out=$(scripts/netbox-up.sh) && eval "$out"
#
# Knobs (environment): NETBOX_VERSION (4.7.3), NETBOX_STATE_DIR, NETBOX_PORT (8001),
# NETBOX_PG_PORT (55432), NETBOX_REDIS_PORT (56379), NETBOX_WORKERS (2), NETBOX_THREADS (4),
# NETBOX_PYTHON (interpreter to use), NETBOX_PY_MODE (auto|native|chroot),
# NETBOX_SEED_DIR (where migrated-schema dumps are read/written; default $STATE/seed, and
# netbox-seed/ beside this script is read too), NETBOX_NO_SEED=1 (always run migrations),
# NETBOX_TOKEN_VERSION (1|2: which token NETBOX_TOKEN is), NETBOX_START_TIMEOUT (120 s).
# A fresh database costs ~4 min of migrations on 2 cores without a seed, ~10 s with one.
set -Eeuo pipefail

NB_VERSION="${NETBOX_VERSION:-4.7.3}"
STATE="${NETBOX_STATE_DIR:-/var/tmp/netbox-local}"
HOST=127.0.0.1
NB_PORT="${NETBOX_PORT:-8001}"
PG_PORT="${NETBOX_PG_PORT:-55432}"
REDIS_PORT="${NETBOX_REDIS_PORT:-56379}"
WORKERS="${NETBOX_WORKERS:-2}"
THREADS="${NETBOX_THREADS:-4}"
START_TIMEOUT="${NETBOX_START_TIMEOUT:-120}"
FORCE_MODE="${NETBOX_PY_MODE:-auto}"        # auto | native | chroot

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
T0=$(date +%s)
log() { printf '[netbox-up +%3ss] %s\n' "$(( $(date +%s) - T0 ))" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
trap 'die "failed at line $LINENO: $BASH_COMMAND"' ERR

[ "$(id -u)" -eq 0 ] || die "run as root (apt, and PostgreSQL runs as the 'postgres' user)"
case "$STATE" in /|/var|/var/tmp|/tmp|/root|/home|"") die "refusing NETBOX_STATE_DIR=$STATE";; esac

mkdir -p "$STATE"/{run,log,redis}
touch "$STATE/.netbox-local"          # marker: netbox-down.sh --purge only deletes dirs that have it
chmod 755 "$STATE"

# ---------------------------------------------------------------- helpers
rand_alnum() {  # rand_alnum N -> N random [A-Za-z0-9]
  local out=""
  while [ "${#out}" -lt "$1" ]; do
    out+=$(head -c 256 /dev/urandom | base64 -w0 | tr -dc 'A-Za-z0-9')
  done
  printf '%s' "${out:0:$1}"
}
pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
pid_is() {  # pid_is PID WORD -> the live process PID has WORD in its command line (guards against pid reuse)
  pid_alive "$1" && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q -- "$2"
}
pid_from() { [ -s "$1" ] && head -n1 "$1" | tr -dc '0-9' || true; }

APT_UPDATED=0
apt_install() {  # apt_install pkg... (only the missing ones)
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  if [ "$APT_UPDATED" = 0 ]; then apt-get update -qq >>"$STATE/log/apt.log" 2>&1 || true; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$STATE/log/apt.log" 2>&1 \
    || { tail -n 20 "$STATE/log/apt.log" >&2; log "apt-get install ${missing[*]} failed"; return 1; }
}

# ---------------------------------------------------------------- 1. OS packages
apt_install postgresql redis-server libpq-dev gcc curl ca-certificates
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -x "$PGBIN/pg_ctl" ] || die "PostgreSQL binaries not found under /usr/lib/postgresql/*/bin"
command -v redis-server >/dev/null || die "redis-server not found"

# ---------------------------------------------------------------- 2. Python >= 3.12
# MODE=native: NetBox runs on this host. MODE=chroot: inside $STATE/trixie.
# INNER is the state path as NetBox sees it; host path = $ROOTFS$INNER.
py_ok() {  # py_ok CMD -> prints the real interpreter path if it is >= 3.12 with venv+ensurepip
  "$1" -c 'import sys, venv, ensurepip, ssl, sqlite3
assert sys.version_info >= (3, 12)
print(sys.executable)' 2>/dev/null
}
use_python() {  # use_python CMD -> prints the interpreter path if NetBox can be installed with it
  local exe v
  # Debian's own python3.X: venv/ensurepip and the headers (psycopg[c] is compiled) are separate packages
  if [[ "$(command -v "$1" 2>/dev/null)" == /usr/bin/python3.* ]] && command -v apt-get >/dev/null; then
    v=${1##*python}; apt_install "python$v-venv" "python$v-dev" || true
  fi
  exe=$(py_ok "$1") || return 1
  "$exe" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null || return 1
  printf '%s' "$exe"
}
find_python() {
  local c v root
  if [ -n "${NETBOX_PYTHON:-}" ]; then use_python "$NETBOX_PYTHON"; return; fi
  for c in python3.14 python3.13 python3.12; do
    command -v "$c" >/dev/null 2>&1 && use_python "$c" && return 0   # pyenv shims of inactive versions fail here
  done
  if command -v pyenv >/dev/null 2>&1; then
    root=$(pyenv root)
    for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.(1[2-9]|[2-9][0-9])(\.[0-9]+)?$' | sort -rV || true); do
      use_python "$root/versions/$v/bin/python3" && return 0
    done
  fi
  # Debian 13+: python3.13 from apt
  if command -v apt-cache >/dev/null; then
    [ "$APT_UPDATED" = 1 ] || { apt-get update -qq >>"$STATE/log/apt.log" 2>&1 || true; APT_UPDATED=1; }
    for v in 3.14 3.13 3.12; do
      if apt-cache policy "python$v" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        apt_install "python$v" "python$v-venv" "python$v-dev" || continue
        use_python "/usr/bin/python$v" && return 0
      fi
    done
  fi
  return 1
}

MODE=native; ROOTFS=""; INNER="$STATE"; PY=""
if [ -n "${NETBOX_PYTHON:-}" ]; then
  use_python "$NETBOX_PYTHON" >/dev/null || die "NETBOX_PYTHON=$NETBOX_PYTHON is not a Python >= 3.12 with venv, ensurepip and headers"
  FORCE_MODE=native
fi
if [ "$FORCE_MODE" = auto ] && [ "$(cat "$STATE/mode" 2>/dev/null)" = chroot ]; then
  FORCE_MODE=chroot                      # keep using the chroot an earlier run had to build
fi
if [ "$FORCE_MODE" != chroot ] && [ "$("$STATE/venv/bin/python" -c 'import importlib.metadata as m; print(m.version("netbox"))' 2>/dev/null)" = "$NB_VERSION" ]; then
  PY=reuse                               # venv with this NetBox version already installed
elif [ "$FORCE_MODE" != chroot ] && PY=$(find_python); then
  :
elif [ "$FORCE_MODE" = native ]; then
  die "no Python >= 3.12 found (set NETBOX_PYTHON)"
else
  MODE=chroot
fi

if [ "$MODE" = chroot ]; then
  ROOTFS="$STATE/trixie"; INNER=/opt/netbox-local
  if [ ! -x "$ROOTFS/usr/bin/python3.13" ] || [ ! -f "$ROOTFS/.debootstrap-ok" ]; then
    apt_install debootstrap
    MIRROR=$(grep -hoE '^(URIs:|deb)[[:space:]]+[^[:space:]]*' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
             | awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)
    MIRROR="${MIRROR:-http://deb.debian.org/debian}"
    log "no Python >= 3.12 here: debootstrap Debian 13 (trixie) into $ROOTFS from $MIRROR (~30 s, ~420 MB)"
    rm -rf "$ROOTFS"
    debootstrap --variant=minbase \
      --include=python3.13,python3.13-venv,python3.13-dev,libpq-dev,gcc,libc6-dev,ca-certificates \
      trixie "$ROOTFS" "$MIRROR" >"$STATE/log/debootstrap.log" 2>&1 \
      || die "debootstrap failed, see $STATE/log/debootstrap.log"
    touch "$ROOTFS/.debootstrap-ok"
  fi
  # Name resolution and this machine's CA bundle (the registries may sit behind a TLS proxy).
  cp -L /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
  cp -L /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
  [ -f /etc/pip.conf ] && cp -L /etc/pip.conf "$ROOTFS/etc/pip.conf"
  mkdir -p "$ROOTFS$INNER"
  PY=/usr/bin/python3.13
fi
echo "$MODE" > "$STATE/mode"

HSTATE="$ROOTFS$INNER"                    # host path of NetBox's state
VENV="$INNER/venv"; NBROOT="$INNER/root"; IRUN="$INNER/run"; ILOG="$INNER/log"
mkdir -p "$HSTATE"/{run,log} "$ROOTFS$NBROOT"/{conf,media,scripts,reports}

# Command prefix that runs a program where NetBox lives (this host, or the chroot).
if [ "$MODE" = chroot ]; then
  pre=(chroot "$ROOTFS" env -u PIP_FIND_LINKS -u PIP_CONSTRAINT PATH=/usr/local/bin:/usr/bin:/bin HOME=/root)
else
  pre=(env)
fi
pre+=(NETBOX_ROOT="$NBROOT" DJANGO_SETTINGS_MODULE=netbox.settings)
nbrun() { "${pre[@]}" "$@"; }

# ---------------------------------------------------------------- 3. venv + NetBox
installed_version() { nbrun "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("netbox"))' 2>/dev/null || true; }
# (no `-x` test from the host: in chroot mode venv/bin/python links to the chroot's /usr/bin)
if ! nbrun "$VENV/bin/python" -c 'import sys; assert sys.version_info >= (3, 12)' >/dev/null 2>&1; then
  [ "$PY" != reuse ] || PY=$(find_python) || die "no Python >= 3.12 found"
  log "creating venv with $PY ($MODE)"
  rm -rf "$ROOTFS$VENV"
  nbrun "$PY" -m venv "$VENV"
fi
if [ "$(installed_version)" != "$NB_VERSION" ]; then
  log "pip install netbox==$NB_VERSION (first time ~1 min: builds psycopg-c)"
  nbrun "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >"$HSTATE/log/pip.log" 2>&1 || true
  nbrun "$VENV/bin/python" -m pip install -q --disable-pip-version-check "netbox==$NB_VERSION" >>"$HSTATE/log/pip.log" 2>&1 \
    || { tail -n 30 "$HSTATE/log/pip.log" >&2; die "pip install netbox==$NB_VERSION failed"; }
fi
log "NetBox $(installed_version) in $ROOTFS$VENV"

# ---------------------------------------------------------------- secrets (generated once)
SECRETS="$STATE/secrets.env"
if [ ! -s "$SECRETS" ]; then
  umask 077
  cat > "$SECRETS" <<EOF
DB_PASSWORD=$(rand_alnum 32)
SECRET_KEY=$(rand_alnum 60)
TOKEN_PEPPER=$(rand_alnum 60)
ADMIN_PASSWORD=$(rand_alnum 24)
TOKEN_V1=$(rand_alnum 40)
TOKEN_V2_KEY=$(rand_alnum 12)
TOKEN_V2_SECRET=$(rand_alnum 40)
EOF
  umask 022
fi
# shellcheck disable=SC1090
. "$SECRETS"

# ---------------------------------------------------------------- 4a. PostgreSQL (private cluster)
PGDATA="$STATE/pgdata"; PGSOCK="$STATE/run/pg"
as_pg() { runuser -u postgres -- "$@"; }
install -d -o postgres -g postgres -m 700 "$PGSOCK"
touch "$STATE/log/postgres.log"; chown postgres:postgres "$STATE/log/postgres.log"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  log "initdb $PGDATA"
  rm -rf "$PGDATA"; install -d -o postgres -g postgres -m 700 "$PGDATA"
  as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres -E UTF8 --no-locale \
    --auth-local=trust --auth-host=scram-sha-256 >"$STATE/log/initdb.log" 2>&1 || die "initdb failed ($STATE/log/initdb.log)"
fi
if as_pg "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
  log "postgres already running (pid $(pid_from "$PGDATA/postmaster.pid"))"
else
  log "starting postgres on $HOST:$PG_PORT"
  as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$STATE/log/postgres.log" -w -t 60 -o \
    "-c listen_addresses=$HOST -p $PG_PORT -k $PGSOCK -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null || { tail -n 20 "$STATE/log/postgres.log" >&2; die "postgres did not start"; }
fi
psql_admin() { as_pg "$PGBIN/psql" -h "$PGSOCK" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtAX "$@"; }
if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname='netbox'")" != 1 ]; then
  psql_admin -c "CREATE ROLE netbox LOGIN PASSWORD '$DB_PASSWORD'"
fi
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname='netbox'")" != 1 ]; then
  psql_admin -c "CREATE DATABASE netbox OWNER netbox"
fi
PG_SYSID=$(psql_admin -c "SELECT system_identifier FROM pg_control_system()")

# ---------------------------------------------------------------- 4b. Redis (own instance, no persistence)
REDIS_PID=$(pid_from "$STATE/run/redis.pid")
if pid_is "$REDIS_PID" redis-server && redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; then
  log "redis already running (pid $REDIS_PID)"
else
  log "starting redis on $HOST:$REDIS_PORT"
  rm -f "$STATE/run/redis.pid"
  redis-server --bind "$HOST" --port "$REDIS_PORT" --daemonize yes --pidfile "$STATE/run/redis.pid" \
    --logfile "$STATE/log/redis.log" --dir "$STATE/redis" --save '' --appendonly no >&2
  for _ in $(seq 50); do redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
  redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG || die "redis did not start ($STATE/log/redis.log)"
fi

# ---------------------------------------------------------------- 5. NetBox configuration
cat > "$ROOTFS$NBROOT/conf/configuration.py.new" <<EOF
# Generated by netbox-up.sh - local integration-test instance on loopback only.
ALLOWED_HOSTS = ['127.0.0.1', 'localhost', '::1', '[::1]']
DATABASES = {
    'default': {
        'ENGINE': 'django.db.backends.postgresql',
        'NAME': 'netbox', 'USER': 'netbox', 'PASSWORD': '$DB_PASSWORD',
        'HOST': '$HOST', 'PORT': '$PG_PORT', 'CONN_MAX_AGE': 300,
    }
}
REDIS = {
    'tasks':   {'HOST': '$HOST', 'PORT': $REDIS_PORT, 'USERNAME': '', 'PASSWORD': '', 'DATABASE': 0, 'SSL': False},
    'caching': {'HOST': '$HOST', 'PORT': $REDIS_PORT, 'USERNAME': '', 'PASSWORD': '', 'DATABASE': 1, 'SSL': False},
}
SECRET_KEY = '$SECRET_KEY'
# v2 tokens ("Bearer nbt_<key>.<secret>") need at least one pepper (>= 50 chars).
API_TOKEN_PEPPERS = {1: '$TOKEN_PEPPER'}
# No outbound traffic: no census, no release check, no plugin catalog.
ISOLATED_DEPLOYMENT = True
CENSUS_REPORTING_ENABLED = False
RELEASE_CHECK_URL = None
TIME_ZONE = 'UTC'
DEBUG = False
LOGGING = {
    'version': 1, 'disable_existing_loggers': False,
    'handlers': {'console': {'class': 'logging.StreamHandler'}},
    'root': {'handlers': ['console'], 'level': 'WARNING'},
}
EOF
CONF="$ROOTFS$NBROOT/conf/configuration.py"
if cmp -s "$CONF.new" "$CONF"; then rm -f "$CONF.new"; else mv "$CONF.new" "$CONF"; CONF_CHANGED=1; fi
: > "$ROOTFS$NBROOT/conf/__init__.py"
chmod 600 "$CONF"

# ---------------------------------------------------------------- 5b. schema: seed restore or migrations
# A from-scratch `migrate` is 336 migrations, ~4 min of CPU here. After one, the
# migrated-but-empty schema is dumped (~90 KB gzip, no users/tokens/secrets) to
# $SEED_DIR/netbox-<version>-pg<major>.sql.gz; a fresh database restores that
# instead (~1 s) and then runs `migrate` as a no-op check (~8 s). Point
# NETBOX_SEED_DIR at a committed folder to make fresh CI machines fast too.
SEED_DIR="${NETBOX_SEED_DIR:-$STATE/seed}"                  # where a new dump is written
SEED_DIRS=("$SEED_DIR")                                      # where dumps are looked for
[ -n "${NETBOX_SEED_DIR:-}" ] || SEED_DIRS+=("$SCRIPT_DIR/../tests/fixtures/netbox-seed")   # the one shipped in the repo
PG_MAJOR=$(( $(psql_admin -c "SHOW server_version_num") / 10000 ))
psql_nb() { as_pg "$PGBIN/psql" -h "$PGSOCK" -p "$PG_PORT" -U netbox -d netbox -v ON_ERROR_STOP=1 -qtAX "$@"; }
pick_seed() {  # newest dump of this NetBox version from a PostgreSQL major <= this server's
  local d f m best="" bestm=0
  for d in "${SEED_DIRS[@]}"; do for f in "$d/netbox-$NB_VERSION-pg"*.sql.gz; do
    [ -s "$f" ] || continue
    m=${f##*-pg}; m=${m%.sql.gz}
    [[ "$m" =~ ^[0-9]+$ ]] && [ "$m" -le "$PG_MAJOR" ] && [ "$m" -gt "$bestm" ] && { best=$f; bestm=$m; }
  done; done
  [ -n "$best" ] && printf '%s' "$best"
}
MARK="$STATE/migrated"
if [ "$(cat "$MARK" 2>/dev/null)" != "$PG_SYSID $NB_VERSION" ]; then
  FRESH=$(psql_nb -c "SELECT to_regclass('public.django_migrations') IS NULL")
  RESTORED=""
  if [ "$FRESH" = t ] && [ "${NETBOX_NO_SEED:-0}" != 1 ] && SEED=$(pick_seed); then
    log "restoring migrated schema from $SEED"
    gunzip -c "$SEED" | psql_nb >"$STATE/log/seed-restore.log" 2>&1 \
      || { tail -n 20 "$STATE/log/seed-restore.log" >&2; die "seed restore failed (NETBOX_NO_SEED=1 skips it; drop the database to retry)"; }
    RESTORED=1
  fi
  log "running migrations ($([ -n "$RESTORED" ] && echo 'no-op check, ~10 s' || echo 'from scratch, ~4 min on 2 cores'))"
  t=$(date +%s)
  nbrun "$VENV/bin/netbox" migrate --no-input >"$HSTATE/log/migrate.log" 2>&1 \
    || { tail -n 30 "$HSTATE/log/migrate.log" >&2; die "migrate failed"; }
  log "migrations done in $(( $(date +%s) - t ))s"
  if [ "$FRESH" = t ] && [ -z "$RESTORED" ] && mkdir -p "$SEED_DIR" 2>/dev/null && [ -w "$SEED_DIR" ]; then
    out="$SEED_DIR/netbox-$NB_VERSION-pg$PG_MAJOR.sql.gz"
    if as_pg "$PGBIN/pg_dump" -h "$PGSOCK" -p "$PG_PORT" -U netbox --no-owner --no-privileges netbox | gzip -9 > "$out.tmp"; then
      mv "$out.tmp" "$out"; log "saved seed $out ($(du -h "$out" | cut -f1))"
    else
      rm -f "$out.tmp"; log "warning: could not save seed dump"
    fi
  fi
  echo "$PG_SYSID $NB_VERSION" > "$MARK"
fi

# ---------------------------------------------------------------- 5c. superuser + tokens (idempotent)
cat > "$HSTATE/run/bootstrap.py" <<'EOF'
import os, django
django.setup()
from django.contrib.auth import get_user_model
from users.models import Token
U = get_user_model()
u, created = U.objects.get_or_create(username='admin', defaults={'email': 'admin@example.invalid'})
u.is_superuser = True; u.is_staff = True; u.is_active = True
u.set_password(os.environ['NB_ADMIN_PASSWORD']); u.save()
v1 = os.environ['NB_TOKEN_V1']
if not Token.objects.filter(version=1, plaintext=v1).exists():
    Token(version=1, user=u, token=v1, description='netbox-up v1').save()
key, secret = os.environ['NB_TOKEN_V2_KEY'], os.environ['NB_TOKEN_V2_SECRET']
t = Token.objects.filter(version=2, key=key).first()
if t is None or not t.validate(secret):
    Token.objects.filter(version=2, key=key).delete()
    Token(version=2, user=u, key=key, token=secret, description='netbox-up v2').save()
print('admin user ok (created=%s), tokens ok' % created)
EOF
nbrun env NB_ADMIN_PASSWORD="$ADMIN_PASSWORD" NB_TOKEN_V1="$TOKEN_V1" NB_TOKEN_V2_KEY="$TOKEN_V2_KEY" \
  NB_TOKEN_V2_SECRET="$TOKEN_V2_SECRET" "$VENV/bin/python" "$IRUN/bootstrap.py" >"$HSTATE/log/bootstrap.log" 2>&1 \
  || { tail -n 30 "$HSTATE/log/bootstrap.log" >&2; die "superuser/token bootstrap failed"; }

# ---------------------------------------------------------------- 6. gunicorn on 127.0.0.1:$NB_PORT
URL="http://$HOST:$NB_PORT"
api_ok() { curl -fsS -m 5 -o /dev/null -H "Authorization: Token $TOKEN_V1" -H 'Accept: application/json' "$URL/api/status/" 2>/dev/null; }
GPID=$(pid_from "$STATE/run/gunicorn.pid")
if pid_is "$GPID" gunicorn && [ -z "${CONF_CHANGED:-}" ] && api_ok; then
  log "netbox already running (gunicorn pid $GPID)"
else
  if pid_is "$GPID" gunicorn; then log "restarting gunicorn (pid $GPID)"; kill -TERM "$GPID" || true
    for _ in $(seq 100); do pid_alive "$GPID" || break; sleep 0.2; done; fi
  if curl -s -m 2 -o /dev/null "$URL/" 2>/dev/null; then die "$HOST:$NB_PORT is already in use by another process"; fi
  rm -f "$STATE/run/gunicorn.pid" "$HSTATE/run/gunicorn.pid"
  log "starting gunicorn on $HOST:$NB_PORT ($WORKERS workers x $THREADS threads)"
  setsid "${pre[@]}" "$VENV/bin/gunicorn" netbox.wsgi:application \
    --bind "$HOST:$NB_PORT" --workers "$WORKERS" --threads "$THREADS" --timeout 120 \
    --max-requests 5000 --max-requests-jitter 500 --pid "$IRUN/gunicorn.pid" \
    --error-logfile "$ILOG/gunicorn.log" --access-logfile "$ILOG/access.log" --capture-output \
    </dev/null >>"$HSTATE/log/gunicorn.out" 2>&1 &
  BGPID=$!; disown || true
  deadline=$(( $(date +%s) + START_TIMEOUT ))
  until api_ok; do
    if ! pid_alive "$BGPID" && ! pid_is "$(pid_from "$HSTATE/run/gunicorn.pid")" gunicorn; then
      tail -n 30 "$HSTATE/log/gunicorn.log" "$HSTATE/log/gunicorn.out" >&2 2>/dev/null; die "gunicorn exited during startup"
    fi
    [ "$(date +%s)" -lt "$deadline" ] || { tail -n 30 "$HSTATE/log/gunicorn.log" >&2; die "netbox not answering on $URL"; }
    sleep 0.5
  done
  GPID=$(pid_from "$HSTATE/run/gunicorn.pid")
  [ "$HSTATE/run/gunicorn.pid" = "$STATE/run/gunicorn.pid" ] || echo "$GPID" > "$STATE/run/gunicorn.pid"
  log "netbox up (gunicorn pid $GPID)"
fi

log "ready in $(( $(date +%s) - T0 ))s; admin password in $SECRETS; stop with netbox-down.sh"
# NETBOX_TOKEN is the v1 token (header "Authorization: Token <it>") unless NETBOX_TOKEN_VERSION=2;
# both are always exported. pynetbox >= 7.5 picks the header from the token's form itself.
TOKEN_V2="nbt_$TOKEN_V2_KEY.$TOKEN_V2_SECRET"
if [ "${NETBOX_TOKEN_VERSION:-1}" = 2 ]; then TOKEN="$TOKEN_V2"; AUTH="Bearer $TOKEN_V2"; else TOKEN="$TOKEN_V1"; AUTH="Token $TOKEN_V1"; fi
echo "export NETBOX_ADMIN_USER=admin"
echo "export NETBOX_TOKEN_V1=$TOKEN_V1"
echo "export NETBOX_TOKEN_V2=$TOKEN_V2"
echo "export NETBOX_AUTH_HEADER='Authorization: $AUTH'"
echo "export NETBOX_URL=$URL"
echo "export NETBOX_TOKEN=$TOKEN"
