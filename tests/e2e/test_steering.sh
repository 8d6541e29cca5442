#!/usr/bin/env bash
# Which shard handles a datagram (server/udp.h): the kernel's steering program picks the shard
# that owns the source address, and a shard forwards any datagram that reached its socket but
# belongs to another. That happens while a listen group forms at start (the kernel spreads
# datagrams by its own hash until the last socket is bound: a restart under load used to answer
# such a Send with 4.00 "no registration"), and for every datagram with server.steering =
# forward (no program; for kernels or sandboxes that refuse it).
#  - kernel steering, 4 shards: a NoSec fleet registers, updates and sends without an error, and
#    no datagram needed forwarding (the program and the userspace rule agree);
#  - forward steering, 4 shards: NoSec Register/Update/Send, a downlink Read, DTLS PSK with CID
#    (handshakes, and NAT rebinding that keeps the session) all succeed while most datagrams
#    are forwarded.
. "$(dirname "$0")/lib.sh"

FLEET=${LW_FLEET:-$LW_TOP/build/bin/lwm2m-fleet}
for c in curl python3; do
  if ! command -v $c >/dev/null; then
    echo "  SKIP: $c not installed: steering test not run"
    finish
    exit 0
  fi
done
if [ ! -x "$FLEET" ]; then
  fail "lwm2m-fleet is built ($FLEET)"
  finish
  exit 0
