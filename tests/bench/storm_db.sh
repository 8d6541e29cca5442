#!/usr/bin/env bash
# tests/bench/storm_db.sh - a NoSec registration storm with and without PostgreSQL, back to back.
# N = 100 k x BENCH_SCALE NoSec devices register as fast as the simulator sends (the invocation of
# tests/bench/suite.sh section 1) against freshly started daemons: first one without a database,
# then one with a fresh database on a private PostgreSQL (tools/pg.sh), then (for reference) the
# same with database.write_hold=0, the write-behind sending at once instead of holding its writes
# during the storm. Compared in the same run: registrations/s, p99, retransmissions, server CPU,
# and how long the write-behind still needed after the fleet finished until every registration
# was written (lwm2md_store_queued = 0, no batch in flight). The devices stay registered
# (--no-deregister): had they de-registered at the end, a held Register and its De-register would
# coalesce into nothing to write, flattering the hold.
# Prints "bench storm_db...: value unit" lines and appends one JSON line to
# bench/results/storm_db.json. Environment: BUILD (default build), BENCH_SCALE (default 1),
# BENCH_RATE (ramp-up, default 1000000/s), STORM_DB_ROUNDS (rounds of the three runs, default 1; with more,
# the medians are reported).
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD:-build}
bin=$top/$build/bin
scale=${BENCH_SCALE:-1}
rate=${BENCH_RATE:-1000000}
rounds=${STORM_DB_ROUNDS:-1}
n=$(awk -v s="$scale" 'BEGIN { v = int(100000 * s); print (v < 100 ? 100 : v) }')
work=$(mktemp -d /tmp/lwm2md-storm-db.XXXXXX)
chmod 755 "$work"
pgdir=$top/$build/bench/pg-storm-db
dpid=""

cleanup() {
  [ -n "$dpid" ] && kill "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null
  bash "$top/tools/pg.sh" stop "$pgdir" >/dev/null 2>&1 || true
  [ -n "${STORM_DB_KEEP:-}" ] && echo "storm_db: kept $work" || rm -rf "$work"
}
trap cleanup EXIT

[ -x "$bin/lwm2md" ] && [ -x "$bin/lwm2m-fleet" ] || { echo "storm_db: build first (make all)"; exit 1; }
mkdir -p "$top/$build/bench" "$top/bench/results"
base=$(bash "$top/tools/pg.sh" start "$pgdir") || { echo "storm_db: cannot start PostgreSQL"; exit 1; }
ulimit -n 65536 2>/dev/null || true

