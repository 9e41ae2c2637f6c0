#!/usr/bin/env bash
# netbox-smoke.sh - allocate and release one IP on the local NetBox started by netbox-up.sh.
# Needs NETBOX_URL and NETBOX_TOKEN (eval "$(scripts/netbox-up.sh)" first). Loopback only:
# 10.99.0.0/24 is just data inside NetBox, nothing is ever sent to it.
set -euo pipefail
: "${NETBOX_URL:?run: eval \"\$(scripts/netbox-up.sh)\"}" "${NETBOX_TOKEN:?}"
case "$NETBOX_TOKEN" in nbt_*) AUTH="Bearer $NETBOX_TOKEN" ;; *) AUTH="Token $NETBOX_TOKEN" ;; esac
PREFIX="${NETBOX_SMOKE_PREFIX:-10.99.0.0/24}"; TAG=itest-pool
pass=0; fail=0
ok()  { pass=$((pass + 1)); echo "ok   - $*"; }
bad() { fail=$((fail + 1)); echo "FAIL - $*"; }
api() {  # api METHOD PATH [JSON] -> body on stdout, HTTP code in $CODE
  local out
  out=$(curl -sS -m 30 -X "$1" -H "Authorization: $AUTH" -H 'Content-Type: application/json' \
        -H 'Accept: application/json' -w '\n%{http_code}' "$NETBOX_URL$2" ${3:+-d "$3"})
  CODE=${out##*$'\n'}; BODY=${out%$'\n'*}
}
jget() { python3 -c 'import sys, json; d = json.load(sys.stdin); print(eval(sys.argv[1], {"d": d}))' "$1" <<<"$BODY"; }

api GET "/api/extras/tags/?slug=$TAG"
[ "$(jget 'd["count"]')" != 0 ] || api POST /api/extras/tags/ "{\"name\":\"$TAG\",\"slug\":\"$TAG\"}"
api GET "/api/ipam/prefixes/?prefix=$PREFIX"
if [ "$(jget 'd["count"]')" = 0 ]; then
  api POST /api/ipam/prefixes/ "{\"prefix\":\"$PREFIX\",\"status\":\"active\",\"tags\":[{\"slug\":\"$TAG\"}]}"
  [ "$CODE" = 201 ] && ok "created prefix $PREFIX" || bad "create prefix: HTTP $CODE $BODY"
  PID=$(jget 'd["id"]')
else
  PID=$(jget 'd["results"][0]["id"]')
fi
api GET "/api/ipam/prefixes/?tag=$TAG&prefix=$PREFIX"
[ "$(jget 'd["count"]')" = 1 ] && ok "prefix found by ?prefix= and ?tag=" || bad "lookup by tag: $BODY"

api POST "/api/ipam/prefixes/$PID/available-ips/" \
  '{"status":"active","description":"netbox-smoke","dns_name":"smoke.example.test"}'
if [ "$CODE" = 201 ]; then
  IPID=$(jget 'd["id"]'); ADDR=$(jget 'd["address"]')
  ok "allocated $ADDR (id $IPID) from $PREFIX"
  api DELETE "/api/ipam/ip-addresses/$IPID/"
  [ "$CODE" = 204 ] && ok "released $ADDR" || bad "delete: HTTP $CODE $BODY"
  api GET "/api/ipam/ip-addresses/$IPID/"
  [ "$CODE" = 404 ] && ok "gone after delete" || bad "still there: HTTP $CODE"
else
  bad "allocate: HTTP $CODE $BODY"
fi
echo "smoke: $pass passed, $fail failed"
[ "$fail" = 0 ]
