#!/usr/bin/env bash
# The embedded-mode demonstration (scripts/demo.sh installs first, then runs this).
#
# As root: a network-namespace sandbox stands for an edge gateway and its LAN
#
#     [gateway ns]  eth0 172.31.255.1/24 fd00:db8:ff::1/64, kube-lb0     purelb embedded runs here
#          |
#     [bridge ns]   br0                                                  the LAN switch
#          |
#     [client ns]   eth0 172.31.255.100/24 fd00:db8:ff::100/64           a machine on the LAN
#
# purelb embedded starts in the gateway namespace with examples/ (a local pool on the LAN
# subnet, a virtual pool for BIRD, a dual-stack pool, and Services), then the demo prints
# the allocated addresses, the interfaces, `kubectl get svc`, and checks from the client
# that every address answers (ping and a TCP echo served in the gateway namespace).
# Without root: the same process with --no-netlink (allocate and plan, touch no interface).
#
# Usage: scripts/demo-embedded.sh [--once] [--no-netlink]
#   --once (or stdin not a terminal): run, print, tear down. Otherwise wait for Ctrl-C.
#   --no-netlink: the non-root mode, even as root (no sandbox, no interface touched).
# Environment: PURELB_DEMO_PREFIX (namespace name prefix, default pld<pid>),
#              PURELB (the purelb command, default .venv/bin/purelb).
set -euo pipefail
cd "$(dirname "$0")/.."

ONCE=0
NO_NETLINK=0
[ "$(id -u)" = 0 ] || NO_NETLINK=1
for arg in "$@"; do
  case "$arg" in
    --once) ONCE=1 ;;
    --no-netlink) NO_NETLINK=1 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "demo: unknown argument $arg (use --once, --no-netlink)" >&2; exit 2 ;;
  esac
done
[ -t 0 ] || ONCE=1

PURELB=${PURELB:-.venv/bin/purelb}
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PURELB" ] || { echo "demo: $PURELB not found; run scripts/demo.sh (it installs)" >&2; exit 1; }
PREFIX=${PURELB_DEMO_PREFIX:-pld$$}
GW=${PREFIX}gw; LAN=${PREFIX}lan; BR=${PREFIX}br   # <= 15 characters with a 7-digit pid
ECHO_PORT=7007
# In the sandbox the gateway namespace has its own loopback; on the host take a free port.
if [ "$NO_NETLINK" = 0 ]; then LISTEN=127.0.0.1:6443; else LISTEN=127.0.0.1:0; fi
READY_TIMEOUT_S=30
ADDR_TIMEOUT_S=30
STATE=$(mktemp -d "${TMPDIR:-/tmp}/purelb-demo.XXXXXX")
LOG=$STATE/embedded.log
EMBEDDED_PID=""
ECHO_PID=""

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