port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
json_get() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1" 2>/dev/null; }
now_ms() { date +%s%3N; }
metric() { curl -s "http://127.0.0.1:$api/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }

# start_daemon NAME db|nodb|nohold: a daemon on free ports, with a fresh database or none.
start_daemon() {
  local dbset=()
  if [ "$2" != nodb ]; then
    local db="storm_$1_$$"
    psql -q "$base" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1
    psql -q "$base" -c "CREATE DATABASE $db" >/dev/null || return 1
    dbset=(--set "database.url=${base%/*}/$db" --set "database.schema_dir=$top/schema")
    [ "$2" = nohold ] && dbset+=(--set database.write_hold=0)
  fi
  coap=$(port) coaps=$(port) api=$(tport)
  "$bin/lwm2md" --config "$top/config/test.conf" --set "coap.listen=127.0.0.1:$coap" \
    --set "coaps.listen=127.0.0.1:$coaps" --set "api.listen=127.0.0.1:$api" "${dbset[@]}" \
    --set "server.state_dir=$work/state-$1" --set "log.level=warning" >"$work/daemon-$1.log" 2>&1 &
  dpid=$!
  for _ in $(seq 1 300); do
    curl -s -o /dev/null "http://127.0.0.1:$api/healthz" && return 0
    kill -0 "$dpid" 2>/dev/null || break
    sleep 0.1
  done
  echo "storm_db: daemon did not start"; tail -5 "$work/daemon-$1.log"; return 1
}
stop_daemon() { [ -n "$dpid" ] && kill "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null; dpid=""; }

# storm NAME db|nodb|nohold: one storm against a fresh daemon; with a database, also waits (at most
# 60 s) until the write-behind queue is empty and records how long that took after the fleet.
storm() {
  start_daemon "$1" "$2" || exit 1
  "$bin/lwm2m-fleet" --quiet --report-json "$work/$1.json" --server "coap://127.0.0.1:$coap" \
    --devices "$n" --rate "$rate" --duration 0 --no-deregister --server-pid "$dpid" \
    >"$work/$1.out" 2>&1
  local t0 drain=0 rows=0
  t0=$(now_ms)
  if [ "$2" != nodb ]; then
    for _ in $(seq 1 1200); do
      [ "$(metric lwm2md_store_queued)" = 0 ] && [ "$(metric lwm2md_store_inflight_batches)" = 0 ] && break
      sleep 0.05
    done
    drain=$(($(now_ms) - t0))
    rows=$(metric lwm2md_store_upserts_total)
  fi
  stop_daemon
  [ -s "$work/$1.json" ] || { echo "storm_db: $1: no report"; tail -5 "$work/$1.out"; exit 1; }
  echo "$(json_get "$work/$1.json" 'round(d["operations"]["register"]["rate_per_s"])') $(json_get "$work/$1.json" 'd["operations"]["register"]["p99_ms"]') $(json_get "$work/$1.json" 'd["registered"]') $(json_get "$work/$1.json" 'd["network"]["retransmissions"]') $(json_get "$work/$1.json" 'round(d["server_process"]["cpu_s"], 2)') $drain ${rows:-0}"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR ? v[int((NR + 1) / 2)] : 0) }'; }
: >"$work/nodb.res"
: >"$work/db.res"
: >"$work/nohold.res"
for r in $(seq 1 "$rounds"); do
  storm "nodb$r" nodb >>"$work/nodb.res"
  storm "db$r" db >>"$work/db.res"
  storm "nohold$r" nohold >>"$work/nohold.res"
done
col() { awk -v c="$2" '{ print $c }' "$work/$1.res" | median; }
a_rate=$(col nodb 1) a_p99=$(col nodb 2) a_ok=$(col nodb 3) a_rtx=$(col nodb 4) a_cpu=$(col nodb 5)
b_rate=$(col db 1) b_p99=$(col db 2) b_ok=$(col db 3) b_rtx=$(col db 4) b_cpu=$(col db 5)
b_drain=$(col db 6) b_rows=$(col db 7)
c_rate=$(col nohold 1) c_p99=$(col nohold 2) c_rtx=$(col nohold 4) c_cpu=$(col nohold 5)
c_drain=$(col nohold 6)
ratio=$(awk -v a="$b_rate" -v b="$a_rate" 'BEGIN { printf "%.1f", (b > 0 ? 100 * a / b : 0) }')
c_ratio=$(awk -v a="$c_rate" -v b="$a_rate" 'BEGIN { printf "%.1f", (b > 0 ? 100 * a / b : 0) }')
git_rev=$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo unknown)
echo "bench storm_db_nodb: ${a_rate:-0} registrations/s ($a_ok of $n devices, p99 $a_p99 ms, $a_rtx retransmissions, server CPU $a_cpu s; no database)"
echo "bench storm_db_db: ${b_rate:-0} registrations/s ($b_ok of $n devices, p99 $b_p99 ms, $b_rtx retransmissions, server CPU $b_cpu s; PostgreSQL: $b_rows rows upserted, queue empty $b_drain ms after the fleet)"
echo "bench storm_db_ratio: $ratio % (with a database / without, same run, median of $rounds)"
echo "bench storm_db_nohold: ${c_rate:-0} registrations/s (database.write_hold=0: p99 $c_p99 ms, $c_rtx retransmissions, server CPU $c_cpu s, queue empty $c_drain ms after the fleet; $c_ratio % of no database)"
printf '{"bench":"storm_db","ts":"%s","git":"%s","scale":%s,"devices":%d,"rounds":%d,"nodb_per_s":%s,"nodb_p99_ms":%s,"nodb_retransmissions":%s,"nodb_cpu_s":%s,"db_per_s":%s,"db_p99_ms":%s,"db_retransmissions":%s,"db_cpu_s":%s,"db_rows":%s,"db_drain_ms":%s,"ratio_pct":%s,"nohold_per_s":%s,"nohold_p99_ms":%s,"nohold_ratio_pct":%s}\n' \
  "$(date -u +%FT%TZ)" "$git_rev" "$scale" "$n" "$rounds" "${a_rate:-0}" "${a_p99:-0}" "${a_rtx:-0}" \
  "${a_cpu:-0}" "${b_rate:-0}" "${b_p99:-0}" "${b_rtx:-0}" "${b_cpu:-0}" "${b_rows:-0}" \
  "${b_drain:-0}" "$ratio" "${c_rate:-0}" "${c_p99:-0}" "$c_ratio" >>"$top/bench/results/storm_db.json"
