#!/usr/bin/env bash
# Benchmark: PostgreSQL persistence of registrations (server/store). Starts a private PostgreSQL
# (tools/pg.sh) and measures, in the same run:
#   1. PostgreSQL's own batched insert rate: COPY of N rows into a table shaped like registrations
#      (same columns and indexes): the floor the store is compared with;
#   2. registration changes persisted per second by the store itself (tests/bench/
#      store_pipeline.c: lw_store_change from two writer loops with pipelined connections, as
#      the daemon's shards do): N Registers (rows inserted), then N Updates (rows updated) of
#      distinct endpoints, so nothing coalesces; each as a ratio of the COPY rate;
#   3. restore time: the N live registrations 2 leaves, daemon start (2 shards) until
#      "registrations restored" (logged duration) and until ready;
#   4. end to end: lwm2m-fleet registers FLEET devices with the daemon; write-behind rate from the
#      daemon's lwm2md_store_upserts_total until the queue is empty (fleet-bound).
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
pipeline=$top/$build/bench/store_pipeline
[ -x "$pipeline" ] || { echo "store_bench: $build/bench/store_pipeline not built (make bench)"; exit 1; }
mkdir -p "$top/$build/bench" "$top/bench/results"
base=$(bash "$top/tools/pg.sh" start "$pgdir") || { echo "store_bench: cannot start PostgreSQL"; exit 1; }
db="store_bench_$$"
psql -q "$base" -c "CREATE DATABASE $db" >/dev/null || exit 1
url=${base%/*}/$db
(cd "$top" && "$bin/lwm2md" --config config/test.conf --set "database.url=$url" migrate >/dev/null) ||
  { echo "store_bench: migrate failed"; exit 1; }
now_ms() { date +%s%3N; }
ratio() { python3 -c 'import sys; print("%.2f" % (int(sys.argv[1]) / max(int(sys.argv[2]), 1)))' "$1" "$2"; }

# Rows as CSV, shaped like what the store writes (registrations columns with object_links).
python3 - "$rows" "$work" <<'PY'
import sys, time
n, work = int(sys.argv[1]), sys.argv[2]
objs = '[{"id":1,"version":"1.1","instances":[0]},{"id":3,"version":"1.0","instances":[0]},{"id":3303,"version":"1.0","instances":[0,1]}]'
links = '</1>;ver=1.1,</1/0>,</3>;ver=1.0,</3/0>,</3303>;ver=1.0,</3303/0>,</3303/1>'
t = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
exp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400))
with open(work + "/rows.csv", "w") as f:
    for i in range(n):
        ip = "10.%d.%d.%d" % (i >> 16 & 255, i >> 8 & 255, i & 255)
        f.write('bench-%07d,R%010d,%s,%d,1.1,U,f,86400,%s,%s,%s,"%s","%s",nosec\n' % (
            i, i, ip, 5683 + i % 1000, t, t, exp, objs.replace('"', '""'), links))
PY
cols="endpoint, reg_id, address, port, lwm2m_version, binding, queue_mode, lifetime, registered_at, updated_at, expires_at, objects, object_links, security_mode"

# 1. PostgreSQL's own batched insert rate.
psql -q "$url" -c "CREATE TABLE copy_target (LIKE registrations INCLUDING ALL)" >/dev/null
t0=$(now_ms)
psql -q "$url" -c "\\copy copy_target ($cols) FROM '$work/rows.csv' WITH (FORMAT csv)" >/dev/null
t1=$(now_ms)
copy_rate=$((rows * 1000 / (t1 - t0 > 0 ? t1 - t0 : 1)))
echo "bench store_pg_copy: $copy_rate rows/s"
psql -q "$url" -c "DROP TABLE copy_target" >/dev/null
rm -f "$work/rows.csv"

# 2. The store's pipeline.
out=$(cd "$top" && LW_BENCH_DB_URL=$url LW_BENCH_ROWS=$rows "$pipeline" 2>"$work/pipeline.err")
ins_rate=$(sed -n 's/^bench store_pipeline_insert: \([0-9]*\) .*/\1/p' <<<"$out")
upd_rate=$(sed -n 's/^bench store_pipeline_update: \([0-9]*\) .*/\1/p' <<<"$out")
if [ -z "$ins_rate" ] || [ -z "$upd_rate" ]; then
  echo "store_bench: store_pipeline failed"
  cat "$work/pipeline.err"
  exit 1
fi
echo "bench store_persisted_insert: $ins_rate changes/s ($(ratio "$ins_rate" "$copy_rate") x the COPY rate)"
echo "bench store_persisted_update: $upd_rate changes/s ($(ratio "$upd_rate" "$copy_rate") x the COPY rate)"
# The update phase's dead rows, vacuumed as autovacuum would.
psql -q "$url" -c "VACUUM ANALYZE registrations" >/dev/null

# 3. Restore of the live registrations.
port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
coap=$(port); coaps=$(port); api=$(tport)
t0=$(now_ms)
(cd "$top" && exec "$bin/lwm2md" --config config/test.conf --set "coap.listen=127.0.0.1:$coap" \
  --set "coaps.listen=127.0.0.1:$coaps" --set "api.listen=127.0.0.1:$api" \
  --set "database.url=$url" --set "server.state_dir=$work/state" --set "log.level=info" \
  --set registration.max=2000000) >"$work/daemon.log" 2>&1 &
dpid=$!
for _ in $(seq 1 1200); do grep -q '"msg":"ready' "$work/daemon.log" 2>/dev/null && break; sleep 0.05; done
t1=$(now_ms)
restore_ms=$(sed -n 's/.*registrations restored: restored=\([0-9]*\) .*duration_ms=\([0-9]*\).*/\1 \2/p' "$work/daemon.log")
restored=${restore_ms% *}
restore_ms=${restore_ms#* }
ready_ms=$((t1 - t0))
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$dpid/status")
echo "bench store_restore: ${restored:-0} registrations in ${restore_ms:-?} ms (ready after $ready_ms ms, RSS $((rss_kb / 1024)) MiB)"

# 4. End to end write-behind with the fleet.
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

printf '{"time":"%s","rev":"%s","rows":%d,"pg_copy_rows_per_s":%d,"persisted_insert_per_s":%d,"persisted_update_per_s":%d,"insert_copy_ratio":%s,"update_copy_ratio":%s,"restore_registrations":%d,"restore_ms":%d,"ready_ms":%d,"rss_mib":%d,"fleet_e2e_per_s":%d}\n' \
  "$(date -u +%FT%TZ)" "$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo unknown)" "$rows" \
  "$copy_rate" "$ins_rate" "$upd_rate" "$(ratio "$ins_rate" "$copy_rate")" "$(ratio "$upd_rate" "$copy_rate")" \
  "${restored:-0}" "${restore_ms:-0}" "$ready_ms" "$((rss_kb / 1024))" "$e2e_rate" \
  >>"$top/bench/results/store_bench.json"