fi
json_get() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1" 2>/dev/null; }
metric() { curl -s "http://127.0.0.1:$LW_API_PORT/metrics" | awk -v m="$1" 'index($1, m) == 1 {s += $2} END {print s + 0}'; }
tok=$LW_TMP/steer-token
(umask 077; head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' > "$tok")
T=$(cat "$tok")

cat > "$LW_TMP/steer-fleet.ini" <<INI
[fleet]
rate = 400/s
[group m]
count = 200
endpoint = steer-{n:3}
lwm2m = 1.1
objects = 3,10243
lifetime = 300s
update_interval = 1s
send_interval = 1s
INI
# no_errors REPORT: every device registered, Updates and Sends made, none failed
no_errors() {
  json_get "$1" 'd["registered"] == 200 and d["failed"] == 0 and d["operations"]["update"]["count"] >= 200 and d["operations"]["send"]["count"] >= 200 and sum(v.get("errors", 0) for v in d["operations"].values()) == 0'
}
breakdown() {
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('    registered', d.get('registered'), 'failed', d.get('failed')); [print('    fleet', k, v.get('count'), v.get('errors'), v.get('failures')) for k, v in d['operations'].items() if v.get('errors')]" "$1" 2>/dev/null
}
logs=()

# ---- kernel steering (the default)
log=$LW_TMP/steer-kernel.log
logs+=("$log")
if start_daemon "$log" --set server.shards=4 --set "api.bootstrap_token_file=$tok"; then
  pass "daemon starts with 4 shards, kernel steering"
  "$FLEET" --fleet "$LW_TMP/steer-fleet.ini" --server "coap://127.0.0.1:$LW_COAP_PORT" \
    --duration 4s --quiet --report-json "$LW_TMP/steer-kernel.json" >/dev/null 2>&1
  check "kernel: 200 devices register, update and send, no error" test "$(no_errors "$LW_TMP/steer-kernel.json")" = True
  [ "$(no_errors "$LW_TMP/steer-kernel.json")" = True ] || breakdown "$LW_TMP/steer-kernel.json"
  check "kernel: every shard received datagrams" test "$(curl -s "http://127.0.0.1:$LW_API_PORT/metrics" | awk '$1 ~ /^lwm2md_shard_datagrams_in_total/ && $2 > 0' | wc -l)" = 4
  fwd=$(metric lwm2md_shard_datagrams_forwarded_total)
  check "kernel: no datagram needed forwarding ($fwd)" test "$fwd" = 0
  stop_daemon TERM
  check "kernel: daemon stops cleanly" test "$LW_DAEMON_RC" = 0
else
  fail "daemon starts with 4 shards, kernel steering"
fi

# ---- forward steering: no program, the shards forward
log=$LW_TMP/steer-forward.log
logs+=("$log")
if start_daemon "$log" --set server.shards=4 --set server.steering=forward --set "api.bootstrap_token_file=$tok"; then
  pass "daemon starts with 4 shards, forward steering"
  "$FLEET" --fleet "$LW_TMP/steer-fleet.ini" --server "coap://127.0.0.1:$LW_COAP_PORT" \
    --duration 6s --quiet --report-json "$LW_TMP/steer-fwd.json" >/dev/null 2>&1 &
  fleet_pid=$!
  reg() { [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $T" "http://127.0.0.1:$LW_API_PORT/api/v1/devices/steer-007")" = 200 ]; }
  until_ok 10 reg
  body=$LW_TMP/steer-read
  c=$(curl -s -o "$body" -w '%{http_code}' -H "Authorization: Bearer $T" "http://127.0.0.1:$LW_API_PORT/api/v1/devices/steer-007/data/3/0/0")
  check "forward: a downlink Read reaches the device and its answer the owner (200, succeeded, /3/0/0)" \
    test "$c $(python3 -c 'import json,sys; d = json.load(open(sys.argv[1])); print(d["state"], d["result"]["values"][0]["path"])' "$body" 2>/dev/null)" = "200 succeeded /3/0/0"
  wait "$fleet_pid"
  check "forward: 200 devices register, update and send, no error" test "$(no_errors "$LW_TMP/steer-fwd.json")" = True
  [ "$(no_errors "$LW_TMP/steer-fwd.json")" = True ] || breakdown "$LW_TMP/steer-fwd.json"
  in=$(metric lwm2md_shard_datagrams_in_total)
  fwd=$(metric lwm2md_shard_datagrams_forwarded_total)
  # the kernel's hash picks the owner for about one datagram in four
  check "forward: most datagrams were forwarded ($fwd of $in)" test "$fwd" -gt $((in / 3))

  PSK=(--server "coaps://127.0.0.1:$LW_COAPS_PORT" --psk-identity 'st-{ep}' --psk-key 'c0ffee0011223344{n:16}')
  "$FLEET" "${PSK[@]}" --devices 60 --rate 300 --duration 2s --provision "http://127.0.0.1:$LW_API_PORT" \
    --token "$T" --quiet --report-json "$LW_TMP/steer-psk.json" >"$LW_TMP/steer-psk.out" 2>&1
  r=$LW_TMP/steer-psk.json
  check "forward: 60 DTLS PSK devices handshake with a CID, register and de-register" \
    test "$(json_get "$r" '(d["registered"], d["failed"], d["dtls"]["handshakes"], d["dtls"]["cid_sessions"])')" = "(60, 0, 60, 60)"
  [ "$(json_get "$r" 'd["failed"]')" = 0 ] || head -5 "$LW_TMP/steer-psk.out" | sed 's/^/    | /'
  "$FLEET" "${PSK[@]}" --devices 60 --rate 300 --duration 3s --scenario rebind --quiet \
    --report-json "$LW_TMP/steer-rebind.json" >/dev/null 2>&1
  r=$LW_TMP/steer-rebind.json
  check "forward: DTLS rebinding with CID keeps every session, Updates succeed" \
    test "$(json_get "$r" '(d["failed"], d["operations"]["update"]["errors"], d["dtls"]["rebinds"], d["dtls"]["rebinds_kept_session"], d["dtls"]["handshakes"])')" = "(0, 0, 60, 60, 60)"
  stop_daemon TERM
  check "forward: daemon stops cleanly" test "$LW_DAEMON_RC" = 0
else
  fail "daemon starts with 4 shards, forward steering"
fi

check "no sanitizer findings in the daemon logs" bash -c "! grep -q 'runtime error\|AddressSanitizer\|LeakSanitizer' ${logs[*]}"
finish
