#!/usr/bin/env bash
# Crash under load (W1.8): everything a restart must keep, at once. While 300 NoSec fleet devices
# update and send every 2 s, the daemon holds: a DTLS 1.2 PSK device (credentials provisioned
# through the API, sealed in PostgreSQL; its session hibernated and saved), a desired observation
# of a fleet device, and a read held for a sleeping queue-mode device. kill -9, start again on the
# same ports: every registration is back before the sockets open and no device registers again,
# the credentials and the DTLS session are back (the DTLS device's Update gets 2.04 with no
# handshake), the held read is delivered after the sleeping device's next Update, the observation
# is active again and notifies, and the fleet saw no failed operation.
. "$(dirname "$0")/lib.sh"

FLEET=${LW_FLEET:-$LW_TOP/build/bin/lwm2m-fleet}
for c in curl psql python3 cc; do
  if ! command -v $c >/dev/null; then
    echo "  SKIP: $c not installed: crash test not run"
    finish
    exit 0
  fi
done
if [ ! -x "$FLEET" ]; then
  echo "  SKIP: lwm2m-fleet not built: crash test not run"
  finish
  exit 0
fi
cli=$LW_TMP/dtls_client_crash
wolf=$LW_TOP/.deps/wolfssl
if ! cc -O1 -o "$cli" "$LW_TOP/tests/e2e/tools/dtls_client.c" -I"$wolf/include" "$wolf/lib/libwolfssl.a" -lm 2>"$LW_TMP/cc-crash.err"; then
  fail "dtls_client compiles against the project's wolfSSL"
  sed 's/^/    | /' "$LW_TMP/cc-crash.err" | head
  finish
  exit 0
fi

