#!/usr/bin/env bash
# Registration interface end to end with Debian's libcoap client (coap-client-notls): Register ->
# Update -> De-register -> Update (4.04), bad Registers answered with the right 4.xx while the
# daemon keeps serving, and a re-Register replacing the previous registration. Every
# coap-client run uses a new source port, so requests land on either shard: Updates and
# De-registers reaching the shard that does not hold the registration are forwarded (and the
# registration migrates), which this test exercises on every run.
source "$(dirname "$0")/lib.sh"

if ! command -v coap-client-notls >/dev/null; then
  echo "  SKIP - coap-client-notls not installed (apt-get install libcoap3-bin)"
  finish
  exit 0
fi

log=$LW_TMP/registration.log
check "daemon starts" start_daemon "$log"
url="coap://127.0.0.1:$LW_COAP_PORT"

# coap METHOD PATH?QUERY [PAYLOAD]: prints the response line (type, code, options) of -v 7.
coap() {
  local m=$1 u=$2 p=${3-}
  local args=(-m "$m" -B 5 -v 7)
  [ -n "$p" ] && args+=(-t 40 -e "$p")
  coap-client-notls "${args[@]}" "$url/$u" 2>&1 | grep -E '^v:1 t:(ACK|CON|NON) c:[245]\.' | tail -n 1
}
code_of() { sed -n 's/.* c:\([0-9.]*\) .*/\1/p' <<< "$1"; }

r=$(coap post 'rd?ep=e2e-dev1&lt=60&lwm2m=1.1&b=U' '</>;rt="oma.lwm2m";ct=110,</1/0>,</3/0>,</5/0>')
check "Register answers 2.01" [ "$(code_of "$r")" = "2.01" ]
id=$(sed -n 's/.*Location-Path:rd, Location-Path:\([A-Za-z0-9]*\) .*/\1/p' <<< "$r")
check "Register answers Location-Path rd/<id>" [ -n "$id" ]
for i in 1 2 3 4; do
  r=$(coap post "rd/$id")
  check "Update $i (plain) answers 2.04" [ "$(code_of "$r")" = "2.04" ]
done
r=$(coap post "rd/$id?lt=120&b=U" '</1/0>,</3/0>')
check "Update with lt, b and an object list answers 2.04" [ "$(code_of "$r")" = "2.04" ]
r=$(coap delete "rd/$id")
check "De-register answers 2.02" [ "$(code_of "$r")" = "2.02" ]
for i in 1 2 3; do
  r=$(coap post "rd/$id")
  check "Update after De-register answers 4.04 ($i)" [ "$(code_of "$r")" = "4.04" ]
done
r=$(coap delete "rd/$id")
check "De-register of an unknown id answers 4.04" [ "$(code_of "$r")" = "4.04" ]

# Bad Registers.
r=$(coap post 'rd?lt=60&lwm2m=1.1' '</1/0>,</3/0>')
check "Register without ep answers 4.00" [ "$(code_of "$r")" = "4.00" ]
r=$(coap post 'rd?ep=bad1&lt=abc&lwm2m=1.1' '</1/0>,</3/0>')
check "Register with lt=abc answers 4.00" [ "$(code_of "$r")" = "4.00" ]
r=$(coap post 'rd?ep=bad2&lt=60&lwm2m=1.1' '</1/0>,<3/0')
check "Register with broken link format answers 4.00" [ "$(code_of "$r")" = "4.00" ]
r=$(coap post 'rd?ep=bad3&lt=60&lwm2m=9.9' '</1/0>,</3/0>')
check "Register with lwm2m=9.9 answers 4.12" [ "$(code_of "$r")" = "4.12" ]
r=$(coap get 'rd')
check "GET /rd answers 4.05" [ "$(code_of "$r")" = "4.05" ]

# Still serving; a second Register of the same endpoint replaces the first.
r=$(coap post 'rd?ep=e2e-dev2&lt=60&lwm2m=1.1' '</1/0>,</3/0>')
id1=$(sed -n 's/.*Location-Path:rd, Location-Path:\([A-Za-z0-9]*\) .*/\1/p' <<< "$r")
check "the daemon still serves Registers after bad ones" [ "$(code_of "$r")" = "2.01" ]
r=$(coap post 'rd?ep=e2e-dev2&lt=60&lwm2m=1.0&b=UQ' '</1/0>,</3/0>')
id2=$(sed -n 's/.*Location-Path:rd, Location-Path:\([A-Za-z0-9]*\) .*/\1/p' <<< "$r")
check "re-Register (1.0, b=UQ) answers 2.01 with a new id" [ "$(code_of "$r")" = "2.01" -a "$id1" != "$id2" ]
r=$(coap post "rd/$id1")
check "the replaced registration's id answers 4.04" [ "$(code_of "$r")" = "4.04" ]
r=$(coap post "rd/$id2")
check "the new registration's id answers 2.04" [ "$(code_of "$r")" = "2.04" ]

# A Register whose object list needs block-wise transfer (RFC 7959 Block1, 64-byte blocks).
big=$(python3 -c "print(','.join('</%d/0>' % i for i in range(3300, 3420)))")
r=$(coap-client-notls -m post -b 64 -B 5 -v 7 -t 40 -e "$big" "$url/rd?ep=e2e-big&lt=60&lwm2m=1.1" 2>&1 | grep -E '^v:1 t:ACK c:[245]\.' | tail -n 1)
check "block-wise Register (1.2 kB in 64-byte blocks) answers 2.01 with Block1" bash -c '[[ "$1" == *"c:2.01"* && "$1" == *"Location-Path:rd"* && "$1" == *"Block1:18/_/64"* ]]' _ "$r"

check "daemon still running" kill -0 "$LW_DAEMON_PID"
stop_daemon TERM
check "daemon stops cleanly" [ "$LW_DAEMON_RC" -eq 0 ]
