#!/usr/bin/env bash
# Device management through the API against the real daemon, with lwm2m-fleet devices of LwM2M
# 1.0 (TLV), 1.1 (SenML CBOR) and 1.2 (LwM2M CBOR): Read / Write / Execute / Discover / Create /
# Delete as operation resources with ?wait, formats per request, problem+json for bad input,
# and timeouts for a silent device.
. "$(dirname "$0")/lib.sh"

FLEET=${LW_FLEET:-$LW_TOP/build/bin/lwm2m-fleet}
if [ ! -x "$FLEET" ] || ! command -v python3 >/dev/null; then
  echo "  SKIP: lwm2m-fleet or python3 missing: device management tests skipped"
  finish
  exit 0
fi
jq_() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)" 2>/dev/null; }

log=$LW_TMP/dm.log
tok=$LW_TMP/dm-token
(umask 077; head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' > "$tok")
T=$(cat "$tok")
if ! start_daemon "$log" --set "api.bootstrap_token_file=$tok" \
  --set queue.awake_time=1s --set queue.max_held=4; then
  fail "daemon starts"
  finish
  exit 0
fi
pass "daemon starts"
A=http://127.0.0.1:$LW_API_PORT
body=$LW_TMP/dm-body
# api METHOD PATH [json]: status code on stdout, body in $body.
api() {
  local m=$1 p=$2
  if [ $# -ge 3 ]; then
    curl -s -o "$body" -w '%{http_code}' -X "$m" -H "Authorization: Bearer $T" \
      -H 'Content-Type: application/json' --data "$3" "$A$p"
  else
    curl -s -o "$body" -w '%{http_code}' -X "$m" -H "Authorization: Bearer $T" "$A$p"
  fi
}
field() { jq_ "$1" < "$body"; }

cat > "$LW_TMP/dm-fleet.ini" <<INI
[fleet]
rate = 100/s
duration = 600s
deregister = false
[group a]
count = 1
endpoint = dm-v11-{n}
lwm2m = 1.1
objects = 3,4,5,10243,19
lifetime = 300s
send_interval = 2s
format = senml-cbor
[group b]
count = 1
endpoint = dm-v10-{n}
lwm2m = 1.0
objects = 3,4,10243,19
lifetime = 300s
send_interval = 0
format = tlv
[group c]
count = 1
endpoint = dm-v12-{n}
lwm2m = 1.2
objects = 3,4,10243,19
lifetime = 300s
send_interval = 0
format = lwm2m-cbor
[group q]
count = 1
endpoint = dm-q-{n}
lwm2m = 1.1
objects = 3,4,10243
lifetime = 60s
update_interval = 4s
send_interval = 0
format = senml-cbor
queue_mode = true
awake_time = 2s
INI
"$FLEET" --fleet "$LW_TMP/dm-fleet.ini" --server "coap://127.0.0.1:$LW_COAP_PORT" --quiet \
  >"$LW_TMP/dm-fleet.out" 2>&1 &
fleet_pid=$!
for _ in $(seq 1 50); do
  n=0
  for ep in dm-v10-0 dm-v11-0 dm-v12-0 dm-q-0; do
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $T" "$A/api/v1/devices/$ep")" = 200 ] && n=$((n + 1))
  done
  [ "$n" = 4 ] && break
  sleep 0.1
done
check "four fleet devices registered" test "$n" = 4

# ---- Read in each version's default format, and per request ----------------------------------
for v in 10:tlv 11:senml-cbor 12:lwm2m-cbor; do
  ep=dm-v${v%%:*}-0 fmt=${v#*:}
  check "$ep: GET data/3/0 answers 200 (wait)" test "$(api GET "/api/v1/devices/$ep/data/3/0")" = 200
  check "$ep: read succeeded with 2.05 in $fmt" \
    test "$(field '(d["state"], d["coap_code"], d["format"])')" = "('succeeded', '2.05', '$fmt')"
  check "$ep: /3/0/2 (serial) is the endpoint, typed string" \
    test "$(field '[(v["type"], v["value"]) for v in d["result"]["values"] if v["path"]=="/3/0/2"][0]')" = "('string', '$ep')"
done
check "time values carry RFC 3339 and epoch" \
  test "$(field '[("epoch" in v and v["value"].endswith("Z")) for v in d["result"]["values"] if v["type"]=="time"][0]')" = True
check "integers are JSON numbers" \
  test "$(field '[type(v["value"]).__name__ for v in d["result"]["values"] if v["path"]=="/3/0/9"][0]')" = int
for f in text tlv senml-json senml-cbor json lwm2m-cbor; do
  api GET "/api/v1/devices/dm-v11-0/data/3/0/0?format=$f" >/dev/null
  check "read /3/0/0 as $f" test "$(field '(d["format"], d["result"]["values"][0]["value"])')" = "('$f', 'lwm2md-fleet')"
done
check "multi-instance resource read /3/0/6" \
  test "$(api GET /api/v1/devices/dm-v10-0/data/3/0/6)" = 200 -a "$(field 'd["result"]["values"][0]["path"]')" = /3/0/6/0
check "resource instance read /3/0/6/0" \
  test "$(api GET /api/v1/devices/dm-v11-0/data/3/0/6/0)" = 200 -a "$(field 'd["state"]')" = succeeded
check "read of an absent resource: operation failed with 4.04" \
  test "$(api GET /api/v1/devices/dm-v11-0/data/3/0/99)" = 200 -a "$(field '(d["state"], d["coap_code"])')" = "('failed', '4.04')"

# ---- operation resources -----------------------------------------------------------------------
code=$(curl -s -D "$LW_TMP/dm-hdr" -o "$body" -w '%{http_code}' -H "Authorization: Bearer $T" \
  "$A/api/v1/devices/dm-v11-0/data/3/0?wait=0")
check "wait=0 answers 202" test "$code" = 202
loc=$(grep -i '^Location:' "$LW_TMP/dm-hdr" | tr -d '\r' | cut -d' ' -f2)
check "202 carries Location: /api/v1/operations/{id}" bash -c "[[ '$loc' == /api/v1/operations/* ]]"
sleep 0.3
check "GET the operation: succeeded with its result" \
  test "$(api GET "$loc")" = 200 -a "$(field '(d["state"], len(d["result"]["values"]) > 5)')" = "('succeeded', True)"
check "operation has timings" test "$(field 'd["created_at"] is not None and d["completed_at"] is not None and d["duration_ms"] >= 0')" = True
check "unknown operation: 404" test "$(api GET /api/v1/operations/999999)" = 404
check "operation events are posted" grep -q '"msg":"operation' "$log"

# ---- Write / Execute / Discover / Create / Delete ----------------------------------------------
check "write (replace) /1/0/3 in TLV (1.0)" \
  test "$(api PUT /api/v1/devices/dm-v10-0/data/1/0/3 '{"values":[{"path":"/1/0/3","value":30}]}')" = 200 -a "$(field '(d["state"], d["coap_code"])')" = "('succeeded', '2.04')"
check "partial update /1/0 in SenML CBOR (1.1)" \
  test "$(api PATCH /api/v1/devices/dm-v11-0/data/1/0 '{"values":[{"path":"/1/0/2","value":5},{"path":"/1/0/3","value":60}]}')" = 200 -a "$(field 'd["state"]')" = succeeded
check "write time /3/0/13 as RFC 3339 in LwM2M CBOR (1.2)" \
  test "$(api PUT /api/v1/devices/dm-v12-0/data/3/0/13 '{"values":[{"path":"/3/0/13","value":"2026-01-02T03:04:05Z"}]}')" = 200 -a "$(field 'd["state"]')" = succeeded
check "write as senml-json on request" \
  test "$(api PUT '/api/v1/devices/dm-v11-0/data/1/0/3?format=senml-json' '{"values":[{"path":"/1/0/3","value":61}]}')" = 200 -a "$(field '(d["state"], d["format"])')" = "('succeeded', 'senml-json')"
check "execute /1/0/8 (registration update trigger)" \
  test "$(api POST /api/v1/devices/dm-v11-0/execute/1/0/8)" = 200 -a "$(field '(d["state"], d["coap_code"])')" = "('succeeded', '2.04')"
check "execute with arguments" \
  test "$(api POST /api/v1/devices/dm-v11-0/execute/1/0/8 '{"arguments":"0='"'"'x'"'"'"}')" = 200 -a "$(field 'd["state"]')" = succeeded
check "discover /3/0 returns link format" \
  test "$(api GET /api/v1/devices/dm-v11-0/discover/3/0)" = 200 -a "$(field 'd["result"]["links"].startswith("</3/0>")')" = True
check "create (device refuses: 4.05 reported)" \
  test "$(api POST /api/v1/devices/dm-v11-0/data/3 '{"values":[{"path":"/3/1/0","value":"x"}]}')" = 200 -a "$(field '(d["kind"], d["coap_code"])')" = "('create', '4.05')"
check "delete (device refuses: 4.05 reported)" \
  test "$(api DELETE /api/v1/devices/dm-v11-0/data/3/0)" = 200 -a "$(field '(d["kind"], d["coap_code"])')" = "('delete', '4.05')"

# ---- Create / Delete of object 19 instances; a 4 KiB value read block-wise -----------------------
# The fleet's /19 (BinaryAppDataContainer) accepts Create and Delete; its fixed instance 0 holds a
# 4096-byte Data value, byte i = (i*7 ^ i>>8) mod 256 (docs/benchmarks.md), served with Block2.
b64() { python3 -c 'import base64,sys; print(base64.b64encode(sys.argv[1].encode()).decode())' "$1"; }
# TLV carries no types and e2e daemons load no object registry: TLV values come back as opaque.
want_created() {
  if [ "$1" = tlv ]; then
    echo "[('/19/$2/0/0', '$3'), ('/19/$2/3', '$(b64 test_dm)'), ('/19/$2/5', '$(python3 -c 'import base64,sys; print(base64.b64encode(bytes([int(sys.argv[1])])).decode())' "$2")')]"
  else
    echo "[('/19/$2/0/0', '$3'), ('/19/$2/3', 'test_dm'), ('/19/$2/5', $2)]"
  fi
}
for v in 11:senml-cbor:5 12:lwm2m-cbor:6 11:senml-json:7 10:tlv:8; do
  IFS=: read -r ver fmt iid <<<"$v"
  ep=dm-v$ver-0 data=$(b64 "made on dm-v$ver-0 as $fmt")
  check "$ep: create /19/$iid in $fmt: 2.01, location /19/$iid" \
    test "$(api POST "/api/v1/devices/$ep/data/19?format=$fmt" '{"values":[{"path":"/19/'$iid'/0/0","type":"opaque","value":"'"$data"'"},{"path":"/19/'$iid'/5","type":"integer","value":'$iid'},{"path":"/19/'$iid'/3","type":"string","value":"test_dm"}]}')" = 200 \
    -a "$(field '(d["kind"], d["state"], d["coap_code"], d["format"], d["result"]["location"])')" = "('create', 'succeeded', '2.01', '$fmt', '/19/$iid')"
  check "$ep: read /19/$iid back ($fmt): the created values" \
    test "$(api GET "/api/v1/devices/$ep/data/19/$iid?format=$fmt")" = 200 \
    -a "$(field 'sorted((v["path"], v["value"]) for v in d["result"]["values"])')" = "$(want_created "$fmt" "$iid" "$data")"
  check "$ep: create of an existing instance: 4.00" \
    test "$(api POST "/api/v1/devices/$ep/data/19?format=$fmt" '{"values":[{"path":"/19/'$iid'/5","type":"integer","value":1}]}')" = 200 \
    -a "$(field 'd["coap_code"]')" = 4.00
  check "$ep: delete /19/$iid: 2.02" \
    test "$(api DELETE "/api/v1/devices/$ep/data/19/$iid")" = 200 -a "$(field '(d["kind"], d["state"], d["coap_code"])')" = "('delete', 'succeeded', '2.02')"
  check "$ep: read /19/$iid after the delete: 4.04" \
    test "$(api GET "/api/v1/devices/$ep/data/19/$iid?format=$fmt")" = 200 -a "$(field '(d["state"], d["coap_code"])')" = "('failed', '4.04')"
  check "$ep: delete /19/$iid again: 4.04" \
    test "$(api DELETE "/api/v1/devices/$ep/data/19/$iid")" = 200 -a "$(field 'd["coap_code"]')" = 4.04
done
check "discover /19: the fixed instance, its resources, dim of Data" \
  test "$(api GET /api/v1/devices/dm-v11-0/discover/19)" = 200 -a "$(field 'd["result"]["links"]')" = '</19>,</19/0>,</19/0/0>;dim=1,</19/0/3>,</19/0/4>'
check "discover /19/1 (no such instance): 4.04" \
  test "$(api GET /api/v1/devices/dm-v11-0/discover/19/1)" = 200 -a "$(field 'd["coap_code"]')" = 4.04
check "delete of the fixed instance /19/0: 4.05" \
  test "$(api DELETE /api/v1/devices/dm-v11-0/data/19/0)" = 200 -a "$(field 'd["coap_code"]')" = 4.05
big=$(python3 -c 'import base64; print(base64.b64encode(bytes(((i*7) ^ (i>>8)) & 255 for i in range(4096))).decode())')
for v in 11:senml-cbor 12:lwm2m-cbor 11:senml-json 10:tlv; do
  ep=dm-v${v%%:*}-0 fmt=${v#*:}
  check "$ep: read /19/0 ($fmt, above one block): the whole 4096-byte value" \
    test "$(api GET "/api/v1/devices/$ep/data/19/0?format=$fmt")" = 200 \
    -a "$(field '(d["state"], d["coap_code"], [v["value"] for v in d["result"]["values"] if v["path"]=="/19/0/0/0"][0] == "'"$big"'")')" = "('succeeded', '2.05', True)"
done
# A 4 KiB body does not fit one CoAP datagram (LW_COAP_MAX_DGRAM): a whole value proves the
# server fetched and reassembled every Block2 block.
check "read /19/0/0/0 as opaque (4096 bytes, block-wise): the whole value" \
  test "$(api GET /api/v1/devices/dm-v11-0/data/19/0/0/0?format=opaque)" = 200 \
  -a "$(field '(d["state"], d["result"]["values"][0]["value"] == "'"$big"'")')" = "('succeeded', True)"

# ---- bad input: problem+json ---------------------------------------------------------------------
is_problem() { test "$(field 'd["type"]')" = "urn:lwm2md:problem:$1"; }
check "unknown device: 404 problem" test "$(api GET /api/v1/devices/nobody/data/3/0)" = 404
check "  device-not-found" is_problem device-not-found
check "bad path: 400" test "$(api GET /api/v1/devices/dm-v11-0/data/3/zero)" = 400
check "  invalid-path" is_problem invalid-path
check "id out of range: 400" test "$(api GET /api/v1/devices/dm-v11-0/data/65535)" = 400
check "value of the wrong type: 400" \
  test "$(api PUT /api/v1/devices/dm-v11-0/data/1/0/3 '{"values":[{"path":"/1/0/3","value":"soon"}]}')" = 400
check "  invalid-value" is_problem invalid-value
check "declared type contradicting the model: 400" \
  test "$(api PUT /api/v1/devices/dm-v11-0/data/1/0/3 '{"values":[{"path":"/1/0/3","type":"string","value":"x"}]}')" = 400
check "value outside the target path: 400" \
  test "$(api PUT /api/v1/devices/dm-v11-0/data/1/0/3 '{"values":[{"path":"/1/0/2","value":1}]}')" = 400
check "write without a body: 400" test "$(api PUT /api/v1/devices/dm-v11-0/data/1/0/3)" = 400
check "unsupported format: 406" test "$(api GET '/api/v1/devices/dm-v11-0/data/3/0?format=xml')" = 406
check "  unsupported-format" is_problem unsupported-format
check "bad wait: 400" test "$(api GET '/api/v1/devices/dm-v11-0/data/3/0?wait=soon')" = 400
check "execute needs a resource path: 400" test "$(api POST /api/v1/devices/dm-v11-0/execute/1/0 2>/dev/null)" != 200
check "viewer routes need a token: 401" \
  test "$(curl -s -o /dev/null -w '%{http_code}' "$A/api/v1/devices/dm-v11-0/data/3/0")" = 401

# ---- large payloads: Block1 (RFC 7959) -----------------------------------------------------------
b64=$(head -c 5000 /dev/urandom | base64 -w0)
check "write 5000 opaque bytes to /5/0/0 (Block1 upload, default format)" \
  test "$(api PUT /api/v1/devices/dm-v11-0/data/5/0/0 "{\"values\":[{\"path\":\"/5/0/0\",\"value\":\"$b64\"}]}")" = 200 -a "$(field '(d["state"], d["coap_code"], d["format"])')" = "('succeeded', '2.04', 'senml-cbor')"
check "... and as application/octet-stream" \
  test "$(api PUT '/api/v1/devices/dm-v11-0/data/5/0/0?format=opaque' "{\"values\":[{\"path\":\"/5/0/0\",\"value\":\"$b64\"}]}")" = 200 -a "$(field '(d["state"], d["format"])')" = "('succeeded', 'opaque')"
check "the device took the package (firmware state 2 = downloaded)" \
  test "$(api GET /api/v1/devices/dm-v11-0/data/5/0/3)" = 200 -a "$(field 'd["result"]["values"][0]["value"]')" = 2

# ---- composite -----------------------------------------------------------------------------------
check "read-composite (FETCH) on 1.1: three paths in SenML CBOR" \
  test "$(api POST /api/v1/devices/dm-v11-0/composite/read '{"paths":["/3/0/0","/1/0/1","/3/0/9"]}')" = 200 -a "$(field '(d["state"], d["format"], [v["path"] for v in d["result"]["values"]])')" = "('succeeded', 'senml-cbor', ['/3/0/0', '/1/0/1', '/3/0/9'])"
check "read-composite on 1.2 answers LwM2M CBOR" \
  test "$(api POST /api/v1/devices/dm-v12-0/composite/read '{"paths":["/3/0/0","/1/0/1"]}')" = 200 -a "$(field '(d["state"], d["format"])')" = "('succeeded', 'lwm2m-cbor')"
check "read-composite of an instance as senml-json" \
  test "$(api POST '/api/v1/devices/dm-v11-0/composite/read?format=senml-json' '{"paths":["/3/0"]}')" = 200 -a "$(field '(d["format"], len(d["result"]["values"]) > 5)')" = "('senml-json', True)"
check "write-composite (iPATCH) on 1.1" \
  test "$(api POST /api/v1/devices/dm-v11-0/composite/write '{"values":[{"path":"/1/0/3","value":77},{"path":"/3/0/13","value":1700000000}]}')" = 200 -a "$(field '(d["kind"], d["state"], d["coap_code"])')" = "('write-composite', 'succeeded', '2.04')"
check "write-composite on 1.2 (LwM2M CBOR)" \
  test "$(api POST /api/v1/devices/dm-v12-0/composite/write '{"values":[{"path":"/1/0/3","value":78}]}')" = 200 -a "$(field 'd["state"]')" = succeeded
check "composite on a 1.0 device fails without a request" \
  test "$(api POST /api/v1/devices/dm-v10-0/composite/read '{"paths":["/3/0/0"]}')" = 200 -a "$(field '(d["state"], d["sent_at"])')" = "('failed', None)"
check "composite in TLV: 406" test "$(api POST '/api/v1/devices/dm-v11-0/composite/read?format=tlv' '{"paths":["/3/0"]}')" = 406
check "composite read without paths: 400" test "$(api POST /api/v1/devices/dm-v11-0/composite/read '{"paths":[]}')" = 400
check "composite write of a wrong type: 400" \
  test "$(api POST /api/v1/devices/dm-v11-0/composite/write '{"values":[{"path":"/1/0/3","value":"x"}]}')" = 400

# ---- Write-Attributes --------------------------------------------------------------------------
check "write-attributes pmin/pmax" \
  test "$(api PUT /api/v1/devices/dm-v11-0/attributes/3/0/13 '{"pmin":1,"pmax":30}')" = 200 -a "$(field '(d["kind"], d["state"], d["coap_code"])')" = "('write-attributes', 'succeeded', '2.04')"
check "write-attributes gt/lt/st on a numeric resource" \
  test "$(api PUT /api/v1/devices/dm-v11-0/attributes/3/0/9 '{"gt":80,"lt":20,"st":5}')" = 200 -a "$(field 'd["state"]')" = succeeded
check "attributes: pmax < pmin is 400" test "$(api PUT /api/v1/devices/dm-v11-0/attributes/3/0/13 '{"pmin":10,"pmax":5}')" = 400
check "attributes: lt + 2st >= gt is 400" test "$(api PUT /api/v1/devices/dm-v11-0/attributes/3/0/9 '{"gt":10,"lt":8,"st":2}')" = 400
check "attributes: unknown attribute is 400" test "$(api PUT /api/v1/devices/dm-v11-0/attributes/3/0/9 '{"foo":1}')" = 400
check "attributes: negative pmin is 400" test "$(api PUT /api/v1/devices/dm-v11-0/attributes/3/0/9 '{"pmin":-1}')" = 400
check "attributes: edge must be 0/1" test "$(api PUT /api/v1/devices/dm-v11-0/attributes/3/0/9 '{"edge":2}')" = 400

# ---- Observe, notifications, values cache, cancel, re-registration -------------------------------
sse=$LW_TMP/dm-sse
curl -s -N -H "Authorization: Bearer $T" "$A/api/v1/events?types=notification,operation" > "$sse" &
sse_pid=$!
sleep 0.3
check "observe /3/0/13 with pmin=1 pmax=2: 201" \
  test "$(api POST /api/v1/devices/dm-v11-0/observations '{"paths":["/3/0/13"],"attributes":{"pmin":1,"pmax":2}}')" = 201
obs=$(field 'd["id"]')
sleep 3.5
nnot() { grep -c "\"observation\":\"$1\"" "$sse"; }
n1=$(nnot "$obs")
check "notifications arrive about once per second (pmin 1 / pmax 2): $n1 in 3.5 s" test "$n1" -ge 2 -a "$n1" -le 5
check "observation is active" \
  test "$(api GET /api/v1/devices/dm-v11-0/observations)" = 200 -a "$(field '[o["state"] for o in d["observations"] if o["id"]=="'"$obs"'"][0]')" = active
check "values cache has /3/0/13 from notify" \
  test "$(api GET /api/v1/devices/dm-v11-0/values)" = 200 -a "$(field '[v["source"] for v in d["values"] if v["path"]=="/3/0/13"][0]')" = notify
check "values cache has reads too, with timestamps" \
  test "$(field '[("timestamp" in v, v["source"]) for v in d["values"] if v["path"]=="/3/0/0"][0]')" = "(True, 'read')"
check "observe of a bad path: 400" test "$(api POST /api/v1/devices/dm-v11-0/observations '{"paths":["/x"]}')" = 400
check "observe on an unknown device: 404" test "$(api POST /api/v1/devices/nobody/observations '{"paths":["/3/0/13"]}')" = 404
check "observe with bad attributes: 400" \
  test "$(api POST /api/v1/devices/dm-v11-0/observations '{"paths":["/3/0/13"],"attributes":{"pmin":5,"pmax":1}}')" = 400
# re-registration: the device reboots (Execute /3/0/4) and registers again; the server observes again
api POST /api/v1/devices/dm-v11-0/execute/3/0/4 >/dev/null
for _ in $(seq 1 80); do
  api GET /api/v1/devices/dm-v11-0/observations >/dev/null
  [ "$(field '[o["established_count"] for o in d["observations"] if o["id"]=="'"$obs"'"][0]')" = 2 ] && break
  sleep 0.1
done
check "after re-registration the observation is established again" \
  test "$(field '[(o["established_count"], o["state"]) for o in d["observations"] if o["id"]=="'"$obs"'"][0]')" = "(2, 'active')"
n2=$(nnot "$obs"); sleep 2.5; n3=$(nnot "$obs")
check "notifications resume after re-registration" test "$n3" -gt "$n2"
check "passive cancel: DELETE 204" test "$(api DELETE "/api/v1/devices/dm-v11-0/observations/$obs")" = 204
sleep 1.5; n4=$(nnot "$obs"); sleep 2.5; n5=$(nnot "$obs")
check "passive cancel: notifications stop (device got a Reset)" test "$n5" = "$n4"
check "cancelled observation is gone" test "$(api DELETE "/api/v1/devices/dm-v11-0/observations/$obs")" = 404
api POST /api/v1/devices/dm-v12-0/observations '{"paths":["/3/0/13"],"attributes":{"pmin":1,"pmax":1}}' >/dev/null
obs2=$(field 'd["id"]')
sleep 2
check "observe on 1.2 (LwM2M CBOR) notifies" test "$(nnot "$obs2")" -ge 1
check "active cancel: DELETE ?active=true 204" test "$(api DELETE "/api/v1/devices/dm-v12-0/observations/$obs2?active=true")" = 204
sleep 0.5
check "active cancel: an observe-cancel operation succeeded" grep -q '"kind":"observe-cancel","path":"/3/0/13","state":"succeeded"' "$sse"
n6=$(nnot "$obs2"); sleep 2.5; n7=$(nnot "$obs2")
check "active cancel: notifications stop" test "$n7" = "$n6"
check "observe-composite (FETCH) of two paths: 201" \
  test "$(api POST /api/v1/devices/dm-v11-0/observations '{"paths":["/3/0/13","/3/0/9"],"composite":true,"attributes":{"pmin":1,"pmax":2}}')" = 201
obs3=$(field 'd["id"]')
sleep 2.5
check "observe-composite notifications carry both paths" \
  test "$(grep "\"observation\":\"$obs3\"" "$sse" | tail -1 | cut -c7- | jq_ 'sorted(v["path"] for v in d["data"]["values"])')" = "['/3/0/13', '/3/0/9']"
check "observe-composite active cancel: 204" test "$(api DELETE "/api/v1/devices/dm-v11-0/observations/$obs3?active=true")" = 204
sleep 0.5
check "observe-composite cancel sent as FETCH with Observe 1 (operation succeeded)" \
  grep -q '"kind":"observe-cancel","path":"/","state":"succeeded"' "$sse"
n8=$(nnot "$obs3"); sleep 2.5; n9=$(nnot "$obs3")
check "observe-composite: notifications stop" test "$n9" = "$n8"
check "observe-composite with a bad path: 400" \
  test "$(api POST /api/v1/devices/dm-v11-0/observations '{"paths":["/3/0/13","nope"],"composite":true}')" = 400
kill "$sse_pid" 2>/dev/null

# ---- Send (POST /dp) -----------------------------------------------------------------------------
ssend=$LW_TMP/dm-send
curl -s -N -H "Authorization: Bearer $T" "$A/api/v1/events?types=send" > "$ssend" &
ssend_pid=$!
for _ in $(seq 1 50); do grep -q '"values"' "$ssend" && break; sleep 0.1; done
kill "$ssend_pid" 2>/dev/null
check "send events carry the device's values (SenML CBOR)" \
  test "$(grep -m1 '^data:' "$ssend" | cut -c7- | jq_ '(d["endpoint"], d["data"]["format"], len(d["data"]["values"]) > 0)')" = "('dm-v11-0', 'senml-cbor', True)"
check "values cache shows Send as the source" \
  test "$(api GET /api/v1/devices/dm-v11-0/values)" = 200 -a "$(field 'any(v["source"]=="send" for v in d["values"])')" = True
cat > "$LW_TMP/dm-send.py" <<'PY'
"""Raw CoAP client for Send edge cases: registers, then POSTs /dp payloads; prints the codes."""
import json, random, socket, struct, sys
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
def opt(prev, num, val):
    d = num - prev; ext = b""
    if d >= 13: ext = bytes([d - 13]); d = 13
    l = len(val); lext = b""
    if l >= 13: lext = bytes([l - 13]); l = 13
    return bytes([(d << 4) | l]) + ext + lext + val
def req(code, path, query=(), cf=None, pl=b""):
    mid = random.randint(0, 65535); tok = bytes([random.randint(0, 255) for _ in range(4)])
    m = bytes([0x44, code]) + struct.pack(">H", mid) + tok; prev = 0
    for seg in path:
        m += opt(prev, 11, seg.encode()); prev = 11
    if cf is not None:
        m += opt(prev, 12, bytes([cf]) if cf < 256 else struct.pack(">H", cf)); prev = 12
    for q in query:
        m += opt(prev, 15, q.encode()); prev = 15
    if pl: m += b"\xff" + pl
    s.sendto(m, ("127.0.0.1", port))
    while True:
        d = s.recv(2048)
        if d[2:4] == struct.pack(">H", mid): break
    c = d[1]; return "%d.%02d" % (c >> 5, c & 31)
senml = lambda n, v: json.dumps([{"n": n, "v": v}]).encode()
print("unregistered", req(2, ["dp"], cf=110, pl=senml("/3/0/9", 50)))
print("register", req(2, ["rd"], ["ep=dm-send-raw", "lt=60", "lwm2m=1.1"], 40, b"</1/0>,</3/0>"))
print("ok", req(2, ["dp"], cf=110, pl=senml("/3/0/9", 50)))
print("unknown_object", req(2, ["dp"], cf=110, pl=senml("/10243/0/1", 5)))
print("bad_format", req(2, ["dp"], cf=0, pl=b"50"))
print("garbage", req(2, ["dp"], cf=110, pl=b"[{"))
print("get", req(1, ["dp"]))
PY
python3 "$LW_TMP/dm-send.py" "$LW_COAP_PORT" > "$LW_TMP/dm-send.out" 2>&1
sc() { awk -v k="$1" '$1==k {print $2}' "$LW_TMP/dm-send.out"; }
check "Send without a registration: 4.00" test "$(sc unregistered)" = 4.00
check "Send from a registered device: 2.04" test "$(sc ok)" = 2.04
check "Send for an object the device did not register: 4.04" test "$(sc unknown_object)" = 4.04
check "Send in text/plain: 4.00" test "$(sc bad_format)" = 4.00
check "Send with an undecodable payload: 4.00" test "$(sc garbage)" = 4.00
check "GET /dp: 4.05" test "$(sc get)" = 4.05
check "raw Send value reaches the cache" \
  test "$(api GET /api/v1/devices/dm-send-raw/values)" = 200 -a "$(field '[(v["value"], v["source"]) for v in d["values"] if v["path"]=="/3/0/9"][0]')" = "(50, 'send')"

# ---- queue mode -----------------------------------------------------------------------------------
# The device (queue_mode, awake 2 s after each uplink, Update every 4 s) sleeps most of the time;
# the server counts it awake for 1 s (queue.awake_time) after each uplink.
# An Update that lands while the five requests go in flushes the held ones and lets the fifth
# wait: such a round proves nothing about the bound, so it is retried (at most 3 rounds).
for round in 1 2 3; do
  queued=""
  for _ in $(seq 1 20); do
    t0=$(date +%s%N)
    api GET '/api/v1/devices/dm-q-0/data/3/0/0?wait=5s' >/dev/null
    t1=$(date +%s%N)
    if [ "$(field 'd["state"]')" = queued ]; then queued=$(field 'd["id"]'); break; fi
    sleep 0.4
  done
  api GET '/api/v1/devices/dm-q-0/data/3/0/1?wait=0' >/dev/null; q2=$(field 'd["id"]')
  api GET '/api/v1/devices/dm-q-0/data/3/0/2?wait=0' >/dev/null; q3=$(field 'd["id"]')
  api GET '/api/v1/devices/dm-q-0/data/3/0/3?wait=0' >/dev/null; q4=$(field 'd["id"]')
  api GET '/api/v1/devices/dm-q-0/data/3/0/9?wait=0' >/dev/null; q5=$(field 'd["id"]')
  sleep 0.3
  api GET "/api/v1/operations/$q5" >/dev/null
  bounded=$(field '(d["state"], "already wait" in (d["error"] or ""))')
  [ "$bounded" = "('failed', True)" ] && break
  [ -n "$queued" ] && [ "$(api GET "/api/v1/operations/$queued" >/dev/null; field 'd["state"]')" != queued ] || break
  for _ in $(seq 1 80); do # the raced round: let it drain, then go again
    api GET "/api/v1/operations/$q5" >/dev/null
    case "$(field 'd["state"]')" in queued|sent) sleep 0.1 ;; *) break ;; esac
  done