cleanup() {
  set +e
  trap - EXIT INT TERM
  [ -n "$ECHO_PID" ] && kill "$ECHO_PID" 2>/dev/null
  if [ -n "$EMBEDDED_PID" ]; then
    kill -TERM "$EMBEDDED_PID" 2>/dev/null            # the agent withdraws its addresses
    for _ in $(seq 50); do kill -0 "$EMBEDDED_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$EMBEDDED_PID" 2>/dev/null
    wait "$EMBEDDED_PID" 2>/dev/null
  fi
  if [ "$NO_NETLINK" = 0 ]; then
    for ns in "$GW" "$LAN" "$BR"; do
      ip netns list 2>/dev/null | grep -qw "^$ns" || continue
      for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
      ip netns del "$ns" 2>/dev/null
    done
  fi
  rm -rf "$STATE"
  echo "demo: sandbox removed"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# "ip netns exec" execs the program, so $! below is purelb itself (killed by PID at cleanup)
if [ "$NO_NETLINK" = 0 ]; then GWEXEC=(ip netns exec "$GW"); else GWEXEC=(); fi
in_gw() { "${GWEXEC[@]}" "$@"; }

start_embedded() {
  # $@: extra flags. Starts purelb embedded and waits for its ready line.
  "${GWEXEC[@]}" "$PURELB" embedded --config examples --state-dir "$STATE/state" \
      --listen "$LISTEN" --node-name gateway "$@" >"$STATE/ready" 2>"$LOG" &
  EMBEDDED_PID=$!
  for _ in $(seq $((READY_TIMEOUT_S * 10))); do
    grep -q "purelb embedded ready" "$STATE/ready" && { cat "$STATE/ready"; return 0; }
    kill -0 "$EMBEDDED_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "demo: purelb embedded did not start; its log:" >&2
  tail -30 "$LOG" >&2
  exit 1
}

export KUBECONFIG=$STATE/state/kubeconfig KUBECACHEDIR=$STATE/kubecache

wait_addresses() {
  # prints "namespace/name address..." once every LoadBalancer Service has its addresses
  local want=("$@")
  for _ in $(seq $((ADDR_TIMEOUT_S * 10))); do
    if out=$(in_gw "$PYTHON" - "${want[@]}" <<'EOF'
import json, sys, urllib.request, yaml, os
cfg = yaml.safe_load(open(os.environ["KUBECONFIG"]))
url = cfg["clusters"][0]["cluster"]["server"] + "/api/v1/services"
items = json.load(urllib.request.urlopen(url, timeout=5))["items"]
got = {}
for s in items:
    if s["spec"].get("type") != "LoadBalancer":
        continue
    ips = [i["ip"] for i in (s.get("status", {}).get("loadBalancer", {}).get("ingress") or [])]
    want = len(s["spec"].get("ipFamilies") or ["IPv4"])
    if len(ips) < want:
        sys.exit(1)
    got[s["metadata"]["namespace"] + "/" + s["metadata"]["name"]] = ips
if not got:
    sys.exit(1)
for k in sorted(got):
    print(k, " ".join(got[k]))
EOF
    ); then
      echo "$out"; return 0
    fi
    sleep 0.1
  done
  echo "demo: not every Service got its addresses in ${ADDR_TIMEOUT_S}s; log:" >&2
  tail -30 "$LOG" >&2
  exit 1
}

kubectl_table() {
  if command -v kubectl >/dev/null 2>&1 && in_gw kubectl get svc -o wide 2>"$STATE/kubectl.err"; then
    return 0
  fi
  echo "(kubectl not usable here: $(head -1 "$STATE/kubectl.err" 2>/dev/null); purelb status instead)"
  in_gw "$PURELB" status --kubeconfig "$KUBECONFIG"
}

if [ "$NO_NETLINK" = 1 ]; then
  if [ "$(id -u)" != 0 ]; then
    say "Not root: network namespaces need root, so this runs the non-root mode"
    echo "(re-run as root, e.g. 'sudo bash scripts/demo.sh', for the full sandbox with traffic)"
  else
    say "--no-netlink: allocate and plan only, no sandbox, no interface touched"
  fi
  start_embedded --no-netlink
  say "Allocated addresses"
  wait_addresses
  sleep 1   # the plan follows the allocations within debounce_s
  say "purelb status (groups, Services, the plan this gateway would apply)"
  "$PURELB" status --kubeconfig "$KUBECONFIG"
  say "kubectl get svc"
  kubectl_table
  exit 0
fi

say "Building the sandbox: gateway $GW, LAN client $LAN, switch $BR"
ip netns add "$BR"; ip netns add "$GW"; ip netns add "$LAN"
for ns in "$GW" "$LAN"; do
  # before the veth exists, so eth0 inherits them (netns-bird.md §1)
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
     net.ipv6.conf.all.keep_addr_on_down=1 net.ipv6.conf.default.keep_addr_on_down=1
  ip -n "$ns" link set lo up
done
ip -n "$BR" link add br0 type bridge stp_state 0 mcast_snooping 0
ip -n "$BR" link set br0 up
ip -n "$BR" link add gw type veth peer name eth0 netns "$GW"
ip -n "$BR" link add lan type veth peer name eth0 netns "$LAN"
for port in gw lan; do ip -n "$BR" link set "$port" master br0 up; done
ip -n "$GW" addr add 172.31.255.1/24 dev eth0
ip -n "$GW" addr add fd00:db8:ff::1/64 dev eth0 nodad
ip -n "$GW" link set eth0 up
# The LAN's upstream router (not simulated): makes eth0 the default-route NIC, which the
# LBNodeAgent's "localint: default" selects for local addresses.
ip -n "$GW" route add default via 172.31.255.254
ip -n "$GW" -6 route add default via fd00:db8:ff::fffe
ip -n "$LAN" addr add 172.31.255.100/24 dev eth0
ip -n "$LAN" addr add fd00:db8:ff::100/64 dev eth0 nodad
ip -n "$LAN" link set eth0 up
# What BIRD/FRR on the gateway would advertise for the virtual pool (examples/virtual-pool.yaml)
ip -n "$LAN" route add 198.51.100.0/24 via 172.31.255.1
ip -n "$LAN" -6 route add 2001:db8:51::/64 via fd00:db8:ff::1
ip -n "$LAN" -br addr show eth0

say "Starting purelb embedded in the gateway namespace (API on 127.0.0.1:6443 there)"
start_embedded

say "Allocated addresses (Service -> addresses)"
ADDRS=$(wait_addresses)
echo "$ADDRS"
sleep 1.5   # the agent's plan follows the allocations within debounce_s

say "Gateway interfaces: the NIC (local pool) and kube-lb0 (virtual pool)"
ip -n "$GW" -br addr show
echo "kube-lb0 kind: $(ip -n "$GW" -d link show kube-lb0 | awk 'NR==3{print $1}')"

say "kubectl get svc (KUBECONFIG=$KUBECONFIG)"
kubectl_table

say "purelb status"
in_gw "$PURELB" status --kubeconfig "$KUBECONFIG"

say "Reachability from the LAN client"
ip netns exec "$GW" "$PYTHON" - "$ECHO_PORT" <<'EOF' &
import socket, sys, threading
port = int(sys.argv[1])
srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("::", port)); srv.listen(16)
def serve(c):
    with c:
        data = c.recv(1024)
        local = c.getsockname()[0].removeprefix("::ffff:")
        c.sendall(b"echo from gateway " + local.encode() + b": " + data)
