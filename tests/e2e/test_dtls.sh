#!/usr/bin/env bash
# CoAPS end to end with independent DTLS clients from Debian (libcoap3-bin): credentials
# provisioned through the API, PSK Register/Update/De-register with coap-client-openssl and
# coap-client-gnutls, X.509 client certificates (trust store, CN = endpoint) with openssl, and
# the refusals: wrong key, unknown identity, an identity registering another endpoint (4.03), a
# device touching another device's registration (4.03, ETS int-401), NoSec use of a secured
# endpoint (4.03), deleted credentials. Keys never appear in the log or in API answers.
source "$(dirname "$0")/lib.sh"

for c in coap-client-openssl coap-client-gnutls openssl curl; do
  if ! command -v $c >/dev/null; then
    echo "  SKIP - $c not installed (apt-get install libcoap3-bin openssl curl)"
    finish
    exit 0
  fi
done

pki=$LW_TMP/dtls-pki
mkdir -p "$pki"
# Test PKI (ECDSA P-256): a CA, the server certificate, and two device certificates.
mkcert() { # name cn
  openssl ecparam -name prime256v1 -genkey -noout -out "$pki/$1.key" 2>/dev/null
  openssl req -new -key "$pki/$1.key" -subj "/CN=$2" -out "$pki/$1.csr" 2>/dev/null
  openssl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 2 -out "$pki/$1.pem" 2>/dev/null
}
openssl ecparam -name prime256v1 -genkey -noout -out "$pki/ca.key" 2>/dev/null
openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=lwm2md e2e CA" -days 2 -out "$pki/ca.pem" 2>/dev/null
mkcert server localhost
mkcert dev dtls-x509
mkcert other dtls-x509-other
check "test PKI created with the openssl CLI" test -s "$pki/dev.pem"

