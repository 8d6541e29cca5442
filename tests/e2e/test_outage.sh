#!/usr/bin/env bash
# PostgreSQL outage under fleet load: the private cluster is stopped for ~30 s while 50 devices
# Send twice a second, then started again on the same port. The daemon keeps answering devices
# (the fleet reports no errors), telemetry beyond telemetry.memory spills to files (/readyz and
# /metrics show it), the files are replayed in order and removed, and afterwards every value the
# Send events announced is a row of `telemetry`.
. "$(dirname "$0")/lib.sh"

FLEET=${LW_FLEET:-$LW_TOP/build/bin/lwm2m-fleet}
pgdir=$LW_TOP/${BUILD:-build}/e2e/pg
pgbin=/usr/lib/postgresql/15/bin
if [ ! -x "$FLEET" ] || ! command -v python3 >/dev/null || ! command -v psql >/dev/null ||
  [ ! -f "$pgdir/port" ] && [ ! -f "$(readlink -f "$pgdir")/port" ]; then
  echo "  SKIP: lwm2m-fleet, python3, psql or the harness's PostgreSQL ($pgdir) missing: outage test skipped"
  finish
  exit 0
fi
jq_() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)" 2>/dev/null; }
sql() { psql "$LW_PG_URL" -qAtc "$1"; }
pgd=$(readlink -f "$pgdir")
port=$(cat "$pgd/port")
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
# While the cluster is down its port stays taken by a listener that closes every connection (the
# daemon sees the same as a stopped server), so that no other cluster on this machine
# (tools/pg.sh picks the first free port) takes it before the restart.
holder_pid=""
pg_down() {
  as_pg "$pgbin/pg_ctl" -D "$pgd/data" -m fast -w stop >/dev/null 2>&1
  python3 -c '
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(64)
while True:
    c, _ = s.accept()
    c.close()
' "$port" &
  holder_pid=$!
}
# Same options and port as tools/pg.sh start, so every URL handed out stays valid.
pg_up() {
  if [ -n "$holder_pid" ]; then
    kill "$holder_pid" 2>/dev/null
    wait "$holder_pid" 2>/dev/null
    holder_pid=""
  fi
  as_pg "$pgbin/pg_ctl" -D "$pgd/data" -l "$pgd/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $pgd/run -c fsync=on -c max_connections=200" \
    start >/dev/null
}
trap 'pg_up >/dev/null 2>&1 || true' EXIT

log=$LW_TMP/outage.log
tok=$LW_TMP/outage-token
(umask 077; head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' > "$tok")
T=$(cat "$tok")
if ! start_daemon "$log" --set "api.bootstrap_token_file=$tok" --set telemetry.memory=64k; then
  fail "daemon starts"
  finish
  exit 0
fi
pass "daemon starts"
A=http://127.0.0.1:$LW_API_PORT
ready() { curl -s "$A/readyz" | jq_ "$1"; }
spill=$LW_TMP/state/telemetry-spill

cat > "$LW_TMP/outage-fleet.ini" <<INI
[fleet]
rate = 200/s
duration = 45s
deregister = true
[group a]
count = 50
endpoint = out-{n}
lwm2m = 1.1
objects = 3,4,10243
lifetime = 300s
send_interval = 0.5s
format = senml-cbor
INI
"$FLEET" --fleet "$LW_TMP/outage-fleet.ini" --server "coap://127.0.0.1:$LW_COAP_PORT" --quiet \
  --report-json "$LW_TMP/outage-report.json" >"$LW_TMP/outage-fleet.out" 2>&1 &
fleet_pid=$!
sleep 5
check "before the outage: telemetry connected, nothing spilled" \
  test "$(ready '(d["telemetry"]["connected"], d["telemetry"]["spilling"])')" = "(True, False)"
pg_down
check "PostgreSQL stopped" test "$(as_pg "$pgbin/pg_ctl" -D "$pgd/data" status >/dev/null 2>&1; echo $?)" = 3
sleep 10
check "during the outage: /readyz shows telemetry disconnected and spilling" \
  test "$(ready '(d["telemetry"]["connected"], d["telemetry"]["spilling"], d["telemetry"]["spill_files"] > 0)')" = "(False, True, True)"
check "during the outage: spill files on disk" test -n "$(ls "$spill"/*.spill 2>/dev/null)"
check "during the outage: metrics count spilled records" \
  test "$(curl -s -H "Authorization: Bearer $T" "$A/metrics" | awk '/^lwm2md_telemetry_spilled_total/ {print $2}')" -gt 0
sleep 20
pg_up
check "PostgreSQL started again" test $? = 0
wait "$fleet_pid"
frc=$?
check "the fleet finished without failures (exit $frc)" test "$frc" = 0
errs=$(jq_ 'sum(v["errors"] for v in d["operations"].values())' < "$LW_TMP/outage-report.json")
sends=$(jq_ 'd["operations"]["send"]["count"]' < "$LW_TMP/outage-report.json")
check "the daemon answered every device request during the outage ($sends sends, $errs errors)" \
  test "$errs" = 0 -a "$sends" -gt 1000
for _ in $(seq 1 300); do
  [ "$(ready '(d["telemetry"]["connected"], d["telemetry"]["spill_files"], d["telemetry"]["queued"])')" = "(True, 0, 0)" ] && break
  sleep 0.1
done
check "after the outage: spill files replayed and removed" \
  test "$(ready '(d["telemetry"]["spilling"], d["telemetry"]["spill_files"])')" = "(False, 0)" -a -z "$(ls "$spill"/*.spill 2>/dev/null)"
check "the daemon logged the replay" grep -q "telemetry spill files replayed" "$log"
ev=$(sql "SELECT count(*) FROM events WHERE type = 'send'")
announced=$(sql "SELECT coalesce(sum(jsonb_array_length(data->'values')), 0) FROM events WHERE type = 'send'")
rows=$(sql "SELECT count(*) FROM telemetry WHERE source = 'send'")
check "every Send the fleet made is an event row ($sends = $ev)" test "$sends" = "$ev"
check "no telemetry lost: rows = values the Send events carried ($rows = $announced)" \
  test "$rows" = "$announced" -a "$rows" -ge "$sends"
check "event ids are contiguous (none lost, none twice)" \
  test "$(sql "SELECT max(id) - min(id) + 1 = count(*) FROM events")" = t
check "metrics: nothing dropped, batches none failed" \
  test "$(curl -s -H "Authorization: Bearer $T" "$A/metrics" | awk '/^lwm2md_telemetry_(dropped_total|batches_failed_total)/ {s += $2} END {print s + 0}')" = 0
stop_daemon
check "daemon stops cleanly" test "$LW_DAEMON_RC" = 0
check "no sanitizer findings in the daemon log" test -z "$(grep -l "runtime error\|AddressSanitizer\|LeakSanitizer" "$log" 2>/dev/null)"
finish