while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
EOF
ECHO_PID=$!
sleep 0.5
failures=0
for addr in $(echo "$ADDRS" | cut -d' ' -f2-); do
  if ip netns exec "$LAN" ping -c 1 -W 2 "$addr" >/dev/null 2>&1; then ping_ok=ok; else ping_ok=FAIL; fi
  reply=$(ip netns exec "$LAN" "$PYTHON" - "$addr" "$ECHO_PORT" <<'EOF' 2>&1
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3) as s:
    s.sendall(b"hello"); print(s.recv(1024).decode())
EOF
  ) && tcp_ok=ok || tcp_ok=FAIL
  printf '%-22s ping %-4s tcp %-4s %s\n' "$addr" "$ping_ok" "$tcp_ok" "$reply"
  [ "$ping_ok" = ok ] && [ "$tcp_ok" = ok ] || failures=$((failures + 1))
done
if [ "$failures" = 0 ]; then
  echo "demo: every allocated address is reachable from the LAN"
else
  echo "demo: $failures address(es) not reachable" >&2
fi

if [ "$ONCE" = 0 ]; then
  say "Running. Try: sudo ip netns exec $GW kubectl --kubeconfig $KUBECONFIG get svc"
  echo "Press Ctrl-C to tear the sandbox down."
  wait "$EMBEDDED_PID" || true
fi
[ "$failures" = 0 ]
