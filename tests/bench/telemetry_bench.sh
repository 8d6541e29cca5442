#!/usr/bin/env bash
# Benchmark: telemetry ingest (server/store/telemetry.c). Starts a private PostgreSQL
# (tools/pg.sh) and measures, in the same run:
#   1. floor: PostgreSQL's own batched insert rate, COPY of N value rows into `telemetry`;
#   2. the writer's batch statement (the exact SQL of telemetry.c, 5000 values per batch, jsonb)
#      replayed over the same N rows: rows/s the statement sustains;
#   3. end to end: lwm2m-fleet devices Send 3 values every TEL_SEND_INTERVAL against the daemon;
#      rows/s persisted from lwm2md_telemetry_rows_total over the run until the queue is empty,
#      next to the Sends/s the fleet completed.
# Prints "bench telemetry_...: value unit" lines and appends one JSON line to
# bench/results/telemetry_bench.json. Environment: BUILD (default build), BENCH_SCALE (1),
# TEL_ROWS (500000 x scale), TEL_DEVICES (15000 x scale), TEL_SEND_INTERVAL (1s),
# TEL_DURATION (20s).
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD:-build}
bin=$top/$build/bin
scale=${BENCH_SCALE:-1}
rows=${TEL_ROWS:-$(python3 -c "print(max(10000, int(500000 * float('$scale'))))")}
devices=${TEL_DEVICES:-$(python3 -c "print(max(100, int(15000 * float('$scale'))))")}
interval=${TEL_SEND_INTERVAL:-1s}
duration=${TEL_DURATION:-20s}
work=$(mktemp -d /tmp/lwm2md-tel-bench.XXXXXX)
chmod 755 "$work"
pgdir=$top/$build/bench/pg-telemetry
dpid=""

