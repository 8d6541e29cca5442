#!/usr/bin/env bash
# Durable, encrypted device credentials (server/secrets.c, server/store/credstore.c): PSK, RPK and
# X.509 credentials PUT through the API are committed (sealed with AES-256-GCM under the master key,
# with an audit row) before the answer; the database holds no clear key; after kill -9 and a
# restart they are restored before the sockets open and coap-client-openssl registers with the PSK;
# with PostgreSQL stopped a change answers 503 and memory keeps the old credentials, and a daemon
# started while it is down loads them once it is back; API tokens
# created and revoked through the API are durable the same way (stored hashed, loaded before the
# first request after a restart); `lwm2md rekey`
# re-seals every row under a new key (the old one no longer needed); a row moved to another
# endpoint or altered does not open (logged by endpoint, skipped); a key file others may read is
# refused. The key never appears in logs or answers.
source "$(dirname "$0")/lib.sh"

for c in coap-client-openssl curl psql openssl; do
  if ! command -v $c >/dev/null; then
    echo "  SKIP - $c not installed (apt-get install libcoap3-bin curl postgresql-client openssl)"
    finish
    exit 0
  fi
done

pgdir=$(readlink -f "$LW_TOP/${BUILD:-build}/e2e/pg")
pgport=${LW_PG_URL##*:}
pgport=${pgport%%/*}
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pg_stop() { as_pg /usr/lib/postgresql/15/bin/pg_ctl -D "$pgdir/data" -m fast -w stop >/dev/null; }
pg_start() {
  as_pg /usr/lib/postgresql/15/bin/pg_ctl -D "$pgdir/data" -l "$pgdir/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $pgport -k $pgdir/run -c max_connections=200" start >/dev/null
}
q() { psql -tAq "$LW_PG_URL" -c "$1"; }
hex() { printf '%s' "$1" | od -An -tx1 | tr -d ' \n'; }

admin_tok=$LW_TMP/creds-admin-token
(umask 077; head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' > "$admin_tok")
ADMIN=$(cat "$admin_tok")
KEY1=$(e2e_master_key)
KEYHEX=$(cat "$KEY1")
PSK=persist-secret-psk-1
PSK2=persist-secret-psk-2
log=$LW_TMP/creds1.log

start() { # log [extra args]
  local l=$1; shift
  start_daemon "$l" --set "api.bootstrap_token_file=$admin_tok" "$@"
  API="http://127.0.0.1:$LW_API_PORT"
}
put() { # ep json -> http code
  curl -s -m 20 -o "$LW_TMP/creds-body" -w '%{http_code}' -X PUT -H "Authorization: Bearer $ADMIN" \
    -H 'Content-Type: application/json' -d "$2" "$API/api/v1/devices/$1/credentials"
}
del() { curl -s -m 20 -o /dev/null -w '%{http_code}' -X DELETE -H "Authorization: Bearer $ADMIN" "$API/api/v1/devices/$1/credentials"; }
get() { curl -s -m 10 -H "Authorization: Bearer $ADMIN" "$API/api/v1/devices/$1/credentials"; }
cs() { # METHOD PATH?QUERY [client args...]: last response line of coap-client-openssl
  local m=$1 u=$2; shift 2
  timeout 20 coap-client-openssl -m "$m" -B 5 -v 7 "$@" "coaps://127.0.0.1:$LW_COAPS_PORT/$u" 2>&1 |
    grep -E '^v:1 t:(ACK|CON|NON) c:[245]\.' | tail -n 1
}
code_of() { sed -n 's/.* c:\([0-9.]*\) .*/\1/p' <<< "$1"; }

openssl ecparam -name prime256v1 -genkey -noout -out "$LW_TMP/creds-rpk.key" 2>/dev/null
RPK_B64=$(openssl pkey -in "$LW_TMP/creds-rpk.key" -pubout -outform DER 2>/dev/null | base64 -w0)

check "daemon starts with a master key" start "$log"
check "start-up logs the master key id, not the key" bash -c 'grep -q "master keys loaded: current=" "$1" && ! grep -qi "$2" "$1"' _ "$log" "$KEYHEX"
check "PUT PSK credentials: 201" [ "$(put persist-psk "{\"mode\":\"psk\",\"identity\":\"persist-id\",\"key\":\"$(hex $PSK)\"}")" = 201 ]
check "PUT RPK credentials: 201" [ "$(put persist-rpk "{\"mode\":\"rpk\",\"public_key\":\"$RPK_B64\"}")" = 201 ]
check "PUT X.509 credentials: 201" [ "$(put persist-x509 '{"mode":"x509","certificate_name":"persist-cn"}')" = 201 ]
check "PUT replacing PSK credentials: 200" [ "$(put persist-psk "{\"mode\":\"psk\",\"identity\":\"persist-id\",\"key\":\"$(hex $PSK)\"}")" = 200 ]
check "PUT an identity another endpoint owns: 409" [ "$(put persist-other "{\"mode\":\"psk\",\"identity\":\"persist-id\",\"key\":\"$(hex $PSK2)\"}")" = 409 ]
check "rows committed when answered: 3 credentials, 3 devices" [ "$(q "SELECT count(*) FROM credentials")/$(q "SELECT count(*) FROM devices WHERE endpoint LIKE 'persist-%'")" = "3/3" ]
check "the database holds no clear PSK (hex or raw)" bash -c '[ "$(psql -tAq "$1" -c "SELECT count(*) FROM credentials WHERE position(decode('"'"'$2'"'"', '"'"'hex'"'"') IN secret) > 0 OR encode(secret, '"'"'hex'"'"') LIKE '"'"'%$2%'"'"' OR encode(secret, '"'"'escape'"'"') LIKE '"'"'%$3%'"'"'")" = 0 ]' _ "$LW_PG_URL" "$(hex $PSK)" "$PSK"
check "sealed rows: version 1, key id and nonce columns match the blob" [ "$(q "SELECT count(*) FROM credentials WHERE get_byte(secret, 0) = 1 AND substring(secret FROM 2 FOR 4) = int4send(key_id) AND substring(secret FROM 6 FOR 12) = nonce")" = 3 ]
check "PSK row: sealed size is record + 33 bytes" [ "$(q "SELECT length(secret) FROM credentials WHERE endpoint = 'persist-psk'")" = $((4 + ${#PSK} + 33)) ]
check "one audit row per change, written with it (actor, result, no secret)" bash -c '[ "$(psql -tAq "$1" -c "SELECT string_agg(result::text, '"'"','"'"' ORDER BY id) FROM audit_log WHERE action = '"'"'credentials_put'"'"' AND target = '"'"'persist-psk'"'"' AND actor = '"'"'bootstrap'"'"'")" = "201,200" ] && [ "$(psql -tAq "$1" -c "SELECT count(*) FROM audit_log WHERE detail::text LIKE '"'"'%$2%'"'"'")" = 0 ]' _ "$LW_PG_URL" "$(hex $PSK)"
check "the refused PUT is audited too (409)" [ "$(q "SELECT count(*) FROM audit_log WHERE action = 'credentials_put' AND target = 'persist-other' AND result = 409")" = 1 ]

r=$(cs post 'rd?ep=persist-psk&lt=300' -u persist-id -k $PSK -t 40 -e '</1/0>,</3/0>')
check "PSK Register before the crash: 2.01" [ "$(code_of "$r")" = "2.01" ]

# API tokens through the API.
tokpost() { curl -s -m 20 -o "$LW_TMP/creds-tok" -w '%{http_code}' -X POST -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -d "$1" "$API/api/v1/tokens"; }
as_tok() { curl -s -m 10 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $1" "$API/api/v1/devices"; }
check "POST /api/v1/tokens: 201" [ "$(tokpost '{"role":"viewer","name":"persist-viewer"}')" = 201 ]
VTOK=$(sed -n 's/.*"token":"\([^"]*\)".*/\1/p' "$LW_TMP/creds-tok")
VID=$(sed -n 's/.*"id":\([0-9]*\).*/\1/p' "$LW_TMP/creds-tok")
check "the new token works at once" [ "$(as_tok "$VTOK")" = 200 ]
check "its role is enforced (viewer cannot PUT credentials)" bash -c '[ "$(curl -s -o /dev/null -w "%{http_code}" -X PUT -H "Authorization: Bearer $2" -d "{}" "$1/api/v1/devices/x/credentials")" = 403 ]' _ "$API" "$VTOK"
check "the token is stored hashed, never in clear" bash -c '[ "$(psql -tAq "$1" -c "SELECT count(*) FROM api_tokens WHERE id = $2 AND length(sha256) = 32 AND position(convert_to('"'"'$3'"'"', '"'"'UTF8'"'"') IN sha256 || salt || convert_to(name, '"'"'UTF8'"'"')) = 0")" = 1 ] && [ "$(psql -tAq "$1" -c "SELECT count(*) FROM audit_log WHERE detail::text LIKE '"'"'%${3:20}%'"'"'")" = 0 ]' _ "$LW_PG_URL" "$VID" "$VTOK"
check "token creation audited once" [ "$(q "SELECT count(*) FROM audit_log WHERE action = 'token_create' AND target = '$VID' AND actor = 'bootstrap' AND result = 201")" = 1 ]
check "GET /api/v1/tokens lists it without a secret" bash -c 'b=$(curl -s -H "Authorization: Bearer $2" "$1/api/v1/tokens"); grep -q "\"name\":\"persist-viewer\"" <<< "$b" && ! grep -q "$3" <<< "$b"' _ "$API" "$ADMIN" "$VTOK"
check "POST /api/v1/tokens with a bad role: 400" [ "$(tokpost '{"role":"root"}')" = 400 ]
tokpost '{"role":"operator","name":"persist-revoked"}' >/dev/null
RTOK=$(sed -n 's/.*"token":"\([^"]*\)".*/\1/p' "$LW_TMP/creds-tok")
RID=$(sed -n 's/.*"id":\([0-9]*\).*/\1/p' "$LW_TMP/creds-tok")
check "DELETE /api/v1/tokens/{id}: 204" [ "$(curl -s -o /dev/null -w '%{http_code}' -X DELETE -H "Authorization: Bearer $ADMIN" "$API/api/v1/tokens/$RID")" = 204 ]
check "the revoked token is refused at once" [ "$(as_tok "$RTOK")" = 401 ]
check "DELETE it again: 404" [ "$(curl -s -o /dev/null -w '%{http_code}' -X DELETE -H "Authorization: Bearer $ADMIN" "$API/api/v1/tokens/$RID")" = 404 ]
check "revocation committed and audited" [ "$(q "SELECT count(*) FROM api_tokens WHERE id = $RID AND revoked_at IS NOT NULL")/$(q "SELECT count(*) FROM audit_log WHERE action = 'token_revoke' AND target = '$RID' AND result = 204")" = "1/1" ]

stop_daemon KILL
log=$LW_TMP/creds2.log
check "restart after kill -9" start "$log"
check "3 credentials restored before the sockets opened" bash -c 'grep -q "credentials restored: count=3 skipped=0" "$1" && [ $(grep -n "credentials restored" "$1" | cut -d: -f1) -lt $(grep -n "\"msg\":\"ready" "$1" | cut -d: -f1) ]' _ "$log"
check "GET after restart: the PSK identity, no key" bash -c 'b=$(curl -s -H "Authorization: Bearer $2" "$1/api/v1/devices/persist-psk/credentials"); grep -q "\"psk_identity\":\"persist-id\"" <<< "$b" && ! grep -q "$3" <<< "$b"' _ "$API" "$ADMIN" "$(hex $PSK)"
check "GET after restart: RPK and X.509 metadata" bash -c 'curl -s -H "Authorization: Bearer $2" "$1/api/v1/devices/persist-rpk/credentials" | grep -q "\"spki_sha256\"" && curl -s -H "Authorization: Bearer $2" "$1/api/v1/devices/persist-x509/credentials" | grep -q "\"certificate_name\":\"persist-cn\""' _ "$API" "$ADMIN"
check "the API token works on the first request after the restart" [ "$(as_tok "$VTOK")" = 200 ]
check "the revoked one stays revoked" [ "$(as_tok "$RTOK")" = 401 ]
r=$(cs post 'rd?ep=persist-psk&lt=300' -u persist-id -k $PSK -t 40 -e '</1/0>,</3/0>')
check "coap-client-openssl PSK Register after the restart: 2.01" [ "$(code_of "$r")" = "2.01" ]
r=$(cs post 'rd?ep=persist-psk&lt=300' -u persist-id -k wrong-key-wrong -t 10 -e '</1/0>')
check "a wrong key is still refused" [ "$(code_of "$r")" != "2.01" ]

# PostgreSQL stopped: changes answer 503 and memory keeps what it had.
pg_stop
code=$(put persist-psk "{\"mode\":\"psk\",\"identity\":\"persist-new-id\",\"key\":\"$(hex $PSK2)\"}")
check "PUT with the database stopped: 503 (got $code)" [ "$code" = 503 ]
check "503 is problem+json" grep -q '"status":503' "$LW_TMP/creds-body"
check "DELETE with the database stopped: 503" [ "$(del persist-rpk)" = 503 ]
check "token creation with the database stopped: 503" [ "$(tokpost '{"role":"viewer"}')" = 503 ]
check "token revocation with the database stopped: 503, token still valid" bash -c '[ "$(curl -s -o /dev/null -w "%{http_code}" -X DELETE -H "Authorization: Bearer $2" "$1/api/v1/tokens/$3")" = 503 ] && [ "$(curl -s -o /dev/null -w "%{http_code}" -H "Authorization: Bearer $4" "$1/api/v1/devices")" = 200 ]' _ "$API" "$ADMIN" "$VID" "$VTOK"
check "memory unchanged: old identity still answered" bash -c 'get() { curl -s -H "Authorization: Bearer $2" "$1/api/v1/devices/$3/credentials"; }; get "$1" "$2" persist-psk | grep -q "\"psk_identity\":\"persist-id\"" && get "$1" "$2" persist-rpk | grep -q "\"mode\":\"rpk\""' _ "$API" "$ADMIN"
r=$(cs post 'rd?ep=persist-psk&lt=300' -u persist-id -k $PSK -t 40 -e '</1/0>,</3/0>')
check "devices keep registering during the outage: 2.01" [ "$(code_of "$r")" = "2.01" ]
pg_start
code=$(put persist-psk "{\"mode\":\"psk\",\"identity\":\"persist-new-id\",\"key\":\"$(hex $PSK2)\"}")
check "PUT once the database is back: 200 (got $code)" [ "$code" = 200 ]
check "the row carries the new identity" [ "$(q "SELECT encode(identity, 'escape') FROM credentials WHERE endpoint = 'persist-psk'")" = persist-new-id ]
check "DELETE once the database is back: 204" [ "$(del persist-rpk)" = 204 ]
check "DELETE again: 404" [ "$(del persist-rpk)" = 404 ]
check "deleted row gone, delete audited" [ "$(q "SELECT count(*) FROM credentials WHERE endpoint = 'persist-rpk'")/$(q "SELECT count(*) FROM audit_log WHERE action = 'credentials_delete' AND target = 'persist-rpk' AND result = 204")" = "0/1" ]
check "the log never shows a key" bash -c '! grep -qi -e "$2" -e "$3" -e "$4" -e "$5" "$1"' _ "$log" "$(hex $PSK)" "$(hex $PSK2)" "$PSK2" "$KEYHEX"
stop_daemon TERM
check "graceful stop exits 0" [ "$LW_DAEMON_RC" = 0 ]

# Rotation: a new current key, the old one for reading; rekey re-seals every row.
KEY2=$LW_TMP/master2.key
(umask 077; head -c 32 /dev/urandom > "$KEY2")
old_id=$(q "SELECT DISTINCT key_id FROM credentials")
lw() { "$LW_BIN" --config "$LW_TOP/config/test.conf" --set "database.url=$LW_PG_URL" "$@"; }
export -f lw
check "rekey --dry-run counts without changing" bash -c 'out=$("$@" rekey --dry-run) && grep -q "2 row(s) would be re-sealed" <<< "$out"' _ lw --set "security.master_key_file=$KEY2" --set "security.old_master_key_files=$KEY1"
check "rekey re-seals every row" bash -c 'out=$("$@" rekey) && grep -q "2 row(s) re-sealed" <<< "$out"' _ lw --set "security.master_key_file=$KEY2" --set "security.old_master_key_files=$KEY1"
check "every row under the new key" [ "$(q "SELECT count(*) FROM credentials WHERE key_id <> $old_id")" = 2 ]
check "rekey again: nothing to do" bash -c 'out=$("$@" rekey) && grep -q "0 row(s) re-sealed" <<< "$out"' _ lw --set "security.master_key_file=$KEY2"
check "rekey audited" [ "$(q "SELECT count(*) FROM audit_log WHERE action = 'rekey' AND actor = 'cli'")" -ge 1 ]
log=$LW_TMP/creds3.log
check "daemon with only the new key starts" start "$log" --set "security.master_key_file=$KEY2"
check "both rows restored with the new key" grep -q "credentials restored: count=2 skipped=0" "$log"
r=$(cs post 'rd?ep=persist-psk&lt=300' -u persist-new-id -k $PSK2 -t 40 -e '</1/0>,</3/0>')
check "PSK Register with the rotated row: 2.01" [ "$(code_of "$r")" = "2.01" ]
stop_daemon TERM

# Database down at start: the credentials are loaded in the background once it is back.
pg_stop
log=$LW_TMP/creds-late.log
check "daemon starts with the database down" start "$log" --set "security.master_key_file=$KEY2"
check "the restore is deferred" grep -q "credentials not restored yet (retried in the background)" "$log"
pg_start
check "credentials restored once the database is back" wait_for "$log" "credentials restored once the database answered: count=2 skipped=0" 30
r=$(cs post 'rd?ep=persist-psk&lt=300' -u persist-new-id -k $PSK2 -t 40 -e '</1/0>,</3/0>')
check "PSK Register after the late restore: 2.01" [ "$(code_of "$r")" = "2.01" ]
stop_daemon TERM

# The keys as systemd credentials ($CREDENTIALS_DIRECTORY, security.master_key_file empty).
cdir=$LW_TMP/credentials
mkdir -p "$cdir"
(umask 077; cp "$KEY2" "$cdir/lwm2md-master-key"; cp "$KEY1" "$cdir/lwm2md-master-key.old")
log=$LW_TMP/creds-sd.log
CREDENTIALS_DIRECTORY=$cdir start "$log" --set "security.master_key_file="
check "keys from systemd credentials: current + old" bash -c 'grep -q "master keys loaded: current=[0-9]* old=[0-9]" "$1" && grep -q "credentials restored: count=2 skipped=0" "$1"' _ "$log"
stop_daemon TERM

# A row moved to another endpoint, or altered, does not open: logged by endpoint, skipped.
q "UPDATE credentials SET secret = (SELECT secret FROM credentials WHERE endpoint = 'persist-psk') WHERE endpoint = 'persist-x509'" >/dev/null
log=$LW_TMP/creds4.log
check "daemon starts with a swapped row" start "$log" --set "security.master_key_file=$KEY2"
check "the swapped row is skipped and named by endpoint" bash -c 'grep -q "credentials not restored: endpoint=persist-x509 kind=x509: authentication failed" "$1" && grep -q "credentials restored: count=1 skipped=1" "$1"' _ "$log"
stop_daemon TERM
log=$LW_TMP/creds5.log
check "daemon with the retired key starts" start "$log" --set "security.master_key_file=$KEY1"
check "rows under an unknown key are skipped" grep -q "persist-psk kind=psk: its master key is not configured" "$log"
stop_daemon TERM

# A key file others may read is refused.
chmod 644 "$KEY2"
log=$LW_TMP/creds6.log
start_daemon "$log" --set "security.master_key_file=$KEY2" >/dev/null 2>&1
stop_daemon TERM
check "a world-readable key file stops the start" bash -c '[ "$2" != 0 ] && grep -q "accessible to other users" "$1"' _ "$log" "$LW_DAEMON_RC"
chmod 600 "$KEY2"
check "no sanitizer report in any daemon log" bash -c '! grep -lE "runtime error|AddressSanitizer|LeakSanitizer" "$@"' _ "$LW_TMP"/creds*.log
finish
