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

# ---- restart: each registration back on the shard that receives its device's datagrams
# A NoSec device registers from a port of shard 0 and moves (Update) to a port of shard 1; its
# registration then lives on shard 1 under an id shard 0 issued. After a restart its Send must
# find it (it used to be restored on the issuer: 4.00 "no registration"), and after a restart
# with fewer shards a registration of the shard that is gone must still answer (it used to be
# left out of the restore: 4.04 and a new Register).
cat > "$LW_TMP/coapc.py" <<'PY'
"""One CoAP CON request from a given local UDP port; prints the response code (e.g. 2.04) and
the Location-Path. Usage: coapc.py SRC_PORT DST_PORT METHOD PATH [QUERY] [CF] [PAYLOAD]"""
import os, socket, struct, sys
src, dst, method, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
query = sys.argv[5] if len(sys.argv) > 5 else ""
cf = sys.argv[6] if len(sys.argv) > 6 else ""
payload = sys.argv[7].encode() if len(sys.argv) > 7 else b""
def opt(num, last, val):
    def nib(v):
        return (v, b"") if v < 13 else ((13, bytes([v - 13])) if v < 269 else (14, struct.pack(">H", v - 269)))
    d, dx = nib(num - last)
    l, lx = nib(len(val))
    return bytes([d << 4 | l]) + dx + lx + val
opts = [(11, p.encode()) for p in path.strip("/").split("/") if p]
if cf:
    n = int(cf)
    opts.append((12, b"" if n == 0 else n.to_bytes((n.bit_length() + 7) // 8, "big")))
opts += [(15, q.encode()) for q in query.split("&") if q]
code = {"GET": 1, "POST": 2, "PUT": 3, "DELETE": 4}[method]
mid = int.from_bytes(os.urandom(2), "big")
msg = bytes([0x41, code]) + struct.pack(">H", mid) + os.urandom(1)
last = 0
for num, val in opts:
    msg += opt(num, last, val)
    last = num
if payload:
    msg += b"\xff" + payload
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", src))
s.settimeout(2)
for _ in range(3):
    s.sendto(msg, ("127.0.0.1", dst))
    try:
        r, _ = s.recvfrom(2048)
    except socket.timeout:
        continue
    if struct.unpack(">H", r[2:4])[0] != mid:
        continue
    c, i, num, loc = r[1], 4 + (r[0] & 15), 0, []
    while i < len(r) and r[i] != 0xFF:
        d, l = r[i] >> 4, r[i] & 15
        i += 1
        ext = lambda v: (r[i], 1) if v == 13 else ((struct.unpack(">H", r[i:i + 2])[0] + 256, 2) if v == 14 else (0, 0))
        if d >= 13:
            v, k = ext(d); d = v + 13 if k == 1 else v + 13; i += k
        if l >= 13:
            v, k = ext(l); l = v + 13; i += k
        num += d
        if num == 8:
            loc.append(r[i:i + l].decode())
        i += l
    print("%d.%02d %s" % (c >> 5, c & 31, "/".join(loc)))
    break
else:
    print("timeout")
PY
# A free UDP port on 127.0.0.1 owned by shard $1 of 2 (udp.h: (port ^ 0x0001) % 2).
port_of() {
  python3 -c '
import socket, sys
while True:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    if (p ^ 1) % 2 == int(sys.argv[1]): print(p); break' "$1"
}
c() { python3 "$LW_TMP/coapc.py" "$1" "$LW_COAP_PORT" "${@:2}"; }
log=$LW_TMP/steer-restart-1.log
logs+=("$log" "$LW_TMP/steer-restart-2.log" "$LW_TMP/steer-restart-3.log")
if start_daemon "$log"; then
  pA=$(port_of 0) pB=$(port_of 1) pC=$(port_of 1)
  r1=$(c "$pA" POST rd "ep=steer-mig&lt=300&lwm2m=1.1" 40 "</3/0>")
  loc1=${r1#* }
  up=$(c "$pB" POST "$loc1")
  r2=$(c "$pC" POST rd "ep=steer-s1&lt=300&lwm2m=1.1" 40 "</3/0>")
  loc2=${r2#* }
  check "restart: Register on shard 0, Update from a port of shard 1, Register on shard 1 ($r1, $up, $r2)" \
    test "${r1%% *} $up ${r2%% *}" = "2.01 2.04  2.01"
  moved() { [ "$(psql -tAq "$LW_PG_URL" -c "SELECT port FROM registrations WHERE endpoint = 'steer-mig'")" = "$pB" ]; }
  check "restart: the moved registration's row has its new port" until_ok 10 moved
  stop_daemon TERM
  if restart_daemon "$LW_TMP/steer-restart-2.log"; then
    snd=$(c "$pB" POST dp "" 110 '[{"n":"/3/0/0","vs":"meter"}]')
    check "restart: the moved device's Send finds its registration (2.04: $snd)" test "$snd" = "2.04 "
    check "restart: its Update gets 2.04" test "$(c "$pB" POST "$loc1")" = "2.04 "
    stop_daemon TERM
  else
    fail "restart: daemon starts again"
  fi
  if restart_daemon "$LW_TMP/steer-restart-3.log" --set server.shards=1; then
    check "restart with 1 shard: every registration restored" \
      grep -q '"msg":"registrations restored: restored=2 ' "$LW_TMP/steer-restart-3.log"
    check "restart with 1 shard: a registration shard 1 issued answers its Update (2.04)" \
      test "$(c "$pC" POST "$loc2")" = "2.04 "
    check "restart with 1 shard: and the moved one" test "$(c "$pB" POST "$loc1")" = "2.04 "
    stop_daemon TERM
    check "restart: daemon stops cleanly" test "$LW_DAEMON_RC" = 0
  else
    fail "restart with 1 shard: daemon starts"
  fi
else
  fail "restart: daemon starts"
fi

check "no sanitizer findings in the daemon logs" bash -c "! grep -q 'runtime error\|AddressSanitizer\|LeakSanitizer' ${logs[*]}"
finish
