#!/usr/bin/env bash
# Benchmark: PostgreSQL persistence of registrations (server/store). Starts a private PostgreSQL
# (tools/pg.sh) and measures, in the same run:
#   1. PostgreSQL's own batched insert rate: COPY of N rows into a table shaped like registrations;
#   2. the store's batch statement (the exact SQL of store.c: jsonb delete + multi-row upsert,
#      5000 endpoints per batch) replayed over N registration changes: changes persisted per second;
#   3. end to end: lwm2m-fleet registers FLEET devices with the daemon; write-behind rate from the
#      daemon's lwm2md_store_upserts_total until the queue is empty;
#   4. restore time: N live registrations in the table, daemon start until "registrations
#      restored" (logged duration) and until ready.
# Prints "bench store_...: value unit" lines and appends one JSON line to
# bench/results/store_bench.json. Environment: BUILD (default build), STORE_ROWS (1000000),
# STORE_FLEET (20000).
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD:-build}
bin=$top/$build/bin
rows=${STORE_ROWS:-1000000}
fleet=${STORE_FLEET:-20000}
work=$(mktemp -d /tmp/lwm2md-store-bench.XXXXXX)
chmod 755 "$work"
pgdir=$top/$build/bench/pg-store
dpid=""

cleanup() {
  [ -n "$dpid" ] && kill "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null
  bash "$top/tools/pg.sh" stop "$pgdir" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

[ -x "$bin/lwm2md" ] || { echo "store_bench: build first (make all)"; exit 1; }
mkdir -p "$top/$build/bench" "$top/bench/results"
base=$(bash "$top/tools/pg.sh" start "$pgdir") || { echo "store_bench: cannot start PostgreSQL"; exit 1; }
db="store_bench_$$"
psql -q "$base" -c "CREATE DATABASE $db" >/dev/null || exit 1
url=${base%/*}/$db
(cd "$top" && "$bin/lwm2md" --config config/test.conf --set "database.url=$url" migrate >/dev/null) ||
  { echo "store_bench: migrate failed"; exit 1; }
now_ms() { date +%s%3N; }

# Rows as CSV (the registrations columns the store writes) and as store batches (jsonb).
python3 - "$rows" "$work" <<'EOF'
import json, sys, time
n, work = int(sys.argv[1]), sys.argv[2]
b62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
def fmt(v):
    out = []
    for _ in range(11):
        out.append(b62[v % 62]); v //= 62
    return "".join(reversed(out))
objs = '[{"id":1,"version":"1.1","instances":[0]},{"id":3,"version":"1.0","instances":[0]},{"id":3303,"version":"1.0","instances":[0,1]}]'
t = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
exp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400))
with open(work + "/rows.csv", "w") as f, open(work + "/batches.sql", "w") as b:
    batch = []
    def flush():
        if batch:
            b.write("EXECUTE wb('[]', %s);\n" % ("'" + json.dumps(batch, separators=(",", ":")) + "'"))
            batch.clear()
    for i in range(n):
        shard, slot = i % 2, i // 2
        rid = fmt(shard << 56 | slot << 32 | (i * 2654435761 & 0xffffffff))
        ip = "10.%d.%d.%d" % (i >> 16 & 255, i >> 8 & 255, i & 255)
        f.write('bench-%07d,%s,%s,%d,1.1,U,f,86400,%s,%s,%s,"%s",nosec\n' % (
            i, rid, ip, 5683 + i % 1000, t, t, exp, objs.replace('"', '""')))
        batch.append({"ep": "bench-%07d" % i, "id": rid, "addr": ip, "port": 5683 + i % 1000,
                      "ver": "1.1", "b": "U", "q": False, "lt": 86400, "sms": None, "reg": t,
                      "upd": t, "exp": exp, "objs": json.loads(objs), "pid": None, "sec": "nosec"})
        if len(batch) == 5000:
            flush()
    flush()
EOF
cols="endpoint, reg_id, address, port, lwm2m_version, binding, queue_mode, lifetime, registered_at, updated_at, expires_at, objects, security_mode"

# 1. PostgreSQL's own batched insert rate (COPY).
psql -q "$url" -c "CREATE TABLE copy_target (LIKE registrations INCLUDING ALL)" >/dev/null
t0=$(now_ms)
psql -q "$url" -c "\\copy copy_target ($cols) FROM '$work/rows.csv' WITH (FORMAT csv)" >/dev/null
t1=$(now_ms)
copy_rate=$((rows * 1000 / (t1 - t0 > 0 ? t1 - t0 : 1)))
echo "bench store_pg_copy: $copy_rate rows/s"

# 2. The store's batch statement.
sql=$(sed -n '/^static const char batch_sql\[\] =/,/;$/p' "$top/server/store/store.c" |
  sed '1d' | sed 's/^ *"//; s/" *;* *$//; s/\\"/"/g' | tr -d '\n')
{
  echo "PREPARE wb(jsonb, jsonb) AS $sql;"
  cat "$work/batches.sql"
} >"$work/run.sql"
t0=$(now_ms)
psql -q -v ON_ERROR_STOP=1 "$url" -f "$work/run.sql" >/dev/null || { echo "store_bench: batch statement failed"; exit 1; }
t1=$(now_ms)
wb_rate=$((rows * 1000 / (t1 - t0 > 0 ? t1 - t0 : 1)))
echo "bench store_batch_upsert: $wb_rate changes/s"
t0=$(now_ms)
psql -q -v ON_ERROR_STOP=1 "$url" -f "$work/run.sql" >/dev/null
t1=$(now_ms)
wb_rate2=$((rows * 1000 / (t1 - t0 > 0 ? t1 - t0 : 1)))
echo "bench store_batch_update: $wb_rate2 changes/s"

# 4. Restore of the live registrations (before 3, which adds its own rows).
port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start() {
  coap=$(port); coaps=$(port); api=$(tport)
  t0=$(now_ms)
  (cd "$top" && exec "$bin/lwm2md" --config config/test.conf --set "coap.listen=127.0.0.1:$coap" \
    --set "coaps.listen=127.0.0.1:$coaps" --set "api.listen=127.0.0.1:$api" \
    --set "database.url=$url" --set "server.state_dir=$work/state" --set "log.level=info" \
    --set registration.max=2000000) >"$work/daemon.log" 2>&1 &
  dpid=$!
  for _ in $(seq 1 1200); do grep -q '"ready' "$work/daemon.log" 2>/dev/null && break; sleep 0.05; done
  t1=$(now_ms)
}
start
restore_ms=$(sed -n 's/.*registrations restored: restored=\([0-9]*\) .*duration_ms=\([0-9]*\).*/\1 \2/p' "$work/daemon.log")
restored=${restore_ms% *}
restore_ms=${restore_ms#* }
ready_ms=$((t1 - t0))
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$dpid/status")
echo "bench store_restore: $restored registrations in $restore_ms ms (ready after $ready_ms ms, RSS $((rss_kb / 1024)) MiB)"

# 3. End to end write-behind with the fleet.
e2e_rate=0
if [ -x "$bin/lwm2m-fleet" ]; then
  m() { curl -s "http://127.0.0.1:$api/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }
  u0=$(m lwm2md_store_upserts_total)
  t0=$(now_ms)
  "$bin/lwm2m-fleet" --server "coap://127.0.0.1:$coap" --devices "$fleet" --rate 100000 \
    --duration 1s --quiet --no-deregister >"$work/fleet.out" 2>&1
  for _ in $(seq 1 600); do
    [ "$(m lwm2md_store_queued)" = 0 ] && [ "$(($(m lwm2md_store_upserts_total) - u0))" -ge "$fleet" ] && break
    sleep 0.05
  done
  t1=$(now_ms)
  done_rows=$(($(m lwm2md_store_upserts_total) - u0))
  e2e_rate=$((done_rows * 1000 / (t1 - t0)))
  echo "bench store_fleet_e2e: $done_rows registrations persisted in $((t1 - t0)) ms ($e2e_rate/s, fleet-bound)"
fi
kill "$dpid"; wait "$dpid" 2>/dev/null; dpid=""

printf '{"time":"%s","rev":"%s","rows":%d,"pg_copy_rows_per_s":%d,"batch_upsert_per_s":%d,"batch_update_per_s":%d,"restore_registrations":%d,"restore_ms":%d,"ready_ms":%d,"rss_mib":%d,"fleet_e2e_per_s":%d}\n' \
  "$(date -u +%FT%TZ)" "$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo unknown)" "$rows" \
  "$copy_rate" "$wb_rate" "$wb_rate2" "${restored:-0}" "${restore_ms:-0}" "$ready_ms" "$((rss_kb / 1024))" "$e2e_rate" \
  >>"$top/bench/results/store_bench.json"
