#!/usr/bin/env bash
# Telemetry write-behind against the real daemon and PostgreSQL: fleet devices with Send, an
# observation and a Read become rows of `telemetry` (as many as the events announced), the API
# pages through them with a cursor and filters by path and time, problem+json for bad input, an
# SSE client resumes from the events table with a Last-Event-ID older than the in-memory ring, and
# a restart drops a partition past the retention while event ids keep growing.
. "$(dirname "$0")/lib.sh"

FLEET=${LW_FLEET:-$LW_TOP/build/bin/lwm2m-fleet}
if [ ! -x "$FLEET" ] || ! command -v python3 >/dev/null || ! command -v psql >/dev/null; then
  echo "  SKIP: lwm2m-fleet, python3 or psql missing: telemetry tests skipped"
  finish
  exit 0
fi
jq_() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)" 2>/dev/null; }
sql() { psql "$LW_PG_URL" -qAtc "$1"; }

log=$LW_TMP/tel.log
tok=$LW_TMP/tel-token
(umask 077; head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' > "$tok")
T=$(cat "$tok")
if ! start_daemon "$log" --set "api.bootstrap_token_file=$tok" --set api.sse_ring=16; then
  fail "daemon starts"
  finish
  exit 0
fi
pass "daemon starts"
A=http://127.0.0.1:$LW_API_PORT
body=$LW_TMP/tel-body
api() { curl -s -o "$body" -w '%{http_code}' -H "Authorization: Bearer $T" "$A$1"; }
field() { jq_ "$1" < "$body"; }

cat > "$LW_TMP/tel-fleet.ini" <<INI
[fleet]
rate = 100/s
duration = 600s
deregister = false
[group a]
count = 3
endpoint = tel-{n}
lwm2m = 1.1
objects = 3,4,10243
lifetime = 300s
send_interval = 1s
format = senml-cbor
INI
"$FLEET" --fleet "$LW_TMP/tel-fleet.ini" --server "coap://127.0.0.1:$LW_COAP_PORT" --quiet \
  >"$LW_TMP/tel-fleet.out" 2>&1 &
fleet_pid=$!
for _ in $(seq 1 50); do
  [ "$(api /api/v1/devices/tel-0)" = 200 ] && break
  sleep 0.1
done
check "fleet device tel-0 registered" test "$(api /api/v1/devices/tel-0)" = 200
check "read /3/0 of tel-0" test "$(curl -s -o "$body" -w '%{http_code}' -H "Authorization: Bearer $T" "$A/api/v1/devices/tel-0/data/3/0")" = 200
check "observe /3/0/13 of tel-0 (pmin 1, pmax 1): 201" test "$(curl -s -o "$body" -w '%{http_code}' \
  -X POST -H "Authorization: Bearer $T" -H 'Content-Type: application/json' \
  --data '{"paths":["/3/0/13"],"attributes":{"pmin":1,"pmax":1}}' "$A/api/v1/devices/tel-0/observations")" = 201
sleep 4
kill "$fleet_pid" 2>/dev/null
wait "$fleet_pid" 2>/dev/null
sleep 1 # batches are written every 50 ms

# ---- rows ---------------------------------------------------------------------------------------
sends=$(sql "SELECT count(*) FROM events WHERE type = 'send'")
announced=$(sql "SELECT coalesce(sum(jsonb_array_length(data->'values')), 0) FROM events WHERE type = 'send'")
rows=$(sql "SELECT count(*) FROM telemetry WHERE source = 'send'")
check "Send: events persisted ($sends) and one row per value they carried ($announced = $rows)" \
  test "$sends" -ge 6 -a "$announced" = "$rows"
check "Send rows of all three devices" test "$(sql "SELECT count(DISTINCT endpoint) FROM telemetry WHERE source = 'send'")" = 3
check "Read: /3/0/2 stored as a string with source read" \
  test "$(sql "SELECT v_text || ' ' || type FROM telemetry WHERE endpoint = 'tel-0' AND path = '/3/0/2' AND source = 'read'")" = "tel-0 string"
check "Read: /3/0/9 stored as an integer" \
  test "$(sql "SELECT count(*) FROM telemetry WHERE endpoint = 'tel-0' AND path = '/3/0/9' AND type = 'integer' AND v_int IS NOT NULL")" -ge 1
nn=$(sql "SELECT count(*) FROM telemetry WHERE endpoint = 'tel-0' AND path = '/3/0/13' AND source = 'notify' AND type = 'time'")
check "notifications of /3/0/13 stored as time values ($nn)" test "$nn" -ge 2
check "every row is in a daily partition, none in the default one" test "$(sql "SELECT count(*) FROM telemetry_default")" = 0
check "partitions exist for today and two days ahead" \
  test "$(sql "SELECT count(*) FROM pg_class WHERE relname IN ('telemetry_p$(date -u +%Y%m%d)', 'telemetry_p$(date -u -d '+2 days' +%Y%m%d)')")" = 2
check "metrics count the rows written" \
  test "$(curl -s -H "Authorization: Bearer $T" "$A/metrics" | awk '/^lwm2md_telemetry_rows_total/ {print $2}')" -ge "$rows"

# ---- API ----------------------------------------------------------------------------------------
total=$(sql "SELECT count(*) FROM telemetry WHERE endpoint = 'tel-0'")
n=0 pages=0 cursor="" sorted=True
while :; do
  code=$(api "/api/v1/devices/tel-0/telemetry?limit=7&cursor=$cursor")
  [ "$code" = 200 ] || break
  n=$((n + $(field 'len(d["values"])')))
  pages=$((pages + 1))
  [ "$(field 'all(a["timestamp"] <= b["timestamp"] for a, b in zip(d["values"], d["values"][1:]))')" = True ] || sorted=False
  cursor=$(field 'd["next_cursor"] or ""')
  [ -n "$cursor" ] && [ "$pages" -lt 500 ] || break
done
check "API pages (limit 7, $pages pages) return every row of tel-0 once: $n of $total" test "$n" = "$total" -a "$pages" -gt 1
check "API pages are in time order" test "$sorted" = True
check "API: path filter /3/0/2 gives the typed read value" \
  test "$(api '/api/v1/devices/tel-0/telemetry?path=/3/0/2')" = 200 -a \
  "$(field '[(v["type"], v["value"], v["source"]) for v in d["values"]][0]')" = "('string', 'tel-0', 'read')"
check "API: time values carry RFC 3339 and epoch, like /values" \
  test "$(api '/api/v1/devices/tel-0/telemetry?path=/3/0/13&limit=1')" = 200 -a \
  "$(field '[("epoch" in v and v["value"].endswith("Z")) for v in d["values"]][0]')" = True
check "API: a path prefix selects below it (/10243 -> only /10243/...)" \
  test "$(api '/api/v1/devices/tel-0/telemetry?path=/10243&limit=1000')" = 200 -a \
  "$(field 'len(d["values"]) > 0 and all(v["path"].startswith("/10243/") for v in d["values"])')" = True
future=$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)
check "API: from in the future gives an empty page without cursor" \
  test "$(api "/api/v1/devices/tel-0/telemetry?from=$future")" = 200 -a "$(field '(len(d["values"]), d["next_cursor"])')" = "(0, None)"
