#!/usr/bin/env bash
# End-to-end in a kind cluster (needs a Docker engine, kind and kubectl):
#   1. create a kind cluster (1 control plane + 2 workers),
#   2. build the purelb image from the repository's Dockerfile and load it into the nodes,
#   3. install purelb (deploy/install.sh) with a ServiceGroup whose pool lies inside the
#      kind Docker network, so the addresses are *local* on the nodes' eth0,
#   4. run an echo Deployment, expose it as type LoadBalancer (IPv4), wait for the address,
#   5. check the address is on exactly one node's eth0 and answers HTTP from a container on
#      the kind network (outside the cluster, like a LAN client),
#   6. delete the Service and check the address is withdrawn,
#   7. delete the cluster (also on failure, unless KEEP_CLUSTER=1).
# Exit codes: 0 passed, 1 failed, 77 skipped (no Docker engine / kind here).
set -euo pipefail

CLUSTER=${CLUSTER:-purelb-e2e}
IMAGE=${IMAGE:-purelb:e2e}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

skip() { echo "kind e2e: SKIPPED: $*" >&2; exit 77; }
log() { printf '[kind-e2e] %s\n' "$*" >&2; }

command -v docker >/dev/null 2>&1 || skip "docker is not installed"
docker info >/dev/null 2>&1 || skip "no Docker engine is running (docker info failed)"
command -v kind >/dev/null 2>&1 || skip "kind is not installed (https://kind.sigs.k8s.io)"
command -v kubectl >/dev/null 2>&1 || skip "kubectl is not installed"

cleanup() {
  if [ "${KEEP_CLUSTER:-0}" != 1 ]; then
    log "deleting cluster $CLUSTER"
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

log "creating cluster $CLUSTER"
cat <<KIND | kind create cluster --name "$CLUSTER" --config - --wait 120s
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
  - role: worker
  - role: worker
KIND
export KUBECONFIG
KUBECONFIG=$(mktemp)
kind get kubeconfig --name "$CLUSTER" >"$KUBECONFIG"

log "building $IMAGE"
docker build -t "$IMAGE" "$repo"
kind load docker-image "$IMAGE" --name "$CLUSTER"

# A pool at the top of the kind network's IPv4 subnet (kind hands out node addresses
# from the bottom).
subnet=$(docker network inspect kind -f '{{range .IPAM.Config}}{{.Subnet}} {{end}}' | tr ' ' '\n' | grep -F . | head -1)
pool=$(python3 - "$subnet" <<'PY'
import ipaddress, sys
net = ipaddress.ip_network(sys.argv[1])
last = net.broadcast_address - 1
print(f"{last - 20}-{last}")
PY
)
log "kind network $subnet, pool $pool"

log "installing purelb"
work=$(mktemp -d)
cp -r "$repo/deploy/." "$work/"
(cd "$work" && kubectl kustomize . >/dev/null)
sed -i "s#ghcr.io/purelb-py/purelb:0.1.0#$IMAGE#" "$work/allocator.yaml" "$work/agent.yaml"
cat >"$work/defaults.yaml" <<SG
apiVersion: purelb.io/v1
kind: LBNodeAgent
metadata: {name: default, namespace: purelb-system}
spec:
  local: {localint: default, extlbint: kube-lb0, sendgarp: true}
---
apiVersion: purelb.io/v1
kind: ServiceGroup
metadata: {name: default, namespace: purelb-system}
spec:
  local:
    v4pools:
      - {subnet: "$subnet", pool: "$pool", aggregation: default}
SG
bash "$work/install.sh"
kubectl -n purelb-system rollout status deploy/allocator --timeout=180s
kubectl -n purelb-system rollout status ds/lbnodeagent --timeout=180s

log "creating an echo Service"
kubectl create deployment echo --image=registry.k8s.io/e2e-test-images/agnhost:2.53 -- /agnhost netexec --http-port=8080
kubectl rollout status deploy/echo --timeout=180s
kubectl expose deployment echo --type=LoadBalancer --port=80 --target-port=8080
for _ in $(seq 60); do
  vip=$(kubectl get svc echo -o jsonpath='{.status.loadBalancer.ingress[0].ip}')
  [ -n "$vip" ] && break
  sleep 1
done
[ -n "${vip:-}" ] || { log "FAIL: no address allocated"; kubectl describe svc echo; exit 1; }
log "allocated $vip"

holders=0
for node in $(kind get nodes --name "$CLUSTER"); do
  if docker exec "$node" ip -4 -o addr show dev eth0 | grep -qF " $vip/"; then
    holders=$((holders + 1)); log "$vip is on $node"
  fi
done
[ "$holders" = 1 ] || { log "FAIL: $vip is on $holders nodes, expected exactly 1"; exit 1; }

log "reaching $vip from the kind network"
docker run --rm --network kind curlimages/curl:8.10.1 -sS --max-time 10 "http://$vip/hostname" \
  || { log "FAIL: $vip did not answer"; exit 1; }

log "deleting the Service"
kubectl delete svc echo
for _ in $(seq 30); do
  left=0
  for node in $(kind get nodes --name "$CLUSTER"); do
    docker exec "$node" ip -4 -o addr show dev eth0 | grep -qF " $vip/" && left=1
  done
  [ "$left" = 0 ] && break
  sleep 1
done
[ "$left" = 0 ] || { log "FAIL: $vip still configured after the Service was deleted"; exit 1; }
log "PASSED"
