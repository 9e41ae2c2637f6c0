#!/usr/bin/env bash
# netbox-down.sh - stop the NetBox, Redis and PostgreSQL that netbox-up.sh started,
# using only its pid files under $NETBOX_STATE_DIR (default /var/tmp/netbox-local).
# A pid is signalled only if that process's command line still names the expected
# program (guards against pid reuse). Nothing else on the machine is touched.
#
#   scripts/netbox-down.sh            # stop; keep venv, database and tokens for a fast next start
#   scripts/netbox-down.sh --purge    # stop, then delete the whole state dir
set -uo pipefail

STATE="${NETBOX_STATE_DIR:-/var/tmp/netbox-local}"
PURGE=0
case "${1:-}" in
  --purge) PURGE=1 ;;
  "") ;;
  *) echo "usage: $0 [--purge]" >&2; exit 2 ;;
esac
log() { echo "[netbox-down] $*" >&2; }

stop_pid() {  # stop_pid NAME PIDFILE CMDLINE-WORD SIGNAL KEEP-PIDFILE(0/1)
  local name=$1 file=$2 word=$3 sig=$4 keep=$5 pid
  pid=$(head -n1 "$file" 2>/dev/null | tr -dc '0-9')
  if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
    log "$name: not running"; [ "$keep" = 1 ] || rm -f "$file"; return 0
  fi
  if ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$word"; then
    log "$name: pid $pid is not '$word' any more; not touching it"; [ "$keep" = 1 ] || rm -f "$file"; return 0
  fi
  kill "-$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name: pid $pid still alive after 30 s, sending SIGKILL"; kill -KILL "$pid" 2>/dev/null || true
  fi
  [ "$keep" = 1 ] || rm -f "$file"
  log "$name: stopped (pid $pid)"
}

[ -d "$STATE" ] || { log "nothing at $STATE"; exit 0; }
stop_pid netbox   "$STATE/run/gunicorn.pid"     gunicorn     TERM 0
stop_pid redis    "$STATE/run/redis.pid"        redis-server TERM 0
# SIGINT = PostgreSQL "fast" shutdown; the postmaster removes its own pid file.
stop_pid postgres "$STATE/pgdata/postmaster.pid" postgres    INT  1

if [ "$PURGE" = 1 ]; then
  if [ ! -f "$STATE/.netbox-local" ]; then
    log "not purging $STATE: no .netbox-local marker (not created by netbox-up.sh)"; exit 1
  fi
  if awk -v s="$STATE" 'index($2, s) == 1 { found = 1 } END { exit !found }' /proc/self/mounts; then
    log "not purging $STATE: something is mounted below it"; exit 1
  fi
  rm -rf -- "$STATE"
  log "purged $STATE"
fi
