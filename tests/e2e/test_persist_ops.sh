#!/usr/bin/env bash
# Queued operations and desired observations survive a crash (kill -9) and a graceful restart
# (server/store/opstore.c, tables operations and observations): an operation held for a sleeping
# queue-mode device is in the table before the API answers 202, comes back after the restart
# under the same id and is delivered after the device's next Update; a desired observation is
# re-established after the restart when the device updates, and its notifications arrive. Also the
# re-establishment retry: a timeout is retried with backoff; 4.04 marks the observation failed
# with the reason.
. "$(dirname "$0")/lib.sh"

FLEET=${LW_FLEET:-$LW_TOP/build/bin/lwm2m-fleet}
if [ ! -x "$FLEET" ] || ! command -v python3 >/dev/null || ! command -v psql >/dev/null; then
  echo "  SKIP: lwm2m-fleet, python3 or psql missing: persistence of operations not tested"
  finish
  exit 0
fi
jq_() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)" 2>/dev/null; }
q() { psql -tAq "$LW_PG_URL" -c "$1"; }

tok=$LW_TMP/po-token
(umask 077; head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' > "$tok")
T=$(cat "$tok")
EXTRA=(--set "api.bootstrap_token_file=$tok" --set queue.awake_time=1s --set operations.timeout=2s)
restart() { restart_daemon "$1" "${EXTRA[@]}"; } # the fleet keeps sending to the same ports
log=$LW_TMP/po.log
if ! start_daemon "$log" "${EXTRA[@]}"; then
  fail "daemon starts"
  finish
  exit 0
fi
pass "daemon starts"
A=http://127.0.0.1:$LW_API_PORT
body=$LW_TMP/po-body
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

cat > "$LW_TMP/po-fleet.ini" <<INI
[fleet]
rate = 100/s
duration = 600s
deregister = false
[group q]
count = 1
endpoint = po-q-{n}
lwm2m = 1.1
objects = 3,4
lifetime = 300s
update_interval = 7s
send_interval = 0
format = senml-cbor
queue_mode = true
awake_time = 2s
[group o]
count = 1
endpoint = po-o-{n}
lwm2m = 1.1
objects = 3,4
lifetime = 300s
update_interval = 3s
send_interval = 0
format = senml-cbor
INI
"$FLEET" --fleet "$LW_TMP/po-fleet.ini" --server "coap://127.0.0.1:$LW_COAP_PORT" --quiet \
  >"$LW_TMP/po-fleet.out" 2>&1 &
fleet_pid=$!
registered() { [ "$(api GET /api/v1/devices/po-q-0)$(api GET /api/v1/devices/po-o-0)" = 200200 ]; }
check "fleet devices registered" until_ok 10 registered
rows() { [ "$(q "SELECT count(*) FROM registrations WHERE endpoint LIKE 'po-%'")" = 2 ]; }
check "their registrations are in the table" until_ok 10 rows

# ---- a desired observation is written
check "observe po-o-0 /3/0/13 (pmin 1, pmax 1): 201" \
  test "$(api POST /api/v1/devices/po-o-0/observations '{"paths":["/3/0/13"],"attributes":{"pmin":1,"pmax":1}}')" = 201
obs=$(field 'd["id"]')
obs_row() { [ "$(q "SELECT endpoint || ' ' || (paths->>0) || ' ' || state || ' ' || (attrs->>'pmax') FROM observations WHERE id = $obs")" = "po-o-0 /3/0/13 desired 1" ]; }
check "the observation is in the table (paths, attributes, desired)" until_ok 5 obs_row

# ---- operations held for the sleeping device are durable before 202
last_upd() { api GET /api/v1/devices/po-q-0 >/dev/null; field 'd.get("registration", d)["last_update"]'; }
u0=$(last_upd)
until_ok 10 bash -c '[ "$('"$(declare -f api field jq_ last_upd)"'; A='"$A"' T='"$T"' body='"$body"' last_upd)" != "'"$u0"'" ]' ||
  echo "    (no Update seen from po-q-0)"
sleep 1.3 # the server's awake window (1 s) after that Update is over
c1=$(api GET '/api/v1/devices/po-q-0/data/3/0/0?wait=0'); s1=$(field 'd["state"]'); op1=$(field 'd["id"]')
dur1=$(field 'd.get("durable")')
n1=$(q "SELECT count(*) FROM operations WHERE id = $op1 AND state = 'queued'")
c2=$(api GET '/api/v1/devices/po-q-0/data/3/0/1?wait=0'); s2=$(field 'd["state"]'); op2=$(field 'd["id"]')
n2=$(q "SELECT count(*) FROM operations WHERE id = $op2 AND kind = 'read' AND path = '/3/0/1'")
kill -KILL "$LW_DAEMON_PID"; wait "$LW_DAEMON_PID" 2>/dev/null; LW_DAEMON_PID=""
check "two reads for the sleeping device: 202 queued" test "$c1$s1$c2$s2" = 202queued202queued
check "each was in the operations table when the API answered 202" test "$n1$n2" = 11
check "the 202 says the held operation is durable" test "$dur1" = True

# ---- kill -9 and restart
log2=$LW_TMP/po-2.log
check "crash: the daemon restarts on the same ports" restart "$log2"
check "crash: the queued operations were restored before the sockets opened" \
  bash -c 'r=$(grep -n "restored 2 queued operations" "$1" | head -1 | cut -d: -f1); s=$(grep -n "\"msg\":\"ready" "$1" | head -1 | cut -d: -f1); [ -n "$r" ] && [ -n "$s" ] && [ "$r" -lt "$s" ]' _ "$log2"
check "crash: /metrics counts the restored operations" \
  bash -c 'curl -s "$1/metrics" | grep -qx "lwm2md_operations_restored_total 2"' _ "$A"
check "crash: the operation is back under its id, queued" \
  test "$(api GET "/api/v1/operations/$op1")" = 200 -a "$(field '(d["state"], d["endpoint"], d["path"])')" = "('queued', 'po-q-0', '/3/0/0')"
done2() { api GET "/api/v1/operations/$op2" >/dev/null; [ "$(field 'd["state"]')" = succeeded ]; }
check "crash: both are delivered after the device's next Update" until_ok 15 done2
check "crash: ... the first too, in order" \
  test "$(api GET "/api/v1/operations/$op1")" = 200 -a "$(field 'd["state"]')" = succeeded
check "crash: ... with the device's values" \
  test "$(api GET "/api/v1/operations/$op2")" = 200 -a "$(field 'd["result"]["values"][0]["path"]')" = /3/0/1
gone() { [ "$(q "SELECT count(*) FROM operations WHERE id IN ($op1, $op2)")" = 0 ]; }
check "crash: their rows are gone once done" until_ok 5 gone

sse=$LW_TMP/po-sse
curl -s -N -H "Authorization: Bearer $T" "$A/api/v1/events?types=notification" > "$sse" &
sse_pid=$!
active() { api GET /api/v1/devices/po-o-0/observations >/dev/null; [ "$(field '[(o["id"], o["state"]) for o in d["observations"]]')" = "[('$obs', 'active')]" ]; }
check "crash: the observation is back under its id and active again after the device's Update" until_ok 10 active
nnot() { grep -c "\"observation\":\"$obs\"" "$sse"; }
sleep 3
check "crash: its notifications arrive as notification events ($(nnot) in 3 s)" test "$(nnot)" -ge 2

# ---- graceful restart: the deleted observation stays deleted, a new one is kept
check "DELETE of the observation: 204" test "$(api DELETE "/api/v1/devices/po-o-0/observations/$obs")" = 204
check "observe-composite po-o-0 [/3/0/13, /3/0/9]: 201" \
  test "$(api POST /api/v1/devices/po-o-0/observations '{"paths":["/3/0/13","/3/0/9"],"composite":true}')" = 201
obs2=$(field 'd["id"]')
stop_daemon TERM
check "graceful stop: exit 0" test "$LW_DAEMON_RC" = 0
check "graceful stop: the deleted observation's row is gone, the new one is there" \
  test "$(q "SELECT string_agg(id::text || ':' || composite, ',') FROM observations WHERE endpoint = 'po-o-0'")" = "$obs2:true"
log3=$LW_TMP/po-3.log
check "graceful: the daemon restarts" restart "$log3"
active2() { api GET /api/v1/devices/po-o-0/observations >/dev/null; [ "$(field '[(o["id"], o["composite"], o["state"]) for o in d["observations"]]')" = "[('$obs2', True, 'active')]" ]; }
check "graceful: the composite observation is back and active after the device's Update" until_ok 10 active2
check "graceful: new ids are above the restored ones" \
  test "$(api POST /api/v1/devices/po-o-0/observations '{"paths":["/3/0/9"]}')" = 201 -a "$(field "int(d['id']) > $obs2")" = True

# ---- re-establishment: 4.04 is final, a timeout is retried with backoff
check "observe of an absent resource /3/0/99: 201" \
  test "$(api POST /api/v1/devices/po-o-0/observations '{"paths":["/3/0/99"]}')" = 201
obs404=$(field 'd["id"]')
failed404() { api GET /api/v1/devices/po-o-0/observations >/dev/null; [ "$(field '[(o["state"], "4.04" in (o["error"] or ""), o["retries"]) for o in d["observations"] if o["id"]=="'"$obs404"'"][0]')" = "('failed', True, 0)" ]; }
check "4.04: the observation is failed with the reason, not retried" until_ok 5 failed404
kill -STOP "$fleet_pid"
check "observe /3/0/1 while the device is silent: 201" \
  test "$(api POST /api/v1/devices/po-o-0/observations '{"paths":["/3/0/1"]}')" = 201
obsr=$(field 'd["id"]')
retrying() { api GET /api/v1/devices/po-o-0/observations >/dev/null; [ "$(field '[(o["state"], o["retries"], o["next_retry_at"] is not None) for o in d["observations"] if o["id"]=="'"$obsr"'"][0]')" = "('retrying', 1, True)" ]; }
check "timeout: the observation is retrying (attempt 1, next_retry_at set)" until_ok 5 retrying
kill -CONT "$fleet_pid"
recovered() { api GET /api/v1/devices/po-o-0/observations >/dev/null; [ "$(field '[(o["state"], o["retries"], o["established_count"]) for o in d["observations"] if o["id"]=="'"$obsr"'"][0]')" = "('active', 0, 1)" ]; }
check "timeout: the retry establishes it once the device answers" until_ok 10 recovered

# ---- operations that were sent and had not finished when the server stopped (state 'sent', as
# a crash between sending and the device's answer leaves them): a Read is sent again, an Execute
# is not (the device may have rebooted already) and fails with the reason.
stop_daemon TERM
check "stop before the sent rows: exit 0" test "$LW_DAEMON_RC" = 0
# A held operation's row is marked sent when it goes to the device (and deleted when it finishes):
# the table's statistics count one update for each of the two reads delivered after the crash.
# (A backend reports its statistics at most every 10 s while idle, and at exit: the daemon's
# connections are closed now.)
marked() { [ "$(q "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'operations'")" -ge 2 ]; }
check "the held rows were marked sent before they were deleted (2 updates)" until_ok 5 marked
rq='{"path":"%s","cf":65535,"obs_id":0,"obs_op":0,"composite":false,"timeout_ms":10000}'
q "INSERT INTO operations (id, endpoint, kind, path, request, state, attempts) VALUES
   (900000000000001, 'po-q-0', 'read', '/3/0/2', '$(printf "$rq" /3/0/2)', 'sent', 1),
   (900000000000002, 'po-q-0', 'execute', '/3/0/4', '$(printf "$rq" /3/0/4)', 'sent', 1)"
log4=$LW_TMP/po-4.log
check "sent rows: the daemon restarts" restart "$log4"
check "sent rows: the Read is restored to be sent again (logged)" \
  grep -q '900000000000001 (read po-q-0 /3/0/2) was sent before the server stopped: it is sent again' "$log4"
check "sent rows: the Execute is not repeated (logged)" \
  grep -q '900000000000002 (execute po-q-0 /3/0/4) was sent before the server stopped and is not repeated' "$log4"
check "sent rows: the Execute is failed, its outcome unknown" \
  test "$(api GET /api/v1/operations/900000000000002)" = 200 -a "$(field '(d["state"], "unknown" in d["error"])')" = "('failed', True)"
check "sent rows: /metrics counts it" \
  bash -c 'curl -s "$1/metrics" | grep -qx "lwm2md_operations_unknown_outcome_total 1"' _ "$A"
xgone() { [ "$(q "SELECT count(*) FROM operations WHERE id = 900000000000002")" = 0 ]; }
check "sent rows: the Execute's row is deleted" until_ok 5 xgone
rdone() { api GET /api/v1/operations/900000000000001 >/dev/null; [ "$(field '(d["state"], d["result"]["values"][0]["path"])')" = "('succeeded', '/3/0/2')" ]; }
check "sent rows: the Read is delivered again after the device's next Update" until_ok 15 rdone

kill "$sse_pid" 2>/dev/null
kill "$fleet_pid" 2>/dev/null
wait "$fleet_pid" 2>/dev/null
stop_daemon TERM
check "daemon stops cleanly" test "$LW_DAEMON_RC" = 0
check "no sanitizer findings in the daemon logs" bash -c "! grep -q 'runtime error\|AddressSanitizer\|LeakSanitizer' '$log' '$log2' '$log3' '$log4'"
finish
