#!/usr/bin/env bash
# CoAPS with raw public keys (RFC 7250) end to end: the daemon presents the raw public key of
# coaps.key (coaps.rpk = true); a device's SubjectPublicKeyInfo is provisioned through the API
# (mode rpk, base64 DER or PEM) and Debian's coap-client-gnutls (libcoap, -M rpk_file) registers
# and updates with it; an unknown key, a key registering another endpoint and a bad public_key
# are refused; PSK devices still work next to it.
source "$(dirname "$0")/lib.sh"

for c in coap-client-gnutls openssl curl; do
  if ! command -v $c >/dev/null; then
    echo "  SKIP - $c not installed (apt-get install libcoap3-bin openssl curl)"
    finish
    exit 0
  fi
done

keys=$LW_TMP/rpk-keys
mkdir -p "$keys"
for k in server dev other rogue; do
  openssl ecparam -name prime256v1 -genkey -noout -out "$keys/$k.key" 2>/dev/null
done
spki_b64() { openssl ec -in "$keys/$1.key" -pubout -outform DER 2>/dev/null | base64 -w0; }
check "ECDSA P-256 keys created with the openssl CLI" test -s "$keys/rogue.key"

log=$LW_TMP/rpk.log
admin_tok=$LW_TMP/rpk-admin-token
(umask 077; head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' > "$admin_tok")
ADMIN=$(cat "$admin_tok")
bad_start() { # the daemon must refuse coaps.rpk without coaps.key, and say why
  ! timeout 20 "$LW_BIN" --config "$LW_TOP/config/test.conf" --set "database.url=$LW_PG_URL" \
    --set "server.state_dir=$LW_TMP/rpk-state" --set "coaps.rpk=true" \
    --set "coap.listen=127.0.0.1:$(free_port u)" --set "coaps.listen=127.0.0.1:$(free_port u)" \
    --set "api.listen=127.0.0.1:$(free_port t)" >"$LW_TMP/rpk-bad.log" 2>&1 &&
    grep -q "coaps.rpk needs coaps.key" "$LW_TMP/rpk-bad.log"
}
check "coaps.rpk without coaps.key is refused at start" bad_start
check "daemon with coaps.rpk = true starts" start_daemon "$log" \
  --set "api.bootstrap_token_file=$admin_tok" --set "coaps.key=$keys/server.key" \
  --set "coaps.rpk=true"
API="http://127.0.0.1:$LW_API_PORT"
curl_put() { # ep json -> http code
  curl -s -o "$LW_TMP/rpk-body" -w '%{http_code}' -X PUT -H "Authorization: Bearer $ADMIN" \
    -H 'Content-Type: application/json' -d "$2" "$API/api/v1/devices/$1/credentials"
}
hex() { printf '%s' "$1" | od -An -tx1 | tr -d ' \n'; }

DEV=$(spki_b64 dev)
check "PUT rpk credentials: 201" [ "$(curl_put rpk-dev "{\"mode\":\"rpk\",\"public_key\":\"$DEV\"}")" = 201 ]
want=$(openssl ec -in "$keys/dev.key" -pubout -outform DER 2>/dev/null | sha256sum | cut -c1-64)
check "PUT answers the SPKI SHA-256" grep -q "\"spki_sha256\":\"$want\"" "$LW_TMP/rpk-body"
check "GET credentials: mode rpk" bash -c 'curl -s -H "Authorization: Bearer $2" "$1/api/v1/devices/rpk-dev/credentials" | grep -q "\"mode\":\"rpk\""' _ "$API" "$ADMIN"
OTHER_PEM=$(openssl ec -in "$keys/other.key" -pubout 2>/dev/null | awk '{printf "%s\\n", $0}')
check "PUT rpk as PEM for a second device: 201" [ "$(curl_put rpk-other "{\"mode\":\"rpk\",\"public_key\":\"$OTHER_PEM\"}")" = 201 ]
check "PUT a key another endpoint owns: 409" [ "$(curl_put rpk-third "{\"mode\":\"rpk\",\"public_key\":\"$DEV\"}")" = 409 ]
check "PUT a public_key that is not an SPKI: 400" [ "$(curl_put rpk-third "{\"mode\":\"rpk\",\"public_key\":\"$(head -c 91 /dev/urandom | base64 -w0)\"}")" = 400 ]
check "PUT rpk without public_key: 400" [ "$(curl_put rpk-third '{"mode":"rpk"}')" = 400 ]
KEYP=e2e-rpk-psk-key-1
check "PUT PSK credentials next to it: 201" [ "$(curl_put rpk-psk "{\"mode\":\"psk\",\"identity\":\"rpk-psk-id\",\"key\":\"$(hex $KEYP)\"}")" = 201 ]

# cs METHOD PATH?QUERY [client args...]: the last response line of coap-client-gnutls -v 7.
cs() {
  local m=$1 u=$2; shift 2
  timeout 20 coap-client-gnutls -m "$m" -B 5 -v 7 "$@" "coaps://127.0.0.1:$LW_COAPS_PORT/$u" 2>&1 |
    grep -E '^v:1 t:(ACK|CON|NON) c:[245]\.' | tail -n 1
}
code_of() { sed -n 's/.* c:\([0-9.]*\) .*/\1/p' <<< "$1"; }
id_of() { sed -n 's/.*Location-Path:rd, Location-Path:\([A-Za-z0-9]*\).*/\1/p' <<< "$1"; }
OBJS='</1/0>,</3/0>'

r=$(cs post 'rd?ep=rpk-dev&lt=120' -M "$keys/dev.key" -t 40 -e "$OBJS")
check "gnutls RPK Register: 2.01" [ "$(code_of "$r")" = "2.01" ]
id1=$(id_of "$r")
check "device shows security_mode rpk" bash -c 'curl -s -H "Authorization: Bearer $2" "$1/api/v1/devices/rpk-dev" | grep -q "\"security_mode\":\"rpk\""' _ "$API" "$ADMIN"
r=$(cs post "rd/$id1" -M "$keys/dev.key")
check "gnutls RPK Update of its own registration: 2.04" [ "$(code_of "$r")" = "2.04" ]
r=$(cs post 'rd?ep=rpk-other&lt=120' -M "$keys/other.key" -t 40 -e "$OBJS")
check "second device (key provisioned as PEM) registers: 2.01" [ "$(code_of "$r")" = "2.01" ]
r=$(cs post "rd/$id1" -M "$keys/other.key")
check "Update of another device's registration: 4.03" [ "$(code_of "$r")" = "4.03" ]
r=$(cs post 'rd?ep=rpk-dev&lt=120' -M "$keys/other.key" -t 40 -e "$OBJS")
check "Register of another device's endpoint: 4.03" [ "$(code_of "$r")" = "4.03" ]
r=$(cs post 'rd?ep=rpk-dev&lt=120' -M "$keys/rogue.key" -t 40 -e "$OBJS")
check "unknown raw public key: handshake refused (no response)" [ -z "$(code_of "$r")" ]
check "refusal logged as a failed handshake" grep -q "alert or bad credentials" "$log"
r=$(cs post 'rd?ep=rpk-psk&lt=120' -u rpk-psk-id -k $KEYP -t 40 -e "$OBJS")
check "PSK device Register next to RPK: 2.01" [ "$(code_of "$r")" = "2.01" ]
check "DELETE rpk credentials: 204" [ "$(curl -s -o /dev/null -w '%{http_code}' -X DELETE -H "Authorization: Bearer $ADMIN" "$API/api/v1/devices/rpk-dev/credentials")" = 204 ]
r=$(cs post 'rd?ep=rpk-dev&lt=120' -M "$keys/dev.key" -t 40 -e "$OBJS")
check "deleted raw key: refused" [ -z "$(code_of "$r")" ]
check "no private key material in the log" bash -c '! grep -q "PRIVATE KEY" "$1"' _ "$log"
check "daemon stops cleanly" stop_daemon
check "exit status 0" [ "$LW_DAEMON_RC" = 0 ]
finish