q() { psql -tAq "$LW_PG_URL" -c "$1"; }
jq_() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)" 2>/dev/null; }
hex() { printf '%s' "$1" | od -An -tx1 | tr -d ' \n'; }
tok=$LW_TMP/crash-token
(umask 077; head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' > "$tok")
T=$(cat "$tok")
EXTRA=(--set "api.bootstrap_token_file=$tok" --set coaps.hibernate_idle=1s
  --set queue.awake_time=1s --set operations.timeout=3s)
restart() { restart_daemon "$1" "${EXTRA[@]}"; }
log1=$LW_TMP/crash-1.log
if ! start_daemon "$log1" "${EXTRA[@]}"; then
  fail "daemon starts"
  finish
  exit 0
fi
pass "daemon starts"
A=http://127.0.0.1:$LW_API_PORT
body=$LW_TMP/crash-body
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
metric() { curl -s "$A/metrics" | awk -v m="$1" 'index($1, m) == 1 {s += $2} END {print s + 0}'; }
handshakes() { curl -s "$A/metrics" | awk '$1 ~ /^lwm2md_dtls_handshakes_total/ && $1 ~ /result="ok"/ {s += $2} END {print s + 0}'; }

# ---- the DTLS device: credentials through the API, then Register over DTLS 1.2 PSK with a CID
KEY=e2e-crash-key-01
check "PSK credentials provisioned (201)" test "$(api PUT /api/v1/devices/crash-dtls/credentials \
  "{\"mode\":\"psk\",\"identity\":\"crash-id\",\"key\":\"$(hex $KEY)\"}")" = 201
fifo=$LW_TMP/crash.fifo out=$LW_TMP/crash-dtls.out
mkfifo "$fifo"
timeout 300 "$cli" "$LW_COAPS_PORT" crash-id "$KEY" crash-dtls hold < "$fifo" > "$out" &
cli_pid=$!
exec 3>"$fifo"
wait_for "$out" "register " 30 >/dev/null
check "DTLS device registers (2.01)" grep -q "register 201" "$out"

# ---- the fleet: load, a sleeping queue-mode device, an observed device
cat > "$LW_TMP/crash-fleet.ini" <<INI
[fleet]
rate = 300/s
duration = 600s
deregister = false
[group load]
count = 300
endpoint = crash-load-{n:3}
lwm2m = 1.1
objects = 3,10243
lifetime = 300s
update_interval = 2s
send_interval = 2s
[group q]
count = 1
endpoint = crash-q-{n}
lwm2m = 1.1
objects = 3,4
lifetime = 300s
update_interval = 10s
send_interval = 0
format = senml-cbor
queue_mode = true
awake_time = 2s
[group o]
count = 1
endpoint = crash-o-{n}
lwm2m = 1.1
objects = 3,4
lifetime = 300s
update_interval = 3s
send_interval = 0
format = senml-cbor
INI
"$FLEET" --fleet "$LW_TMP/crash-fleet.ini" --server "coap://127.0.0.1:$LW_COAP_PORT" \
  --report-json "$LW_TMP/crash-fleet.json" --quiet >"$LW_TMP/crash-fleet.out" 2>&1 &
fleet_pid=$!
rows() { [ "$(q "SELECT count(*) FROM registrations WHERE endpoint LIKE 'crash-%'")" = 303 ]; }
check "303 registrations (300 load, queue-mode, observed, DTLS) in the table" until_ok 30 rows

check "observe crash-o-0 /3/0/13 (pmin 1, pmax 1): 201" test "$(api POST /api/v1/devices/crash-o-0/observations \
  '{"paths":["/3/0/13"],"attributes":{"pmin":1,"pmax":1}}')" = 201
obs=$(field 'd["id"]')
active() { api GET /api/v1/devices/crash-o-0/observations >/dev/null; [ "$(field '[o["state"] for o in d["observations"] if o["id"]=="'"$obs"'"][0]')" = active ]; }
check "the observation is active" until_ok 10 active

hib() { [ "$(metric 'lwm2md_dtls_saved_sessions_total{kind="written"}')" -ge 1 ]; }
check "the DTLS session hibernated and was saved" until_ok 10 hib

# The queue-mode device sleeps between Updates (awake window 1 s on the server side). The read is
# held from just after one Update to the next (10 s later), and the crash comes within that time.
last_upd() { api GET /api/v1/devices/crash-q-0 >/dev/null; field 'd.get("registration", d)["last_update"]'; }
u0=$(last_upd)
until_ok 12 bash -c '[ "$('"$(declare -f api field jq_ last_upd)"'; A='"$A"' T='"$T"' body='"$body"' last_upd)" != "'"$u0"'" ]' ||
  echo "    (no Update seen from crash-q-0)"
sleep 1.3
c=$(api GET '/api/v1/devices/crash-q-0/data/3/0/0?wait=0'); st=$(field 'd["state"]'); op=$(field 'd["id"]')
dur=$(field 'd.get("durable")')
check "read for the sleeping device: 202 queued, durable" test "$c $st $dur" = "202 queued True"

sleep 1 # two more rounds of load Updates and Sends in flight
before_reg=$(q "SELECT count(*) FROM registrations WHERE endpoint LIKE 'crash-%'")

# ---- crash under load
check "kill -9 under load" stop_daemon KILL
log2=$LW_TMP/crash-2.log
check "the daemon starts again on the same ports" restart "$log2"
restored=$(grep -o '"msg":"registrations restored: restored=[0-9]*' "$log2" | grep -o '[0-9]*$')
check "every registration restored ($restored of $before_reg rows) before the sockets opened" \
  test "${restored:-0}" -ge 303
[ "${restored:-0}" -ge 303 ] || grep -h 'registrations restored\|not restored\|malformed' "$log2" | head -12 | sed 's/^/    /'
check "the credentials restored (sealed rows opened)" grep -q '"msg":"credentials restored: count=1 skipped=0' "$log2"
check "the DTLS session restored" grep -q '"msg":"dtls sessions restored: restored=1 ' "$log2"
check "the held read restored" grep -q 'restored 1 queued operation' "$log2"

echo update >&3
wait_for "$out" "update " 20 >/dev/null
check "DTLS device: Update on its old session gets 2.04" grep -qx "update 204" "$out"
check "DTLS device: no handshake after the crash" test "$(handshakes)" = 0

done_op() { api GET "/api/v1/operations/$op" >/dev/null; [ "$(field 'd["state"]')" = succeeded ]; }
check "the held read is delivered after the sleeping device's next Update" until_ok 25 done_op
check "... with the device's value" test "$(field 'd["result"]["values"][0]["path"]')" = /3/0/0

sse=$LW_TMP/crash-sse
curl -s -N -H "Authorization: Bearer $T" "$A/api/v1/events?types=notification" > "$sse" &
sse_pid=$!
check "the observation is active again after the observed device's Update" until_ok 15 active
nnot() { grep -c "\"observation\":\"$obs\"" "$sse"; }
sleep 3
check "its notifications arrive ($(nnot) in 3 s)" test "$(nnot)" -ge 2

sleep 4 # every load device has updated and sent since the restart
check "no device registered again after the crash" test "$(metric 'lwm2md_registration_results_total{shard="0",result="register_created"}')$(metric 'lwm2md_registration_results_total{shard="1",result="register_created"}')" = 00
check "the load devices' Updates are answered by the restarted daemon" test "$(metric 'lwm2md_registration_results_total{shard="0",result="update_ok"}')" -gt 0

kill "$sse_pid" 2>/dev/null
kill -INT "$fleet_pid" 2>/dev/null
wait "$fleet_pid" 2>/dev/null
failed=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sum(v.get('errors',0) for v in d['operations'].values()), d['registered'])" "$LW_TMP/crash-fleet.json" 2>/dev/null)
check "the fleet saw no failed operation, all 302 registered (errors, registered: $failed)" test "$failed" = "0 302"
[ "$failed" = "0 302" ] || python3 -c "import json,sys; d=json.load(open(sys.argv[1])); [print('    fleet', k, v.get('errors'), v.get('failures')) for k, v in d['operations'].items() if v.get('errors')]" "$LW_TMP/crash-fleet.json"
exec 3>&-
kill "$cli_pid" 2>/dev/null
stop_daemon TERM
check "daemon stops cleanly" test "$LW_DAEMON_RC" = 0
check "no sanitizer findings in the daemon logs" bash -c "! grep -q 'runtime error\|AddressSanitizer\|LeakSanitizer' '$log1' '$log2'"
finish
