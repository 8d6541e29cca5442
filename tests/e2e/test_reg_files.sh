#!/usr/bin/env bash
# Start-up files of the registration interface: DDF files in objects.dir that the loader refuses
# are named in the log with their line and reason while the others load and the daemon serves;
# registration.profiles_file resolves a Register carrying only pid=; a broken profiles file stops
# the start with "file:line: reason".
source "$(dirname "$0")/lib.sh"

objs=$LW_TMP/objects
mkdir -p "$objs"
ddf() { # ddf ID TYPE: a one-resource object definition
  cat <<XML
<LWM2M><Object ObjectType="MODefinition">
<Name>Test object $1</Name>
<Description1>e2e</Description1>
<ObjectID>$1</ObjectID>
<ObjectURN>urn:oma:lwm2m:x:$1</ObjectURN>
<LWM2MVersion>1.1</LWM2MVersion>
<ObjectVersion>1.0</ObjectVersion>
<MultipleInstances>Multiple</MultipleInstances>
<Mandatory>Optional</Mandatory>
<Resources>
<Item ID="0">
<Name>Value</Name>
<Operations>R</Operations>
<MultipleInstances>Single</MultipleInstances>
<Mandatory>Optional</Mandatory>
<Type>$2</Type>
<RangeEnumeration></RangeEnumeration>
<Units></Units>
<Description>e2e</Description>
</Item>
</Resources>
<Description2></Description2>
</Object>
</LWM2M>
XML
}
ddf 30001 Integer >"$objs/good.xml"
ddf 30002 Bogus >"$objs/badtype.xml"
printf '<units>\n</units>\n' >"$objs/notddf.xml"
printf '<LWM2M><Object>\n<Name>x</Name>\n' >"$objs/truncated.xml"
cat >"$LW_TMP/profiles.json" <<'JSON'
{
  "e2e-meter": "</1/0>,</3/0>,</30001/0>"
}
JSON

log=$LW_TMP/reg_files.log
check "daemon starts with refused DDF files in objects.dir" start_daemon "$log" \
  --set "objects.dir=$objs" --set "registration.profiles_file=$LW_TMP/profiles.json"
refused() { grep -F '"object definition file refused' "$log" | grep -F "$1" | grep -qF -- "$2"; }
check "badtype.xml is named with its line and reason" refused "$objs/badtype.xml:11: " "unknown <Type>"
check "notddf.xml is named with its reason" refused "$objs/notddf.xml:" "root element"
check "truncated.xml is named" refused "$objs/truncated.xml:" "truncated.xml"
check "good.xml is not reported" bash -c '! grep -F "refused" "$1" | grep -qF good.xml' _ "$log"
check "the load summary counts them" grep -qF 'files=1 refused=3' "$log"

if command -v coap-client-notls >/dev/null; then
  url="coap://127.0.0.1:$LW_COAP_PORT"
  r=$(coap-client-notls -m post -B 5 -v 7 "$url/rd?ep=e2e-pid&lt=60&lwm2m=1.2&pid=e2e-meter" 2>&1 |
    grep -E '^v:1 t:ACK c:[245]\.' | tail -n 1)
  check "a Register with only pid= of a configured profile answers 2.01" \
    bash -c '[[ "$1" == *"c:2.01"* ]]' _ "$r"
  r=$(coap-client-notls -m post -B 5 -v 7 "$url/rd?ep=e2e-pid2&lt=60&lwm2m=1.2&pid=unknown" 2>&1 |
    grep -E '^v:1 t:ACK c:[245]\.' | tail -n 1)
  check "the same Register with an unknown pid answers 4.00" bash -c '[[ "$1" == *"c:4.00"* ]]' _ "$r"
else
  echo "  SKIP - coap-client-notls not installed (apt-get install libcoap3-bin)"
fi
stop_daemon TERM
check "daemon stops cleanly" [ "$LW_DAEMON_RC" -eq 0 ]

printf '{\n  "ok": "</1/0>",\n  "bad": "</1/0>,<3"\n}\n' >"$LW_TMP/profiles.json"
log2=$LW_TMP/reg_files2.log
# (With a database configured the process may linger after this error, a main.c clean-up
# matter reported separately; only the refusal is checked here.)
rc=0
timeout 8 "$LW_BIN" --config "$LW_TOP/config/test.conf" --set "coap.listen=127.0.0.1:$(free_port u)" \
  --set "coaps.listen=" --set "api.listen=127.0.0.1:$(free_port t)" --set "database.url=$LW_PG_URL" \
  --set "server.state_dir=$LW_TMP/state" --set "security.master_key_file=$(e2e_master_key)" \
  --set "registration.profiles_file=$LW_TMP/profiles.json" >"$log2" 2>&1 || rc=$?
check "a broken profiles file stops the start" bash -c '[ "$1" -ne 0 ] && ! grep -qF "\"msg\":\"ready" "$2"' _ "$rc" "$log2"
check "the message names file:line and the reason" \
  grep -qF "$LW_TMP/profiles.json:3: profile 'bad': invalid link format" "$log2"
finish