log=$LW_TMP/dtls.log
admin_tok=$LW_TMP/dtls-admin-token
(umask 077; head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' > "$admin_tok")
ADMIN=$(cat "$admin_tok")
check "daemon with coaps (PSK + certificates) starts" start_daemon "$log" \
  --set "api.bootstrap_token_file=$admin_tok" --set "coaps.cert=$pki/server.pem" \
  --set "coaps.key=$pki/server.key" --set "coaps.ca=$pki/ca.pem"
API="http://127.0.0.1:$LW_API_PORT"
curl_put() { # ep json -> http code
  curl -s -o "$LW_TMP/dtls-body" -w '%{http_code}' -X PUT -H "Authorization: Bearer $ADMIN" \
    -H 'Content-Type: application/json' -d "$2" "$API/api/v1/devices/$1/credentials"
}
hex() { printf '%s' "$1" | od -An -tx1 | tr -d ' \n'; }

KEY1=e2e-secret-key-one
KEY2=e2e-secret-key-two
check "PUT PSK credentials: 201" [ "$(curl_put dtls-psk1 "{\"mode\":\"psk\",\"identity\":\"psk1-id\",\"key\":\"$(hex $KEY1)\"}")" = 201 ]
check "PUT answers metadata without the key" bash -c 'grep -q "\"psk_identity\":\"psk1-id\"" "$1" && ! grep -qi "key\"" "$1" && ! grep -q "$2" "$1"' _ "$LW_TMP/dtls-body" "$(hex $KEY1)"
check "PUT again (replace): 200" [ "$(curl_put dtls-psk1 "{\"mode\":\"psk\",\"identity\":\"psk1-id\",\"key\":\"$(hex $KEY1)\"}")" = 200 ]
check "PUT PSK for a second device: 201" [ "$(curl_put dtls-psk2 "{\"mode\":\"psk\",\"identity\":\"psk2-id\",\"key\":\"$(hex $KEY2)\"}")" = 201 ]
check "PUT an identity another endpoint owns: 409" [ "$(curl_put dtls-psk3 "{\"mode\":\"psk\",\"identity\":\"psk1-id\",\"key\":\"$(hex $KEY2)\"}")" = 409 ]
check "PUT a short key: 400" [ "$(curl_put dtls-psk3 "{\"mode\":\"psk\",\"identity\":\"psk3-id\",\"key\":\"0011\"}")" = 400 ]
check "PUT an unknown mode: 400" [ "$(curl_put dtls-psk3 '{"mode":"magic"}')" = 400 ]
check "PUT without a token: 401" [ "$(curl -s -o /dev/null -w '%{http_code}' -X PUT -d '{}' "$API/api/v1/devices/x/credentials")" = 401 ]
check "GET credentials: metadata only" bash -c 'b=$(curl -s -H "Authorization: Bearer $2" "$1/api/v1/devices/dtls-psk1/credentials"); grep -q "\"mode\":\"psk\"" <<< "$b" && ! grep -q "$3" <<< "$b"' _ "$API" "$ADMIN" "$(hex $KEY1)"

# cs CLIENT METHOD PATH?QUERY [client args...]: the last response line of coap-client -v 7.
cs() {
  local client=$1 m=$2 u=$3; shift 3
  timeout 20 "$client" -m "$m" -B 5 -v 7 "$@" "coaps://127.0.0.1:$LW_COAPS_PORT/$u" 2>&1 |
    grep -E '^v:1 t:(ACK|CON|NON) c:[245]\.' | tail -n 1
}
code_of() { sed -n 's/.* c:\([0-9.]*\) .*/\1/p' <<< "$1"; }
id_of() { sed -n 's/.*Location-Path:rd, Location-Path:\([A-Za-z0-9]*\).*/\1/p' <<< "$1"; }
OBJS='</1/0>,</3/0>'

r=$(cs coap-client-openssl post 'rd?ep=dtls-psk1&lt=120' -u psk1-id -k $KEY1 -t 40 -e "$OBJS")
check "openssl PSK Register: 2.01" [ "$(code_of "$r")" = "2.01" ]
id1=$(id_of "$r")
check "device shows security_mode psk" bash -c 'curl -s -H "Authorization: Bearer $2" "$1/api/v1/devices/dtls-psk1" | grep -q "\"security_mode\":\"psk\""' _ "$API" "$ADMIN"
r=$(cs coap-client-gnutls post "rd/$id1" -u psk1-id -k $KEY1)
check "gnutls PSK Update of its own registration: 2.04" [ "$(code_of "$r")" = "2.04" ]
r=$(cs coap-client-gnutls post 'rd?ep=dtls-psk2&lt=120' -u psk2-id -k $KEY2 -t 40 -e "$OBJS")
check "gnutls PSK Register: 2.01" [ "$(code_of "$r")" = "2.01" ]
id2=$(id_of "$r")
r=$(cs coap-client-openssl post 'rd?ep=dtls-psk1&lt=120' -u psk2-id -k $KEY2 -t 40 -e "$OBJS")
check "Register of another device's endpoint: 4.03" [ "$(code_of "$r")" = "4.03" ]
r=$(cs coap-client-openssl post "rd/$id1" -u psk2-id -k $KEY2)
check "Update of another device's registration: 4.03 (int-401)" [ "$(code_of "$r")" = "4.03" ]
r=$(cs coap-client-openssl delete "rd/$id1" -u psk2-id -k $KEY2)
check "De-register of another device's registration: 4.03 (int-401)" [ "$(code_of "$r")" = "4.03" ]
r=$(timeout 20 coap-client-notls -m post -B 5 -v 7 "coap://127.0.0.1:$LW_COAP_PORT/rd/$id1" 2>&1 | grep -E '^v:1 t:(ACK|CON|NON) c:[245]\.' | tail -n 1)
check "NoSec Update of a DTLS registration: 4.03" [ "$(code_of "$r")" = "4.03" ]
r=$(timeout 20 coap-client-notls -m post -B 5 -v 7 -t 40 -e "$OBJS" "coap://127.0.0.1:$LW_COAP_PORT/rd?ep=dtls-psk1" 2>&1 | grep -E '^v:1 t:(ACK|CON|NON) c:[245]\.' | tail -n 1)
check "NoSec Register of an endpoint with credentials: 4.03" [ "$(code_of "$r")" = "4.03" ]
r=$(cs coap-client-openssl post 'rd?ep=dtls-psk1&lt=120' -u psk1-id -k wrong-key-wrong -t 40 -e "$OBJS")
check "wrong key: no answer (handshake refused)" [ -z "$r" ]
r=$(cs coap-client-gnutls post 'rd?ep=dtls-psk1&lt=120' -u nobody-id -k $KEY1 -t 40 -e "$OBJS")
check "unknown identity: no answer (handshake refused)" [ -z "$r" ]
r=$(cs coap-client-openssl delete "rd/$id2" -u psk2-id -k $KEY2)
check "De-register of its own registration: 2.02" [ "$(code_of "$r")" = "2.02" ]
check "DELETE credentials: 204" [ "$(curl -s -o /dev/null -w '%{http_code}' -X DELETE -H "Authorization: Bearer $ADMIN" "$API/api/v1/devices/dtls-psk2/credentials")" = 204 ]
check "DELETE them again: 404" [ "$(curl -s -o /dev/null -w '%{http_code}' -X DELETE -H "Authorization: Bearer $ADMIN" "$API/api/v1/devices/dtls-psk2/credentials")" = 404 ]
r=$(cs coap-client-gnutls post 'rd?ep=dtls-psk2&lt=120' -u psk2-id -k $KEY2 -t 40 -e "$OBJS")
check "deleted credentials: handshake refused" [ -z "$r" ]

# X.509: the certificate chains to coaps.ca and its CN is the endpoint.
r=$(cs coap-client-openssl post 'rd?ep=dtls-x509&lt=120' -c "$pki/dev.pem" -j "$pki/dev.key" -n -t 40 -e "$OBJS")
check "openssl certificate Register (CN = endpoint): 2.01" [ "$(code_of "$r")" = "2.01" ]
check "device shows security_mode x509" bash -c 'curl -s -H "Authorization: Bearer $2" "$1/api/v1/devices/dtls-x509" | grep -q "\"security_mode\":\"x509\""' _ "$API" "$ADMIN"
r=$(cs coap-client-openssl post 'rd?ep=dtls-x509&lt=120' -c "$pki/other.pem" -j "$pki/other.key" -n -t 40 -e "$OBJS")
check "certificate with another CN registering that endpoint: 4.03" [ "$(code_of "$r")" = "4.03" ]
pin=$(openssl x509 -in "$pki/dev.pem" -outform DER | sha256sum | cut -c1-64)
check "PUT x509 pin for the other certificate's name: 201" [ "$(curl_put dtls-pinned "{\"mode\":\"x509\",\"certificate_name\":\"dtls-x509-other\",\"pin_sha256\":\"$pin\"}")" = 201 ]
r=$(cs coap-client-openssl post 'rd?ep=dtls-pinned&lt=120' -c "$pki/other.pem" -j "$pki/other.key" -n -t 40 -e "$OBJS")
check "certificate not matching its pin: handshake refused" [ -z "$r" ]

# Source port change mid-session (tests/e2e/tools/dtls_client.c on the project's wolfSSL).
cli=$LW_TMP/dtls_client
wolf=$LW_TOP/.deps/wolfssl
if cc -O1 -o "$cli" "$LW_TOP/tests/e2e/tools/dtls_client.c" -I"$wolf/include" "$wolf/lib/libwolfssl.a" -lm 2>"$LW_TMP/cc.err"; then
  curl_put dtls-cid "{\"mode\":\"psk\",\"identity\":\"cid-id\",\"key\":\"$(hex $KEY1)\"}" >/dev/null
  curl_put dtls-nocid "{\"mode\":\"psk\",\"identity\":\"nocid-id\",\"key\":\"$(hex $KEY1)\"}" >/dev/null
  out=$(timeout 60 "$cli" "$LW_COAPS_PORT" cid-id "$KEY1" dtls-cid rebind-cid)
  check "CID client: Register, Update, new source port, Update still 2.04" grep -q "update-after-rebind 204" <<< "$out"
  out=$(timeout 60 "$cli" "$LW_COAPS_PORT" nocid-id "$KEY1" dtls-nocid rebind-nocid)
  check "no-CID client: after the port change the Update is not answered" grep -q "update-after-rebind 0" <<< "$out"
  check "no-CID client: a new handshake from the new port keeps the registration (2.04)" grep -q "update-new-handshake 204" <<< "$out"
  curl_put dtls-cid13 "{\"mode\":\"psk\",\"identity\":\"cid13-id\",\"key\":\"$(hex $KEY1)\"}" >/dev/null
  out=$(DTLS_CLIENT_V13=1 timeout 60 "$cli" "$LW_COAPS_PORT" cid13-id "$KEY1" dtls-cid13 rebind-cid)
  check "DTLS 1.3 CID client (TLS_AES_128_CCM_8_SHA256): Update after the port change 2.04" grep -q "update-after-rebind 204" <<< "$out"
  # Server-initiated after the move: the device changes port and sends only a CoAP ping (no
  # Update); an API Read must reach it at the new port at once.
  curl_put dtls-cidread "{\"mode\":\"psk\",\"identity\":\"cidread-id\",\"key\":\"$(hex $KEY1)\"}" >/dev/null
  rrout=$LW_TMP/dtls-cidread.out
  timeout 60 "$cli" "$LW_COAPS_PORT" cidread-id "$KEY1" dtls-cidread rebind-read 15 > "$rrout" &
  rrpid=$!
  wait_for "$rrout" "ping-after-rebind" 30 >/dev/null
  check "CID client moved and pinged from its new port (RST back)" grep -q "ping-after-rebind rst" "$rrout"
  rb=$(curl -s -m 20 -H "Authorization: Bearer $ADMIN" "$API/api/v1/devices/dtls-cidread/data/3/0/0?format=text")
  check "API Read right after the CID move reaches the device at its new port" grep -q 'moved:/3/0/0' <<< "$rb"
  check "the registration shows the new address" bash -c 'curl -s -H "Authorization: Bearer $2" "$1/api/v1/devices/dtls-cidread" | grep -q "\"address\":\"127.0.0.1:$3\""' _ "$API" "$ADMIN" "$(sed -n 's/^new-port //p' "$rrout")"
  kill "$rrpid" 2>/dev/null; wait "$rrpid" 2>/dev/null
  check "the CID session followed the device (peer_moved counted)" bash -c 'curl -s "$1/metrics" | grep "^lwm2md_dtls_session_events_total" | grep "peer_moved" | grep -qv " 0$"' _ "$API"
else
  fail "dtls_client compiles against the project's wolfSSL"; sed 's/^/    | /' "$LW_TMP/cc.err" | head
fi

# Spoofed ClientHello flood from many source addresses (127.1.x.y): answered statelessly, no
# session allocated, and a legitimate handshake still completes.
metric() { curl -s "$API/metrics" | awk -v m="$1" '$1 == m {s += $2} END {print s + 0}'; }
live0=$(metric 'lwm2md_dtls_sessions{shard="0",state="live"}')
python3 - "$LW_COAPS_PORT" <<'PY'
import os, socket, struct, sys
port = int(sys.argv[1])
def hello():
    body = b"\xfe\xfd" + os.urandom(32) + b"\x00" + b"\x00" + b"\x00\x02\xc0\xa8" + b"\x01\x00"
    hs = b"\x01" + struct.pack(">I", len(body))[1:] + b"\x00\x00" + b"\x00\x00\x00" + struct.pack(">I", len(body))[1:] + body
    return b"\x16\xfe\xfd" + b"\x00\x00" + b"\x00" * 6 + struct.pack(">H", len(hs)) + hs
for i in range(2000):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.1.%d.%d" % (i // 250, 1 + i % 250), 0))
    s.sendto(hello(), ("127.0.0.1", port))
    s.close()
PY
sleep 1
stateless=$(curl -s "$API/metrics" | awk '$1 ~ /^lwm2md_dtls_hello_total/ && $1 ~ /stateless/ {s += $2} END {print s + 0}')
check "flood: 2000 spoofed hellos answered statelessly (got $stateless)" [ "$stateless" -ge 2000 ]
live=$(curl -s "$API/metrics" | awk '$1 ~ /^lwm2md_dtls_sessions/ {s += $2} END {print s + 0}')
check "flood: no session allocated for them ($live sessions held)" [ "$live" -lt 20 ]
r=$(cs coap-client-openssl post 'rd?ep=dtls-psk1&lt=120' -u psk1-id -k $KEY1 -t 40 -e "$OBJS")
check "flood: a legitimate handshake still completes (2.01)" [ "$(code_of "$r")" = "2.01" ]

check "no PSK key in the log" bash -c '! grep -qF -e "$2" -e "$3" -e "$4" "$1"' _ "$log" "$KEY1" "$KEY2" "$(hex $KEY1)"
check "dtls metrics exported" bash -c 'curl -s "$1/metrics" | grep -q "^lwm2md_dtls_handshakes_total{shard=\"0\",result=\"ok\"}"' _ "$API"
check "daemon stops cleanly" stop_daemon
check "exit status 0" [ "$LW_DAEMON_RC" = 0 ]

# Hibernation round trip under load: N devices register over DTLS 1.2 with a CID, idle past
# coaps.hibernate_idle (their sessions are exported and freed), then each sends an Update on its
# session: every one must wake and answer. RSS of the daemon is reported per device.
N=${LW_DTLS_LOAD:-2000}
if [ -x "$cli" ]; then
  log2=$LW_TMP/dtls-load.log
  check "daemon with coaps.hibernate_idle=1s starts" start_daemon "$log2" \
    --set "api.bootstrap_token_file=$admin_tok" --set coaps.hibernate_idle=1s --set log.level=info
  API="http://127.0.0.1:$LW_API_PORT"
  cfgf=$LW_TMP/creds.curl
  : > "$cfgf"
  for ((i = 0; i < N; i++)); do
    [ "$i" -gt 0 ] && echo next >> "$cfgf"
    printf 'url = "%s/api/v1/devices/load%d/credentials"\nrequest = "PUT"\nheader = "Authorization: Bearer %s"\nheader = "Content-Type: application/json"\ndata = "{\\"mode\\":\\"psk\\",\\"identity\\":\\"load-id%d\\",\\"key\\":\\"%s\\"}"\noutput = "/dev/null"\nwrite-out = "%%{http_code}\\n"\n' \
      "$API" "$i" "$ADMIN" "$i" "$(hex $KEY1)" >> "$cfgf"
  done
  created=$(curl -s -K "$cfgf" | grep -c '^201$')
  check "$N credentials provisioned through the API" [ "$created" = "$N" ]
  # sessions the first daemon saved at its graceful stop come back hibernated (sessions.h)
  hib0=$(curl -s "$API/metrics" | awk '$1 ~ /^lwm2md_dtls_sessions/ && $1 ~ /hibernated/ {s += $2} END {print s + 0}')
  rss0=$(awk '/^VmRSS/ {print $2}' "/proc/$LW_DAEMON_PID/status")
  outf=$LW_TMP/load.out
  timeout 600 "$cli" "$LW_COAPS_PORT" load-id "$KEY1" load load "$N" 3000 8000 > "$outf" &
  clipid=$!
  wait_for "$outf" "client_rss_kb" 600 >/dev/null
  rss1=$(awk '/^VmRSS/ {print $2}' "/proc/$LW_DAEMON_PID/status")
  sleep 4 # idle again: every session hibernated (and the freed memory trimmed)
  rss2=$(awk '/^VmRSS/ {print $2}' "/proc/$LW_DAEMON_PID/status")
  hibnow=$(curl -s "$API/metrics" | awk '$1 ~ /^lwm2md_dtls_sessions/ && $1 ~ /hibernated/ {s += $2} END {print s + 0}')
  wait $clipid
  out=$(cat "$outf")
  echo "$out" | sed 's/^/    | /'
  check "load: $N handshakes and Registers" grep -qx "registered $N" <<< "$out"
  check "load: every hibernated session woke and answered its Update" grep -qx "updated $N" <<< "$out"
  hib=$(curl -s "$API/metrics" | awk '$1 ~ /^lwm2md_dtls_session_events_total/ && $1 ~ /"hibernated"/ {s += $2} END {print s + 0}')
  wok=$(curl -s "$API/metrics" | awk '$1 ~ /^lwm2md_dtls_session_events_total/ && $1 ~ /"woken"/ {s += $2} END {print s + 0}')
  check "load: sessions hibernated ($hib) and woken ($wok)" [ "$hib" -ge "$N" ] && [ "$wok" -ge "$N" ]
  # under a sanitizer build on a loaded machine the last sessions may take longer to go idle
  for _ in $(seq 1 100); do
    [ "$((hibnow - hib0))" = "$N" ] && break
    sleep 0.2
    hibnow=$(curl -s "$API/metrics" | awk '$1 ~ /^lwm2md_dtls_sessions/ && $1 ~ /hibernated/ {s += $2} END {print s + 0}')
  done
  check "load: all $N sessions hibernated again while idle ($hibnow, $hib0 restored)" [ "$((hibnow - hib0))" = "$N" ]
  echo "    rss: before ${rss0} kB, after load ${rss1} kB, idle again ${rss2} kB; $(( (rss2 - rss0) * 1024 / N )) B per registered hibernated device"
  check "daemon stops cleanly after the load" stop_daemon
fi
finish
