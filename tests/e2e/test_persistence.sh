#!/usr/bin/env bash
# Write-behind of registrations (server/store/store.c) against the harness's PostgreSQL: Register,
# Update and De-register of a coap-client device reach the registrations table; a fleet of 500
# devices is persisted in batches; a PostgreSQL outage does not stop the daemon answering, the
# store reports it in /metrics and writes what was queued once the database is back; a change
# made right before SIGTERM is written by the graceful stop; one row the database refuses is
# isolated from the 200 others of its batch.
source "$(dirname "$0")/lib.sh"

if ! command -v coap-client-notls >/dev/null; then
  echo "  SKIP - coap-client-notls not installed (apt-get install libcoap3-bin)"
  finish
  exit 0
fi
FLEET=${LW_FLEET:-$LW_TOP/build/bin/lwm2m-fleet}
pgdir=$(readlink -f "$LW_TOP/${BUILD:-build}/e2e/pg")
pgport=${LW_PG_URL##*:}
pgport=${pgport%%/*}
# pg_stop / pg_start: the harness's cluster, restarted on the same port (the daemon keeps its URL).
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pg_stop() { as_pg /usr/lib/postgresql/15/bin/pg_ctl -D "$pgdir/data" -m fast -w stop >/dev/null; }
pg_start() {
  as_pg /usr/lib/postgresql/15/bin/pg_ctl -D "$pgdir/data" -l "$pgdir/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $pgport -k $pgdir/run -c max_connections=200" start >/dev/null
}

log=$LW_TMP/persistence.log
q() { psql -tAq "$LW_PG_URL" -c "$1"; }
# until_eq SECONDS EXPECTED SQL: true once the query prints EXPECTED.
until_eq() {
  local secs=$1 want=$2 sql=$3 i
  for ((i = 0; i < secs * 10; i++)); do
    [ "$(q "$sql" 2>/dev/null)" = "$want" ] && return 0
    sleep 0.1
  done
  echo "    (after ${secs}s: '$(q "$sql" 2>&1)', wanted '$want')"
  return 1
}
coap() {
  local m=$1 u=$2 p=${3-}
  local args=(-m "$m" -B 5 -v 7)
  [ -n "$p" ] && args+=(-t 40 -e "$p")
  coap-client-notls "${args[@]}" "coap://127.0.0.1:$LW_COAP_PORT/$u" 2>&1 |
    grep -E '^v:1 t:(ACK|CON|NON) c:[245]\.' | tail -n 1
}
code_of() { sed -n 's/.* c:\([0-9.]*\) .*/\1/p' <<< "$1"; }
loc_of() { sed -n 's/.*Location-Path:rd, Location-Path:\([A-Za-z0-9]*\) .*/\1/p' <<< "$1"; }
metric() { curl -s "http://127.0.0.1:$LW_API_PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

check "daemon starts" start_daemon "$log"
q "DELETE FROM registrations" >/dev/null

# ---- one device: Register, Update, De-register
r=$(coap post 'rd?ep=persist-dev1&lt=300&lwm2m=1.1&b=U' '</1/0>,</3/0>,</5/0>')
id=$(loc_of "$r")
check "Register answers 2.01" [ "$(code_of "$r")" = 2.01 ]
check "the registration row appears" until_eq 5 1 "SELECT count(*) FROM registrations WHERE endpoint = 'persist-dev1'"
check "row: registration id, lifetime, version, binding" [ "$(q "SELECT reg_id || ' ' || lifetime || ' ' || lwm2m_version || ' ' || binding FROM registrations WHERE endpoint = 'persist-dev1'")" = "$id 300 1.1 U" ]
check "row: source address and port" [ "$(q "SELECT host(address) = '127.0.0.1' AND port > 0 FROM registrations WHERE endpoint = 'persist-dev1'")" = t ]
check "row: announced objects" [ "$(q "SELECT jsonb_path_query_array(objects, '\$[*].id')::text FROM registrations WHERE endpoint = 'persist-dev1'")" = "[1, 3, 5]" ]
check "row: expiry = last update + lifetime (to the second)" [ "$(q "SELECT expires_at - updated_at BETWEEN interval '299 s' AND interval '301 s' FROM registrations WHERE endpoint = 'persist-dev1'")" = t ]
r=$(coap post "rd/$id?lt=600")
check "Update answers 2.04" [ "$(code_of "$r")" = 2.04 ]
check "the Update's lifetime is written" until_eq 5 600 "SELECT lifetime FROM registrations WHERE endpoint = 'persist-dev1'"
r=$(coap delete "rd/$id")
check "De-register answers 2.02" [ "$(code_of "$r")" = 2.02 ]
check "the row is deleted" until_eq 5 0 "SELECT count(*) FROM registrations WHERE endpoint = 'persist-dev1'"

# ---- a fleet: batched writes
if [ -x "$FLEET" ]; then
  "$FLEET" --server "coap://127.0.0.1:$LW_COAP_PORT" --devices 500 --rate 2000 --duration 2s \
    --quiet --no-deregister >"$LW_TMP/persist-fleet.out" 2>&1
  check "500 fleet devices persisted" until_eq 10 500 "SELECT count(*) FROM registrations"
  check "metrics: batches committed, rows written" bash -c '[ "$1" -ge 1 ] && [ "$2" -ge 500 ]' _ "$(metric lwm2md_store_batches_total)" "$(metric lwm2md_store_upserts_total)"
  check "metrics: nothing dropped or refused" [ "$(metric lwm2md_store_dropped_total) $(metric lwm2md_store_batches_failed_total)" = "0 0" ]
else
  fail "lwm2m-fleet is built ($FLEET)"
fi

# ---- PostgreSQL outage
check "metrics: store connected" [ "$(metric lwm2md_store_connected)" = 1 ]
pg_stop
r=$(coap post 'rd?ep=persist-outage&lt=300&lwm2m=1.1' '</1/0>,</3/0>')
check "database down: Register still answers 2.01" [ "$(code_of "$r")" = 2.01 ]
oid=$(loc_of "$r")
r=$(coap post "rd/$oid?lt=900")
check "database down: Update still answers 2.04" [ "$(code_of "$r")" = 2.04 ]
check "database down: metrics show the store disconnected" bash -c 'for i in $(seq 50); do [ "$(curl -s "$1/metrics" | awk "\$1 == \"lwm2md_store_connected\" { print \$2 }")" = 0 ] && exit 0; sleep 0.1; done; exit 1' _ "http://127.0.0.1:$LW_API_PORT"
check "database down: the change is queued" [ "$(metric lwm2md_store_queued)" -ge 1 ]
check "database down: /readyz shows the store disconnected with its queue" python3 -c '
import json, sys, urllib.request, urllib.error
try:
    body = urllib.request.urlopen(sys.argv[1]).read()
except urllib.error.HTTPError as e:
    body = e.read()
s = json.loads(body)["store"]
sys.exit(0 if s["connected"] is False and s["queued"] >= 1 else 1)' "http://127.0.0.1:$LW_API_PORT/readyz"
check "PostgreSQL restarts on its port" pg_start
check "database back: the queued registration is written (newest state)" until_eq 20 900 "SELECT lifetime FROM registrations WHERE endpoint = 'persist-outage'"
check "database back: metrics show the store connected" [ "$(metric lwm2md_store_connected)" = 1 ]

# ---- PostgreSQL outage under load: 300 devices register and update every second while the
# database refuses the daemon; the daemon answers them, their changes coalesce per endpoint in the
# per-shard writers, and every row is there with its newest state once the database is back. The
# outage closes the database to connections and ends its sessions (the server keeps its port, so
# no other cluster on this machine can take it meanwhile).
pgadmin=${LW_PG_URL%/*}/postgres
pgdb=${LW_PG_URL##*/}
db_block() {
  psql -tAq "$pgadmin" -c "ALTER DATABASE \"$pgdb\" ALLOW_CONNECTIONS false" \
    -c "SELECT count(pg_terminate_backend(pid)) >= 0 FROM pg_stat_activity WHERE datname = '$pgdb'" >/dev/null
}
db_unblock() { psql -tAq "$pgadmin" -c "ALTER DATABASE \"$pgdb\" ALLOW_CONNECTIONS true" >/dev/null; }
if [ -x "$FLEET" ]; then
  cat >"$LW_TMP/outage.ini" <<'INI'
[fleet]
rate = 1000/s
duration = 2s
deregister = false
[group outage]
count = 300
endpoint = outage-{n:4}
lwm2m = 1.1
security = nosec
objects = 3,4
lifetime = 60s
update_interval = 1s
send_interval = 3600s
INI
  c0=$(metric lwm2md_store_coalesced_total)
  d0=$(metric lwm2md_store_dropped_total)
  db_block
  check "outage under load: metrics show the store disconnected" bash -c 'for i in $(seq 50); do [ "$(curl -s "$1/metrics" | awk "\$1 == \"lwm2md_store_connected\" { print \$2 }")" = 0 ] && exit 0; sleep 0.1; done; exit 1' _ "http://127.0.0.1:$LW_API_PORT"
  "$FLEET" --server "coap://127.0.0.1:$LW_COAP_PORT" --fleet "$LW_TMP/outage.ini" --quiet \
    --report-json "$LW_TMP/outage-fleet.json" >"$LW_TMP/outage-fleet.out" 2>&1
  tend=$(date +%s)
  check "outage under load: every device registered (the daemon kept answering)" python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
def find(o, k):
    if isinstance(o, dict):
        for kk, v in o.items():
            if kk == k: return v
            x = find(v, k)
            if x is not None: return x
    return None
reg = find(r, "registered")
sys.exit(0 if reg is not None and int(reg) >= 300 else 1)' "$LW_TMP/outage-fleet.json"
  check "outage under load: the changes wait in the queue" [ "$(metric lwm2md_store_queued)" -ge 300 ]
  check "outage under load: Updates coalesced per endpoint" [ $(($(metric lwm2md_store_coalesced_total) - c0)) -ge 300 ]
  check "outage under load: nothing dropped" [ "$(metric lwm2md_store_dropped_total)" = "$d0" ]
  check "outage under load: the database takes connections again" db_unblock
  check "outage under load: all 300 rows written once it is back" until_eq 30 300 "SELECT count(*) FROM registrations WHERE endpoint LIKE 'outage-%'"
  check "outage under load: each row has the newest state (last Update)" [ "$(q "SELECT count(*) FROM registrations WHERE endpoint LIKE 'outage-%' AND updated_at >= to_timestamp($tend - 3)")" = 300 ]
  check "outage under load: the queue is empty" [ "$(metric lwm2md_store_queued)" = 0 ]
fi

# ---- one row the database refuses: a CHECK constraint added here refuses one endpoint name while
# 200 others register behind a closed database, so they all wait in the queue and go out in the
# same batch once it is back. The batch is split until the bad row is alone: the 200 others are
# written, the bad one is logged (with its endpoint) and counted once, and the daemon keeps
# serving and writing.
if [ -x "$FLEET" ]; then
  cat >"$LW_TMP/refuse.ini" <<'INI'
[fleet]
rate = 2000/s
duration = 2s
deregister = false
[group refuse]
count = 201
endpoint = refuse-{n:4}
lwm2m = 1.1
security = nosec
objects = 3
lifetime = 300s
update_interval = 200s
send_interval = 3600s
INI
  q "ALTER TABLE registrations ADD CONSTRAINT e2e_refuse_one CHECK (endpoint <> 'refuse-0100') NOT VALID" >/dev/null
  f0=$(metric lwm2md_store_rows_refused_total)
  s0=$(metric lwm2md_store_batches_split_total)
  db_block
  check "refused row: store disconnected while the fleet registers" bash -c 'for i in $(seq 50); do [ "$(curl -s "$1/metrics" | awk "\$1 == \"lwm2md_store_connected\" { print \$2 }")" = 0 ] && exit 0; sleep 0.1; done; exit 1' _ "http://127.0.0.1:$LW_API_PORT"
  "$FLEET" --server "coap://127.0.0.1:$LW_COAP_PORT" --fleet "$LW_TMP/refuse.ini" --quiet \
    >"$LW_TMP/refuse-fleet.out" 2>&1
  check "refused row: the 201 changes wait in the queue" [ "$(metric lwm2md_store_queued)" -ge 201 ]
  db_unblock
  check "refused row: the 200 others are written" until_eq 30 200 "SELECT count(*) FROM registrations WHERE endpoint LIKE 'refuse-%'"
  check "refused row: the refused one is not" [ "$(q "SELECT count(*) FROM registrations WHERE endpoint = 'refuse-0100'")" = 0 ]
  check "refused row: counted once" bash -c 'for i in $(seq 50); do [ "$(curl -s "$1/metrics" | awk "\$1 == \"lwm2md_store_rows_refused_total\" { print \$2 }")" = "$2" ] && exit 0; sleep 0.1; done; exit 1' _ "http://127.0.0.1:$LW_API_PORT" $((f0 + 1))
  check "refused row: the batch was split to isolate it" [ "$(metric lwm2md_store_batches_split_total)" -gt "$s0" ]
  check "refused row: logged once with its endpoint and the database's message" \
    [ "$(grep -c '"msg":"registration change refused by the database, not written: endpoint=refuse-0100: .*e2e_refuse_one' "$log")" = 1 ]
  check "refused row: no other endpoint refused" [ "$(grep -c 'refused by the database, not written' "$log")" = 1 ]
  check "refused row: the queue is empty" [ "$(metric lwm2md_store_queued)" = 0 ]
  r=$(coap post 'rd?ep=refuse-after&lt=300&lwm2m=1.1' '</3/0>')
  check "refused row: the daemon keeps serving (Register answers 2.01)" [ "$(code_of "$r")" = 2.01 ]
  check "refused row: ... and writing" until_eq 5 1 "SELECT count(*) FROM registrations WHERE endpoint = 'refuse-after'"
  q "ALTER TABLE registrations DROP CONSTRAINT e2e_refuse_one" >/dev/null
fi

# ---- kill -9, restart: registrations restored before the sockets open
r=$(coap post 'rd?ep=persist-crash&lt=300&lwm2m=1.0&b=UQ' '</1/0>,</3/0>,</3303/0>,</3303/1>')
cid=$(loc_of "$r")
check "crash: Register answers 2.01" [ "$(code_of "$r")" = 2.01 ]
check "crash: the row is written before the crash" until_eq 5 1 "SELECT count(*) FROM registrations WHERE endpoint = 'persist-crash'"
live=$(q "SELECT count(*) FROM registrations WHERE expires_at > now()")
kill -KILL "$LW_DAEMON_PID"; wait "$LW_DAEMON_PID" 2>/dev/null; LW_DAEMON_PID=""
log2=$LW_TMP/persistence-2.log
admin_tok=$LW_TMP/persist-admin
(umask 077; head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' > "$admin_tok")
check "crash: the daemon restarts" start_daemon "$log2" --set "api.bootstrap_token_file=$admin_tok"
check "crash: every live registration restored" grep -q "registrations restored: restored=$live expired=0 skipped=0" "$log2"
check "crash: restored before the sockets opened" bash -c 'r=$(grep -n "registrations restored" "$1" | head -1 | cut -d: -f1); s=$(grep -n "shards started\|\"msg\":\"ready" "$1" | head -1 | cut -d: -f1); [ -n "$r" ] && [ -n "$s" ] && [ "$r" -lt "$s" ]' _ "$log2"
api_get() { curl -s -H "Authorization: Bearer $(cat "$admin_tok")" "http://127.0.0.1:$LW_API_PORT$1"; }
dev=$(api_get /api/v1/devices/persist-crash)
check "crash: the API shows the restored device with its id, binding and objects" python3 -c '
import json, sys
d = json.loads(sys.argv[1]); d = d.get("registration", d)
ok = d["registration_id"] == sys.argv[2] and d["binding"] == "UQ" and d["lifetime_s"] == 300 \
    and d["lwm2m_version"] == "1.0" and d["queue_mode"] is True \
    and sorted(o["id"] for o in d["objects"]) == [1, 3, 3303] \
    and [o["instances"] for o in d["objects"] if o["id"] == 3303] == [[0, 1]]
sys.exit(0 if ok else 1)' "$dev" "$cid"
r=$(coap post "rd/$cid")
check "crash: an Update with the old Location answers 2.04 (no new Register)" [ "$(code_of "$r")" = 2.04 ]
r=$(coap post "rd/$cid?lt=450")
check "crash: the restored registration keeps being written" [ "$(code_of "$r")" = 2.04 ]
check "crash: ... the new lifetime reaches the table" until_eq 5 450 "SELECT lifetime FROM registrations WHERE endpoint = 'persist-crash'"

# ---- graceful stop writes what is queued
r=$(coap post 'rd?ep=persist-last&lt=300&lwm2m=1.1' '</3/0>')
stop_daemon TERM
check "graceful stop: exit 0" [ "$LW_DAEMON_RC" = 0 ]
check "graceful stop: the last Register is in the table" [ "$(q "SELECT count(*) FROM registrations WHERE endpoint = 'persist-last'")" = 1 ]
finish