done
check "queue mode: a request for the sleeping device is queued (202, state queued)" test -n "$queued"
check "queue mode: ?wait does not block on a sleeping device" test $(((t1 - t0) / 1000000)) -lt 1500
check "queue mode: more than queue.max_held requests fail at once" test "$bounded" = "('failed', True)"
for _ in $(seq 1 80); do
  api GET "/api/v1/operations/$q4" >/dev/null
  [ "$(field 'd["state"]')" = succeeded ] && break
  sleep 0.1
done
check "queue mode: held requests are delivered after the next Update" \
  test "$(api GET "/api/v1/operations/$queued")" = 200 -a "$(field 'd["state"]')" = succeeded
check "queue mode: ... all of them" test "$(api GET "/api/v1/operations/$q4")" = 200 -a "$(field 'd["state"]')" = succeeded
c1=$(api GET "/api/v1/operations/$queued" >/dev/null; field 'd["completed_at"]')
c2=$(api GET "/api/v1/operations/$q2" >/dev/null; field 'd["completed_at"]')
c3=$(api GET "/api/v1/operations/$q3" >/dev/null; field 'd["completed_at"]')
check "queue mode: delivered in order" bash -c "[[ '$c1' < '$c2' || '$c1' == '$c2' ]] && [[ '$c2' < '$c3' || '$c2' == '$c3' ]]"
check "queue mode: the held read was sent only after an uplink (sent_at later than created_at)" \
  test "$(api GET "/api/v1/operations/$queued" >/dev/null; field 'd["sent_at"] > d["created_at"]')" = True
