#!/usr/bin/env bash
# tests/bench/suite.sh - the scenarios of the benchmark suite (docs/benchmarks.md), each against a
# freshly started lwm2md with a fresh database on a private PostgreSQL, each next to its floor
# measured in the same run:
#   nosec_register   N1 = 100 k x BENCH_SCALE NoSec devices register as fast as the simulator
#                    sends; floor: the same fleet against `lwm2m-fleet --floor-server` (a
#                    stateless UDP answerer driven by the same simulator).
#   dtls_register    N2 = 100 k x BENCH_SCALE DTLS 1.2 PSK devices (CID) provisioned through the
#                    API, then handshake + Register; floor: the raw wolfSSL handshake loop of
#                    tests/bench/dtls_bench.c (client and server in one process, one core).
#   steady           N3 = 1 M x BENCH_SCALE registered devices, then BENCH_STEADY (60 s) of Updates
#                    and Sends (LwM2M 1.1 Send of meter readings) every 60 s each; floor: the same
#                    fleet against the floor server. Compared: completed operations and p99.
#   restart          the steady scenario's registrations (N3, left registered) restored by a
#                    restarted daemon: restore duration from its log, and time until it answers;
#                    floor: PostgreSQL reading the same rows (COPY (SELECT * FROM registrations)).
#                    tests/bench/store_bench.sh measures the store's restore in more detail.
# Send/notification ingest into telemetry belongs to the telemetry benchmark (its lines are picked
# up by tests/bench/summary.py when present). The summary (bench/results/<date>-<host>.json and
# latest.md) is written by tests/bench/summary.py from the lines every bench prints.
# Environment: BUILD (default build), BENCH_SCALE (default 1; 0.1 = 10 k / 10 k / 100 k devices),
# BENCH_STEADY (seconds, default 60), BENCH_STEADY_RATE (its ramp-up, default 20000/s), BENCH_RATE
# (ramp-up of the registration scenarios, default 1000000/s: as fast as
# the simulator goes). Prints "bench suite_...: value unit" lines and appends one JSON line to
# bench/results/suite.json.
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD:-build}
bin=$top/$build/bin
scale=${BENCH_SCALE:-1}
steady_s=${BENCH_STEADY:-60}
rate=${BENCH_RATE:-1000000}
n_of() { awk -v s="$scale" -v n="$1" 'BEGIN { v = int(n * s); print (v < 100 ? 100 : v) }'; }
n1=$(n_of 100000) n2=$(n_of 100000) n3=$(n_of 1000000)
work=$(mktemp -d /tmp/lwm2md-suite.XXXXXX)
chmod 755 "$work"
pgdir=$top/$build/bench/pg-suite
dpid="" fpid=""