cleanup() {
  [ -n "$dpid" ] && kill "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null
  bash "$top/tools/pg.sh" stop "$pgdir" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

[ -x "$bin/lwm2md" ] || { echo "telemetry_bench: build first (make all)"; exit 1; }
mkdir -p "$top/$build/bench" "$top/bench/results"
base=$(bash "$top/tools/pg.sh" start "$pgdir") || { echo "telemetry_bench: cannot start PostgreSQL"; exit 1; }
db="telemetry_bench_$$"
psql -q "$base" -c "CREATE DATABASE $db" >/dev/null || exit 1
url=${base%/*}/$db
(cd "$top" && "$bin/lwm2md" --config config/test.conf --set "database.url=$url" migrate >/dev/null) ||
  { echo "telemetry_bench: migrate failed"; exit 1; }
psql -qAt "$url" -c "SELECT lwm2md_telemetry_maintain(2, 0)" >/dev/null
now_ms() { date +%s%3N; }

# N rows of a meter's Send (three floats per device and time) as CSV and as writer batches.
python3 - "$rows" "$work" <<'PY'
import json, sys, time
n, work = int(sys.argv[1]), sys.argv[2]
t0 = int(time.time()) * 1000000
paths = ["/10243/0/4", "/10243/0/6", "/10243/0/14"]
with open(work + "/rows.csv", "w") as f, open(work + "/batches.sql", "w") as b:
    batch, bid = [], 1
    def flush():
        global bid
        if batch:
            b.write("EXECUTE wb('%s', '[]', %d);\n" % (json.dumps(batch, separators=(",", ":")), bid))
            bid += 1
            batch.clear()
    for i in range(n):
        dev, k = (i // 3) % 10000, i % 3
        at = t0 + (i // 30000) * 1000000
        v = 230.0 + (i % 977) / 100.0
        ts = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at // 1000000))
        f.write("meter-%05d,%s,%s+00,send,float,%r\n" % (dev, paths[k], ts, v))
        batch.append({"e": "meter-%05d" % dev, "p": paths[k], "a": at, "s": "send", "t": "float", "n": v})
        if len(batch) == 5000:
            flush()
    flush()
PY

# 1. Floor: COPY.
t0=$(now_ms)
psql -q "$url" -c "\\copy telemetry (endpoint, path, at, source, type, v_num) FROM '$work/rows.csv' WITH (FORMAT csv)" >/dev/null
t1=$(now_ms)
copy_rate=$((rows * 1000 / (t1 - t0 > 0 ? t1 - t0 : 1)))
echo "bench telemetry_ingest_floor: $copy_rate rows/s (PostgreSQL COPY of $rows value rows into telemetry)"

# 2. The writer's batch statement.
sql=$(sed -n '/^static const char batch_sql\[\] =/,/;$/p' "$top/server/store/telemetry.c" |
  sed '1d' | sed 's/^ *"//; s/" *;* *$//; s/\\"/"/g' | tr -d '\n')
{
  echo "PREPARE wb(jsonb, jsonb, bigint) AS $sql;"
  cat "$work/batches.sql"
} >"$work/run.sql"
t0=$(now_ms)
psql -q -v ON_ERROR_STOP=1 "$url" -f "$work/run.sql" >/dev/null || { echo "telemetry_bench: batch statement failed"; exit 1; }
t1=$(now_ms)
stmt_rate=$((rows * 1000 / (t1 - t0 > 0 ? t1 - t0 : 1)))
echo "bench telemetry_stmt: $stmt_rate rows/s (the writer's batch statement, 5000 values per batch)"

# 3. End to end with the fleet.
e2e_rate=0 sends_rate=0
if [ -x "$bin/lwm2m-fleet" ]; then
  port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
  tport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
  coap=$(port) coaps=$(port) api=$(tport)
  (cd "$top" && exec "$bin/lwm2md" --config config/test.conf --set "coap.listen=127.0.0.1:$coap" \
    --set "coaps.listen=127.0.0.1:$coaps" --set "api.listen=127.0.0.1:$api" \
    --set "database.url=$url" --set "server.state_dir=$work/state" --set "log.level=warning" \
    --set coaps.hello_rate=0) >"$work/daemon.log" 2>&1 &
  dpid=$!
  for _ in $(seq 1 600); do curl -s -o /dev/null "http://127.0.0.1:$api/healthz" && break; sleep 0.05; done
  cat >"$work/fleet.ini" <<INI
[fleet]
rate = 20000/s
duration = $duration
deregister = false
[group meters]
count = $devices
endpoint = tb-{n:6}
lwm2m = 1.1
objects = 3,10243
lifetime = 600s
send_interval = $interval
format = senml-cbor
INI
  m() { curl -s "http://127.0.0.1:$api/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }
  r0=$(m lwm2md_telemetry_rows_total)
  t0=$(now_ms)
  "$bin/lwm2m-fleet" --fleet "$work/fleet.ini" --server "coap://127.0.0.1:$coap" --quiet \
    --report-json "$work/fleet.json" >"$work/fleet.out" 2>&1
  for _ in $(seq 1 1200); do
    [ "$(m lwm2md_telemetry_queued)" = 0 ] && [ "$(m lwm2md_telemetry_spill_files)" = 0 ] && break
    sleep 0.05
  done
  t1=$(now_ms)
  done_rows=$(($(m lwm2md_telemetry_rows_total) - r0))
  spilled=$(m lwm2md_telemetry_spilled_total)
  e2e_rate=$((done_rows * 1000 / (t1 - t0)))
  sends_rate=$(python3 -c "import json; d=json.load(open('$work/fleet.json')); print(int(d['operations']['send']['rate_per_s']))" 2>/dev/null || echo 0)
  echo "bench telemetry_ingest: $e2e_rate rows/s persisted end to end ($done_rows rows in $((t1 - t0)) ms from $devices devices, fleet Send rate $sends_rate/s x 3 values, $spilled spilled)"
  kill "$dpid"; wait "$dpid" 2>/dev/null; dpid=""
fi

printf '{"time":"%s","rev":"%s","rows":%d,"pg_copy_rows_per_s":%d,"batch_stmt_rows_per_s":%d,"devices":%d,"e2e_rows_per_s":%d,"fleet_sends_per_s":%d}\n' \
  "$(date -u +%FT%TZ)" "$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo unknown)" "$rows" \
  "$copy_rate" "$stmt_rate" "$devices" "$e2e_rate" "$sends_rate" >>"$top/bench/results/telemetry_bench.json"