check "queue mode: the cache can be read without waking the device" \
  test "$(api GET /api/v1/devices/dm-q-0/values)" = 200 -a "$(field 'any(v["path"]=="/3/0/0" for v in d["values"])')" = True

# ---- a silent device: per-operation timeout ------------------------------------------------------
kill -STOP "$fleet_pid"
check "silent device: wait=1s answers 202 (still sent)" \
  test "$(api GET '/api/v1/devices/dm-v11-0/data/3/0?wait=1s&timeout=2s')" = 202 -a "$(field 'd["state"]')" = sent
op=$(field 'd["id"]')
sleep 2.5
check "silent device: the operation times out" \
  test "$(api GET "/api/v1/operations/$op")" = 200 -a "$(field 'd["state"]')" = timeout
kill -CONT "$fleet_pid"
check "after the timeout the device answers again (queue not stuck)" \
  test "$(api GET '/api/v1/devices/dm-v11-0/data/3/0/0?wait=10s')" = 200 -a "$(field 'd["state"]')" = succeeded

check "metrics count finished operations by kind and state" \
  bash -c 'curl -s -H "Authorization: Bearer $1" "$2/metrics" | grep -q "^lwm2md_operations_total{kind=\"read\",state=\"succeeded\"} [1-9]"' _ "$T" "$A"
kill "$fleet_pid" 2>/dev/null
wait "$fleet_pid" 2>/dev/null
check "the fleet reported no sanitizer findings (SANITIZE builds)" \
  bash -c '! grep -q -e "Sanitizer" -e "runtime error" "$1"' _ "$LW_TMP/dm-fleet.out"
stop_daemon
check "daemon exits 0" test "$LW_DAEMON_RC" = 0
finish