check "API: epoch bounds (from=0, to=now+1d) select all rows" \
  test "$(api "/api/v1/devices/tel-0/telemetry?from=0&to=$(( $(date +%s) + 86400 ))&limit=10000")" = 200 -a "$(field 'len(d["values"])')" = "$total"
check "API: bad from is a problem+json 400" \
  test "$(api '/api/v1/devices/tel-0/telemetry?from=yesterday')" = 400 -a "$(field 'd["status"]')" = 400
check "API: limit 0 is refused" test "$(api '/api/v1/devices/tel-0/telemetry?limit=0')" = 400
check "API: a forged cursor is refused" test "$(api '/api/v1/devices/tel-0/telemetry?cursor=x')" = 400
check "API: bad path is refused" test "$(api '/api/v1/devices/tel-0/telemetry?path=/a/b')" = 400
check "API: unknown device gives an empty list" \
  test "$(api '/api/v1/devices/nobody/telemetry')" = 200 -a "$(field 'len(d["values"])')" = 0
check "API: needs a token" \
  test "$(curl -s -o /dev/null -w '%{http_code}' "$A/api/v1/devices/tel-0/telemetry")" = 401

# ---- SSE resume from the database -----------------------------------------------------------------
maxid=$(sql "SELECT max(id) FROM events")
sse=$LW_TMP/tel-sse
curl -s -N -H "Authorization: Bearer $T" -H "Last-Event-ID: 1" "$A/api/v1/events" > "$sse" &
sse_pid=$!
for _ in $(seq 1 30); do grep -q "^id: $maxid$" "$sse" && break; sleep 0.1; done
kill "$sse_pid" 2>/dev/null
wait "$sse_pid" 2>/dev/null
ids=$(grep '^id: ' "$sse" | awk '{print $2}' | tr '\n' ' ')
want=$(seq 2 "$maxid" | tr '\n' ' ')
check "SSE with Last-Event-ID 1 (ring of 16, $maxid events) gets 2..$maxid in order" \
  test "$maxid" -gt 20 -a "${ids:0:${#want}}" = "$want"
check "SSE resume: no gap notice" test "$(grep -c 'no longer available' "$sse")" = 0

# ---- retention and restart -----------------------------------------------------------------------
sql "CREATE TABLE telemetry_p20200101 PARTITION OF telemetry FOR VALUES FROM ('2020-01-01 00:00:00+00') TO ('2020-01-02 00:00:00+00');
     INSERT INTO telemetry (endpoint, path, at, source, type, v_int) VALUES ('old', '/3/0/9', '2020-01-01 12:00:00+00', 'read', 'integer', 1)" >/dev/null
check "an old partition with a row exists" test "$(sql "SELECT count(*) FROM telemetry WHERE endpoint = 'old'")" = 1
stop_daemon
check "daemon stops cleanly" test "$LW_DAEMON_RC" = 0
before=$(sql "SELECT max(id) FROM events")
if start_daemon "$log.2" --set "api.bootstrap_token_file=$tok" --set telemetry.retention=30; then
  wait_for "$log.2" "partition(s) dropped" 10 >/dev/null
  check "retention (30 days) dropped the 2020 partition" test -z "$(sql "SELECT to_regclass('telemetry_p20200101')")"
  check "today's partition is kept" test -n "$(sql "SELECT to_regclass('telemetry_p$(date -u +%Y%m%d)')")"
  check "restart: event ids continue above the stored ones" grep -q "next event id $((before + 1))" "$log.2"
  "$FLEET" --server "coap://127.0.0.1:$LW_COAP_PORT" --devices 1 --duration 0.5s --quiet >/dev/null 2>&1
  sleep 0.5
  check "restart: new events are stored with new ids" test "$(sql "SELECT count(*) FROM events WHERE id > $before")" -ge 2
  stop_daemon
else
  fail "daemon restarts"
fi
check "no sanitizer findings in the daemon log" test -z "$(grep -l "runtime error\|AddressSanitizer\|LeakSanitizer" "$log" "$log.2" 2>/dev/null)"
finish