cleanup() {
  [ -n "$dpid" ] && kill "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null
  [ -n "$fpid" ] && kill "$fpid" 2>/dev/null && wait "$fpid" 2>/dev/null
  bash "$top/tools/pg.sh" stop "$pgdir" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

[ -x "$bin/lwm2md" ] && [ -x "$bin/lwm2m-fleet" ] || { echo "suite: build first (make all)"; exit 1; }
mkdir -p "$top/$build/bench" "$top/bench/results"
base=$(bash "$top/tools/pg.sh" start "$pgdir") || { echo "suite: cannot start PostgreSQL"; exit 1; }
# The simulator opens 2 x 16 sockets; the daemon and 1 M devices need no more descriptors, but
# a large fleet needs memory: about 300 B per NoSec device and 12 KB per live DTLS session.
ulimit -n 65536 2>/dev/null || true

port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
json_get() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1" 2>/dev/null; }

# start_daemon NAME [keep]: fresh database NAME (kept as it is with "keep"), daemon on free
# ports with an admin token.
start_daemon() {
  db="suite_$1_$$"
  if [ "${2:-}" != keep ]; then
    psql -q "$base" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1
    psql -q "$base" -c "CREATE DATABASE $db" >/dev/null || return 1
  fi
  coap=$(port) coaps=$(port) api=$(tport)
  (umask 077; head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' > "$work/tok")
  # Credentials are sealed under a master key (without one the API refuses to store them).
  [ -s "$work/master.key" ] || (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/master.key")
  launched=$(date +%s%3N) # section 4: time to answer counts from here
  "$bin/lwm2md" --config "$top/config/test.conf" --set "coap.listen=127.0.0.1:$coap" \
    --set "coaps.listen=127.0.0.1:$coaps" --set "api.listen=127.0.0.1:$api" \
    --set "database.url=${base%/*}/$db" --set "server.state_dir=$work/state-$1" \
    --set "api.bootstrap_token_file=$work/tok" --set "security.master_key_file=$work/master.key" \
    --set coaps.hello_rate=0 \
    --set "log.level=${LOGLEVEL:-warning}" >"$work/daemon-$1.log" 2>&1 &
  dpid=$!
  for _ in $(seq 1 300); do
    curl -s -o /dev/null "http://127.0.0.1:$api/healthz" && return 0
    kill -0 "$dpid" 2>/dev/null || break
    sleep 0.1
  done
  echo "suite: daemon did not start"; tail -5 "$work/daemon-$1.log"; return 1
}
stop_daemon() { [ -n "$dpid" ] && kill "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null; dpid=""; }
start_floor() {
  local p; p=$(port)
  "$bin/lwm2m-fleet" --floor-server "127.0.0.1:$p" >"$work/floor.out" 2>&1 &
  fpid=$!
  for _ in $(seq 1 50); do grep -q ready "$work/floor.out" 2>/dev/null && break; sleep 0.1; done
  floor_port=$p
}
stop_floor() { [ -n "$fpid" ] && kill "$fpid" 2>/dev/null && wait "$fpid" 2>/dev/null; fpid=""; }
fleet() { # fleet REPORT ARGS...
  local r=$1; shift
  "$bin/lwm2m-fleet" --quiet --report-json "$work/$r.json" "$@" >"$work/$r.out" 2>&1
  local rc=$?
  [ -s "$work/$r.json" ] || { echo "suite: $r: no report (exit $rc)"; tail -5 "$work/$r.out"; }
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b > 0 ? 100 * a / b : 0) }'; }
git_rev=$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo unknown)

# ---- 1. NoSec registrations ---------------------------------------------------------------
start_floor
fleet floor_reg --server "coap://127.0.0.1:$floor_port" --devices "$n1" --rate "$rate" --duration 0
stop_floor
start_daemon nosec || exit 1
fleet nosec_reg --server "coap://127.0.0.1:$coap" --devices "$n1" --rate "$rate" --duration 0 \
  --server-pid "$dpid"
stop_daemon
nosec_rate=$(json_get "$work/nosec_reg.json" 'round(d["operations"]["register"]["rate_per_s"])')
nosec_p99=$(json_get "$work/nosec_reg.json" 'd["operations"]["register"]["p99_ms"]')
nosec_ok=$(json_get "$work/nosec_reg.json" 'd["registered"]')
nosec_cpu=$(json_get "$work/nosec_reg.json" 'round(d["server_process"]["cpu_s"], 2)')
floor_rate=$(json_get "$work/floor_reg.json" 'round(d["operations"]["register"]["rate_per_s"])')
echo "bench suite_nosec_register: ${nosec_rate:-0} registrations/s ($nosec_ok of $n1 devices, p99 $nosec_p99 ms, server CPU $nosec_cpu s)"
echo "bench suite_nosec_register_floor: ${floor_rate:-0} registrations/s (floor server, same simulator)"
echo "bench suite_nosec_register_ratio: $(ratio "${nosec_rate:-0}" "${floor_rate:-0}") %"

# ---- 2. DTLS 1.2 PSK registrations --------------------------------------------------------
raw=""
if [ -x "$top/$build/bench/dtls_bench" ]; then
  raw=$(cd "$work" && DTLS_BENCH_ONLY=hs12_psk "$top/$build/bench/dtls_bench" 2>/dev/null |
    awk '$2 == "dtls_hs12_psk_raw:" {print $3}')
fi
start_daemon dtls || exit 1
fleet dtls_reg --server "coaps://127.0.0.1:$coaps" --devices "$n2" --rate "$rate" --duration 0 \
  --psk-identity 'id-{ep}' --psk-key 'a1b2c3d4e5f60718{n:16}' --provision "http://127.0.0.1:$api" \
  --token "$(cat "$work/tok")" --provision-rate 100000 --provision-concurrency 32 --server-pid "$dpid"
# the daemon's admission counters (coaps.max_handshakes, coaps.handshake_backlog)
hello_sum() { awk -v r="result=\"$1\"" '$1 ~ /^lwm2md_dtls_hello_total/ && index($1, r) {s += $2} END {print s + 0}' "$work/dtls_metrics"; }
curl -s -H "Authorization: Bearer $(cat "$work/tok")" "http://127.0.0.1:$api/metrics" > "$work/dtls_metrics" 2>/dev/null
stop_daemon
dtls_rate=$(json_get "$work/dtls_reg.json" 'round(d["operations"]["register"]["rate_per_s"])')
dtls_p99=$(json_get "$work/dtls_reg.json" 'd["operations"]["register"]["p99_ms"]')
dtls_ok=$(json_get "$work/dtls_reg.json" 'd["registered"]')
dtls_hs=$(json_get "$work/dtls_reg.json" 'round(d["operations"]["dtls_handshake"]["rate_per_s"])')
dtls_mem=$(json_get "$work/dtls_reg.json" 'round(d["simulator"]["bytes_per_device"])')
prov=$(json_get "$work/dtls_reg.json" '"%d credentials in %.2f s (%.0f/s)" % (d["provisioning"]["count"], d["provisioning"]["duration_s"], d["provisioning"]["rate_per_s"])')
echo "bench suite_dtls_register: ${dtls_rate:-0} registrations/s ($dtls_ok of $n2 devices, handshake + Register, p99 $dtls_p99 ms; handshakes ${dtls_hs:-0}/s)"
echo "bench suite_dtls_register_floor: ${raw:-0} handshakes/s (raw wolfSSL DTLS 1.2 PSK loop, client+server on one core)"
echo "bench suite_dtls_register_ratio: $(ratio "${dtls_rate:-0}" "${raw:-0}") %"
echo "bench suite_dtls_provision: ${prov:-0 credentials} PUT through the API"
echo "bench suite_dtls_simulator_bytes_per_device: ${dtls_mem:-0} bytes (simulator RSS growth / device, live DTLS session)"
dtls_rx=$(json_get "$work/dtls_reg.json" 'round(d["network"]["rx_datagrams"] / max(d["devices"], 1), 1)')
dtls_tx=$(json_get "$work/dtls_reg.json" 'round(d["network"]["tx_datagrams"] / max(d["devices"], 1), 1)')
dtls_rtx=$(json_get "$work/dtls_reg.json" 'd["dtls"]["flight_retransmissions"]')
echo "bench suite_dtls_admission: $(hello_sum deferred) hellos waited for a handshake slot, $(hello_sum budget) refusals, $(hello_sum backlog_full) dropped (backlog full), $(hello_sum crossed) crossed retransmissions not answered; datagrams per device: ${dtls_tx:-0} sent, ${dtls_rx:-0} received by the simulator, ${dtls_rtx:-0} client flight retransmissions"

# ---- 3. 1 M registered devices, steady Updates and Sends ---------------------------------------
# Lifetime 300 s, an Update and a Send (SenML CBOR meter readings) every 60 s per device: the
# steady load is N3/30 operations per second.
cat > "$work/steady.ini" <<INI
[fleet]
sockets = 64
[group meters]
count = $n3
endpoint = suite-meter-{n:7}
lwm2m = 1.1
objects = 3,10243
lifetime = 300s
update_interval = 60s
send_interval = 60s
INI
steady_args=(--fleet "$work/steady.ini" --rate "${BENCH_STEADY_RATE:-20000}" --duration "${steady_s}s" --no-deregister)
start_floor
fleet floor_steady --server "coap://127.0.0.1:$floor_port" "${steady_args[@]}"
stop_floor
start_daemon steady || exit 1
fleet steady --server "coap://127.0.0.1:$coap" "${steady_args[@]}" --server-pid "$dpid"
# Steady-state memory: the fleet's rss_end_kb is sampled while the last Sends are still queued
# (events, telemetry write-behind); wait until the daemon's RSS stops moving (two samples 2 s
# apart within 1 %, at most 60 s), then take it. Every device has sent an Update and a Send.
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$dpid/status" 2>/dev/null; }
settled_kb=$(rss_kb)
for _ in $(seq 30); do
  sleep 2
  now_kb=$(rss_kb)
  [ -n "$now_kb" ] || break
  d=$((now_kb - settled_kb)); d=${d#-}
  settled_kb=$now_kb
  [ $((d * 100)) -le "$now_kb" ] && break
done
stop_daemon
ops() { json_get "$1" 'round((d["operations"].get("update",{}).get("count",0) + d["operations"].get("send",{}).get("count",0)) / max(d["phases_s"]["steady_s"], 1))'; }
p99() { json_get "$1" 'max(d["operations"].get("update",{}).get("p99_ms",0), d["operations"].get("send",{}).get("p99_ms",0))'; }
st_ops=$(ops "$work/steady.json") st_p99=$(p99 "$work/steady.json")
fl_ops=$(ops "$work/floor_steady.json") fl_p99=$(p99 "$work/floor_steady.json")
st_reg=$(json_get "$work/steady.json" 'd["registered_at_end"]')
st_regrate=$(json_get "$work/steady.json" 'round(d["operations"]["register"]["rate_per_s"])')
st_cpu=$(json_get "$work/steady.json" 'round(d["server_process"]["cpu_pct"], 1)')
st_rss=$(json_get "$work/steady.json" 'round(d["server_process"]["rss_end_kb"] * 1024 / max(d["registered_at_end"], 1))')
st_err=$(json_get "$work/steady.json" 'd["operations"].get("update",{}).get("errors",0) + d["operations"].get("send",{}).get("errors",0)')
echo "bench suite_steady_registered: ${st_reg:-0} of $n3 devices (registered at ${st_regrate:-0}/s)"
echo "bench suite_steady_ops: ${st_ops:-0} updates+sends/s (p99 $st_p99 ms, $st_err errors, server CPU $st_cpu %, RSS ${st_rss:-0} B/device)"
st_settled=$(awk -v kb="${settled_kb:-0}" -v n="${st_reg:-0}" 'BEGIN { printf "%.0f", (n > 0 ? kb * 1024 / n : 0) }')
echo "bench suite_steady_rss: ${st_settled:-0} B/device (daemon RSS once settled after the run, ${settled_kb:-0} kB for ${st_reg:-0} registered devices after Updates and SenML Sends; RSS at the fleet's end: ${st_rss:-0} B/device)"
echo "bench suite_steady_ops_floor: ${fl_ops:-0} updates+sends/s (p99 $fl_p99 ms, floor server)"
echo "bench suite_steady_ops_ratio: $(ratio "${st_ops:-0}" "${fl_ops:-0}") %"

# ---- 4. restart with the steady scenario's registrations ----------------------------------------
# Time to answer counts from the daemon's launch to its first answers (healthz over HTTP, which the
# daemon serves only after the CoAP sockets are open and the shard threads run; then a CoAP ping,
# an empty CON answered with RST, RFC 7252 section 4.3). The daemon logs each start-up step at
# info level ("start-up step done: step=... duration_ms=..."; docs/operations.md, Start-up).
rows=$(psql -qAt "${base%/*}/$db" -c "SELECT count(*) FROM registrations" 2>/dev/null)
t0=$(date +%s%3N)
psql -qAt "${base%/*}/$db" -c "\\copy (SELECT * FROM registrations) TO '/dev/null'" >/dev/null 2>&1
t1=$(date +%s%3N)
copy_ms=$((t1 - t0))
LOGLEVEL=info start_daemon steady keep || exit 1
t1=$(date +%s%3N)
answer_ms=$((t1 - launched))
coap_ok=$(python3 - "$coap" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.sendto(bytes([0x40, 0, 0x12, 0x34]), ("127.0.0.1", int(sys.argv[1])))
try:
    d = s.recv(64)
    print("yes" if len(d) == 4 and d[0] >> 4 & 3 == 3 and d[2:4] == bytes([0x12, 0x34]) else "no")
except OSError:
    print("no")
PY
)
stop_daemon
restored=$(grep -o 'registrations restored: restored=[0-9]*' "$work/daemon-steady.log" | tail -1 | grep -o '[0-9]*$')
restore_ms=$(grep -o 'registrations restored:[^"]*duration_ms=[0-9]*' "$work/daemon-steady.log" | tail -1 | grep -o '[0-9]*$')
steps=$(grep -o 'start-up step done: step=[a-z]* duration_ms=[0-9]*' "$work/daemon-steady.log" |
  sed 's/.*step=\([a-z]*\) duration_ms=\([0-9]*\)/\1=\2/' | tr '\n' ' ')
echo "bench suite_restart_restore: ${restored:-0} registrations in ${restore_ms:-0} ms (of ${rows:-0} rows; daemon answering after $answer_ms ms)"
echo "bench suite_restart_answer: $answer_ms ms (launch to first answer, $(ratio "$answer_ms" "${restore_ms:-0}") % of the restore time; CoAP ping answered: ${coap_ok:-no}; start-up steps in ms: ${steps% })"
echo "bench suite_restart_restore_floor: $(awk -v r="${rows:-0}" -v ms="$copy_ms" 'BEGIN { printf "%.0f", (ms > 0 ? r * 1000 / ms : 0) }') rows/s (PostgreSQL COPY of the same rows to /dev/null, $copy_ms ms)"
echo "bench suite_restart_restore_ratio: $(ratio "$(awk -v r="${restored:-0}" -v ms="${restore_ms:-0}" 'BEGIN { print (ms > 0 ? r * 1000 / ms : 0) }')" "$(awk -v r="${rows:-0}" -v ms="$copy_ms" 'BEGIN { print (ms > 0 ? r * 1000 / ms : 0) }')") %"

printf '{"bench":"suite","ts":"%s","git":"%s","scale":%s,"nosec_register_per_s":%s,"nosec_floor_per_s":%s,"dtls_register_per_s":%s,"dtls_raw_handshakes_per_s":%s,"steady_devices":%s,"steady_ops_per_s":%s,"steady_floor_ops_per_s":%s,"steady_p99_ms":%s}\n' \
  "$(date -u +%FT%TZ)" "$git_rev" "$scale" "${nosec_rate:-0}" "${floor_rate:-0}" "${dtls_rate:-0}" \
  "${raw:-0}" "${st_reg:-0}" "${st_ops:-0}" "${fl_ops:-0}" "${st_p99:-0}" >> "$top/bench/results/suite.json"
