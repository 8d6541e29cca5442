#!/usr/bin/env bash
# HTTP API against the real daemon with curl: probes, auth refusals as problem+json (401/403) with
# tokens made by `lwm2md token`, token revocation, audit log rows, limits (431/413, slow client),
# pipelining over one connection, metrics, `healthcheck` and `routes` subcommands, the route set
# against docs/openapi.yaml and its lint, SSE (registered/updated/deregistered for a device
# registered with coap-client, resume with Last-Event-ID), webhooks (receiver down, then up;
# signatures verified), listing and paging 10 k registered devices, graceful stop with an open
# event stream.
source "$(dirname "$0")/lib.sh"

log=$LW_TMP/api.log
admin_tok=$LW_TMP/admin-token
(umask 077; head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' > "$admin_tok")
ADMIN=$(cat "$admin_tok")
secret=$LW_TMP/webhook-secret
(umask 077; echo "whsec-e2e-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$secret")
HOOK_PORT=$(free_port t)
hooklog=$LW_TMP/hook.jsonl

check "daemon with the API starts" start_daemon "$log" --set "api.bootstrap_token_file=$admin_tok" \
  --set api.token_refresh=200ms --set api.sse_heartbeat=1s --set api.header_timeout=1s \
  --set api.max_header_size=4k --set api.max_body_size=4k \
  --set "webhooks.urls=http://127.0.0.1:$HOOK_PORT/hook" --set "webhooks.secret_file=$secret" \
  --set webhooks.retry_base=300ms --set webhooks.batch_delay=50ms
API=http://127.0.0.1:$LW_API_PORT
body=$LW_TMP/body

# code METHOD PATH [curl args...]: prints the status code, body in $body.
code() { local m=$1 p=$2; shift 2; curl -s -o "$body" -w '%{http_code}' -X "$m" "$@" "$API$p"; }
is_problem() { # is_problem TYPE-SLUG
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["type"]=="urn:lwm2md:problem:"+sys.argv[2] and isinstance(d["status"],int) and d["title"] else 1)' "$body" "$1"
}
ctype() { curl -s -o /dev/null -w '%{content_type}' "$@"; }

# ---- probes and metrics
check "/healthz 200 without a token" [ "$(code GET /healthz)" = 200 ]
check "/readyz 200 (shards up, database reachable)" [ "$(code GET /readyz)" = 200 ]
check "/metrics is Prometheus text" bash -c '[[ "$(curl -s -o /dev/null -w "%{content_type}" "$1/metrics")" == text/plain* ]]' _ "$API"
check "metrics count requests by route and status" bash -c 'curl -s "$1/metrics" | grep -q "lwm2md_http_requests_total{route=\"healthz\",status=\"200\"}"' _ "$API"
check "metrics have latency histograms" bash -c 'curl -s "$1/metrics" | grep -q "lwm2md_http_request_duration_seconds_bucket{route=\"readyz\",le=\"+Inf\"}"' _ "$API"
check "lwm2md healthcheck exits 0" "$LW_BIN" --set "api.listen=127.0.0.1:$LW_API_PORT" healthcheck
check "lwm2md healthcheck fails on a dead port" bash -c '! "$1" --set "api.listen=127.0.0.1:$2" healthcheck 2>/dev/null' _ "$LW_BIN" "$(free_port t)"

# ---- auth
check "no token: 401" [ "$(code GET /api/v1/devices)" = 401 ]
check "no token: problem+json missing-token" is_problem missing-token
check "401 content type is application/problem+json" [ "$(ctype "$API/api/v1/devices")" = application/problem+json ]
check "401 carries WWW-Authenticate: Bearer" bash -c 'curl -si "$1/api/v1/devices" | grep -qi "^WWW-Authenticate: Bearer"' _ "$API"
check "bad token: 401 invalid-token" bash -c '[ "$(curl -s -o "$2" -w "%{http_code}" -H "Authorization: Bearer lwm2md_1_nope" "$1/api/v1/devices")" = 401 ]' _ "$API" "$body"
check "bad token: problem+json invalid-token" is_problem invalid-token
check "unknown /api path without a token: 401, not 404" [ "$(code GET /api/v1/nothing)" = 401 ]
check "unknown path with a token: 404 problem" bash -c '[ "$(curl -s -o "$3" -w "%{http_code}" -H "Authorization: Bearer $2" "$1/api/v1/nothing")" = 404 ]' _ "$API" "$ADMIN" "$body"
check "404 is problem+json not-found" is_problem not-found
check "wrong method: 405 with Allow" bash -c 'curl -si -X PUT -H "Authorization: Bearer $2" "$1/api/v1/events" | grep -q "^Allow: GET"' _ "$API" "$ADMIN"

viewer=$("$LW_BIN" --set "database.url=$LW_PG_URL" token create --role viewer --name e2e-viewer 2>"$LW_TMP/tokcreate.err")
check "token create prints a token once" grep -qE '^lwm2md_[0-9]+_[A-Za-z0-9_-]{40,}$' <<< "$viewer"
operator=$("$LW_BIN" --set "database.url=$LW_PG_URL" token create --role operator 2>/dev/null)
check "token list shows the named token without its secret" bash -c 'out=$("$1" --set "database.url=$2" token list); grep -q "viewer .*e2e-viewer" <<< "$out" && ! grep -qF "$3" <<< "$out"' _ "$LW_BIN" "$LW_PG_URL" "$viewer"
check "token create refuses an unknown role" bash -c '! "$1" --set "database.url=$2" token create --role root 2>/dev/null' _ "$LW_BIN" "$LW_PG_URL"
V=(-H "Authorization: Bearer $viewer")
# the daemon re-reads the token table every api.token_refresh (200ms here)
# (both tokens: a refresh may fall between the two creations)
for _ in $(seq 1 50); do
  [ "$(code GET /api/v1/devices "${V[@]}")" != 401 ] &&
    [ "$(code GET /api/v1/devices -H "Authorization: Bearer $operator")" != 401 ] && break
  sleep 0.1
done
check "viewer token: DELETE registration is 403" [ "$(code DELETE /api/v1/devices/nobody/registration "${V[@]}")" = 403 ]
check "403 is problem+json forbidden" is_problem forbidden
check "operator token: DELETE registration is 403 (admin only)" [ "$(code DELETE /api/v1/devices/nobody/registration -H "Authorization: Bearer $operator")" = 403 ]
check "viewer token: GET devices is not refused" bash -c 'c=$(curl -s -o /dev/null -w "%{http_code}" -H "Authorization: Bearer $2" "$1/api/v1/devices"); [ "$c" != 401 ] && [ "$c" != 403 ]' _ "$API" "$viewer"
vid=$(sed -n 's/^lwm2md_\([0-9]*\)_.*/\1/p' <<< "$viewer")
check "token revoke" "$LW_BIN" --set "database.url=$LW_PG_URL" token revoke "$vid"
for _ in $(seq 1 50); do [ "$(code GET /api/v1/devices "${V[@]}")" = 401 ] && break; sleep 0.1; done
check "a revoked token is refused (401)" [ "$(code GET /api/v1/devices "${V[@]}")" = 401 ]
check "mutating calls are audited in the log" grep -qF '"msg":"audit: actor=e2e-viewer action=device_deregister target=nobody result=403' "$log"
sleep 0.5
check "audit_log rows in PostgreSQL" bash -c '[ "$(psql "$1" -Atc "SELECT count(*) FROM audit_log WHERE action = '"'"'device_deregister'"'"' AND result = 403")" -ge 2 ]' _ "$LW_PG_URL"

# ---- limits, pipelining, slow clients (raw sockets)
raw() { # raw PAYLOAD-PYTHON-EXPR [wait]: sends bytes, prints what comes back until close/timeout
  python3 - "$LW_API_PORT" "$1" "${2:-2}" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(float(sys.argv[3]))
for part in eval(sys.argv[2]):
    if isinstance(part, float): time.sleep(part); continue
    s.sendall(part)
out = b""
try:
    while True:
        b = s.recv(65536)
        if not b: out += b"<EOF>"; break
        out += b
except socket.timeout:
    pass
sys.stdout.write(out.decode("latin-1"))
PY
}
out=$(raw '[b"GET /healthz HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\nGET /readyz HTTP/1.1\r\nConnection: close\r\n\r\n"]')
check "pipelined requests answered in order" python3 -c 'import sys,re; s=sys.argv[1]; c=re.findall(r"HTTP/1.1 (\d+)", s); sys.exit(0 if c==["200","404","200"] and s.endswith("<EOF>") else 1)' "$out"
out=$(raw '[b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a"*8000 + b"\r\n\r\n"]')
check "oversized headers: 431 problem+json, then close" bash -c 'grep -q "^HTTP/1.1 431" <<< "$1" && grep -q "headers-too-large" <<< "$1" && grep -q "<EOF>" <<< "$1"' _ "$out"
out=$(raw '[b"POST /api/v1/devices HTTP/1.1\r\nContent-Length: 100000\r\n\r\n"]')
check "oversized body: 413" grep -q "^HTTP/1.1 413" <<< "$out"
out=$(raw '[b"GET /healthz HTTP/1.1\r\nHost: x\r\n", 2.5]' 4)
check "slow client (headers not finished within header_timeout) is disconnected" grep -q "<EOF>" <<< "$out"
check "half-closed client still gets its pipelined answers" python3 - "$LW_API_PORT" "$ADMIN" <<'PY'
import re, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); s.settimeout(5)
s.sendall(b"GET /healthz HTTP/1.1\r\n\r\nGET /api/v1/devices?limit=1 HTTP/1.1\r\nAuthorization: Bearer " + sys.argv[2].encode() + b"\r\n\r\n")
s.shutdown(socket.SHUT_WR)
out = b""
while True:
    b = s.recv(65536)
    if not b: break
    out += b
codes = re.findall(rb"HTTP/1\.1 (\d+)", out)
sys.exit(0 if codes == [b"200", b"200"] else 1)
PY
out=$(raw '[b"NOT HTTP AT ALL\r\n\r\n"]')
check "garbage: 400 problem+json" bash -c 'grep -q "^HTTP/1.1 400" <<< "$1" && grep -q "application/problem+json" <<< "$1"' _ "$out"
python3 - "$LW_API_PORT" "$ADMIN" <<'PY'
import socket, struct, sys, time
for i in range(20):  # pipelined requests, then an abortive close (RST) while answers are in flight
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.sendall((b"GET /metrics HTTP/1.1\r\n\r\nGET /api/v1/devices?limit=1000 HTTP/1.1\r\nAuthorization: Bearer " + sys.argv[2].encode() + b"\r\n\r\n") * 10)
    if i % 2: time.sleep(0.01)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
PY
check "daemon still healthy after bad clients" [ "$(code GET /healthz)" = 200 ]

# ---- route table vs OpenAPI
doc_routes=$(python3 - "$LW_TOP/docs/openapi.yaml" <<'PY'
import re, sys
paths = False; cur = None
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    if line and not line.startswith(" "):
        paths = line == "paths:"; continue
    if not paths: continue
    m = re.match(r"^  (/\S*):$", line)
    if m: cur = m.group(1); continue
    m = re.match(r"^    (get|put|post|delete|patch):$", line)
    if m and cur: print(m.group(1).upper(), cur)
PY
)
check "routes registered == routes in docs/openapi.yaml" [ "$("$LW_BIN" routes | sort)" = "$(sort <<< "$doc_routes")" ]
if command -v npm >/dev/null; then
  cache=$LW_TOP/${BUILD:-build}/npm-redocly
  if [ ! -x "$cache/node_modules/.bin/redocly" ]; then
    mkdir -p "$cache" && (cd "$cache" && timeout 300 npm install --silent --no-audit --no-fund @redocly/cli >/dev/null 2>&1)
  fi
  if [ -x "$cache/node_modules/.bin/redocly" ]; then
    check "docs/openapi.yaml lints clean (redocly)" bash -c '"$1" lint --format=stylish "$2" >"$3" 2>&1 || { tail -n 20 "$3"; false; }' _ "$cache/node_modules/.bin/redocly" "$LW_TOP/docs/openapi.yaml" "$LW_TMP/redocly.out"
  else
    echo "  SKIP - @redocly/cli could not be installed"
  fi
else
  echo "  SKIP - npm not installed: OpenAPI lint"
fi

# ---- SSE and webhooks: a device registered, updated and de-registered with coap-client
A=(-H "Authorization: Bearer $ADMIN")
coap=$(command -v coap-client-notls || true)
devices_linked=1
if [ "$(code GET /api/v1/devices "${A[@]}")" = 503 ] && grep -q 'problem:unavailable' "$body"; then
  devices_linked=0
fi
if [ -n "$coap" ]; then
  sse=$LW_TMP/sse.out
  curl -sN "${A[@]}" "$API/api/v1/events?types=registered,updated,deregistered" > "$sse" &
  sse_pid=$!
  sleep 0.3
  curl_coap() { "$coap" -B 5 -v 7 "$@" 2>&1 | grep -E '^v:1 t:(ACK|CON|NON) c:[245]\.' | tail -n 1; }
  r=$(curl_coap -m post -t 40 -e '</1/0>,</3/0>' "coap://127.0.0.1:$LW_COAP_PORT/rd?ep=e2e-sse-1&lt=300&lwm2m=1.1&b=U")
  regid=$(sed -n 's/.*Location-Path:rd, Location-Path:\([A-Za-z0-9]*\) .*/\1/p' <<< "$r")
  check "coap-client registered e2e-sse-1" [ -n "$regid" ]
  if [ "$devices_linked" = 1 ]; then
    check "the registered device is served by the API" bash -c '[ "$(curl -s -o "$3" -w "%{http_code}" -H "Authorization: Bearer $2" "$1/api/v1/devices/e2e-sse-1")" = 200 ]' _ "$API" "$ADMIN" "$body"
    check "GET device has the registration fields" python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if all(k in d for k in ["endpoint","registration_id","address","lwm2m_version","binding","queue_mode","lifetime_s","registered_at","last_update","expires_at","objects"]) and d["registration_id"]==sys.argv[2] else 1)' "$body" "$regid"
  fi
  curl_coap -m post "coap://127.0.0.1:$LW_COAP_PORT/rd/$regid?lt=600" >/dev/null
  curl_coap -m delete "coap://127.0.0.1:$LW_COAP_PORT/rd/$regid" >/dev/null
  for _ in $(seq 1 30); do grep -q '^event: deregistered' "$sse" && break; sleep 0.1; done
  check "SSE: registered, updated, deregistered in order" python3 -c 'import sys,re; t=re.findall(r"^event: (\w+)", open(sys.argv[1]).read(), re.M); sys.exit(0 if t[:3]==["registered","updated","deregistered"] else 1)' "$sse"
  check "SSE ids increase" python3 -c 'import sys,re; i=[int(x) for x in re.findall(r"^id: (\d+)", open(sys.argv[1]).read(), re.M)]; sys.exit(0 if len(i)>=3 and i==sorted(set(i)) else 1)' "$sse"
  check "SSE data is the event JSON with the registration" python3 -c 'import sys,re,json; d=[json.loads(x) for x in re.findall(r"^data: (.*)$", open(sys.argv[1]).read(), re.M)]; sys.exit(0 if d and d[0]["type"]=="registered" and d[0]["endpoint"]=="e2e-sse-1" and d[0]["data"]["registration_id"]==sys.argv[2] else 1)' "$sse" "$regid"
  first=$(sed -n 's/^id: //p' "$sse" | head -n1)
  check "SSE resume with Last-Event-ID replays what followed" bash -c 'out=$(timeout 1 curl -sN -H "Authorization: Bearer $2" -H "Last-Event-ID: $3" "$1/api/v1/events?types=registered,updated,deregistered"); ! grep -q "^id: $3\$" <<< "$out" && grep -q "^event: updated" <<< "$out" && grep -q "^event: deregistered" <<< "$out"' _ "$API" "$ADMIN" "$first"
  check "SSE types filter" bash -c 'out=$(timeout 1 curl -sN -H "Authorization: Bearer $2" "$1/api/v1/events?types=deregistered&last_event_id=0"); grep -q "^event: deregistered" <<< "$out" && ! grep -q "^event: registered" <<< "$out"' _ "$API" "$ADMIN"
  check "SSE endpoint filter" bash -c 'out=$(timeout 1 curl -sN -H "Authorization: Bearer $2" "$1/api/v1/events?endpoint=other&last_event_id=0"); ! grep -q "^event:" <<< "$out"' _ "$API" "$ADMIN"
  check "SSE bad types: 400 problem" [ "$(code GET '/api/v1/events?types=bogus' "${A[@]}")" = 400 ]
  sleep 1.2
  check "SSE heartbeat comments" grep -q '^: heartbeat' "$sse"

  # webhooks: the receiver was down so far; start it and the retries must deliver, signed.
  python3 - "$HOOK_PORT" "$secret" "$hooklog" <<'PY' &
import base64, hashlib, hmac, http.server, json, sys
port, secret, out = int(sys.argv[1]), open(sys.argv[2], "rb").read().rstrip(b"\r\n"), sys.argv[3]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        msg = (self.headers["webhook-id"] + "." + self.headers["webhook-timestamp"] + ".").encode() + body
        sig = "v1," + base64.b64encode(hmac.new(secret, msg, hashlib.sha256).digest()).decode()
        ok = hmac.compare_digest(sig, self.headers["webhook-signature"])
        with open(out, "a") as f:
            for ev in json.loads(body):
                f.write(json.dumps({"ok": ok, "type": ev["type"], "id": ev["id"], "ep": ev["endpoint"]}) + "\n")
        self.send_response(204 if ok else 400); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
PY
  hook_pid=$!
  for _ in $(seq 1 100); do [ -s "$hooklog" ] && grep -q deregistered "$hooklog" && break; sleep 0.1; done
  check "webhook delivered after the receiver came up (retries)" grep -q '"type": "deregistered"' "$hooklog"
  check "webhook got registered, updated, deregistered" python3 -c 'import sys,json; t=[json.loads(l)["type"] for l in open(sys.argv[1])]; sys.exit(0 if t[:3]==["registered","updated","deregistered"] else 1)' "$hooklog"
  check "every webhook signature verified" bash -c '[ -s "$1" ] && ! grep -q "\"ok\": false" "$1"' _ "$hooklog"
  check "webhook retries counted in /metrics" bash -c 'curl -s "$1/metrics" | grep -Eq "lwm2md_webhook_deliveries_total\{subscriber=\"0\",result=\"error\"\} [1-9]"' _ "$API"
  check "webhook deliveries counted in /metrics" bash -c 'curl -s "$1/metrics" | grep -Eq "lwm2md_webhook_events_total\{subscriber=\"0\",result=\"delivered\"\} [3-9]"' _ "$API"
  kill "$hook_pid" 2>/dev/null; wait "$hook_pid" 2>/dev/null
  kill "$sse_pid" 2>/dev/null; wait "$sse_pid" 2>/dev/null
else
  echo "  SKIP - coap-client-notls not installed: SSE and webhook checks"
fi

if [ "$devices_linked" = 0 ]; then
  echo "  SKIP - device queries not linked in this build: device routes and 10 k paging"
else
  # 10 k devices: register with the fleet tool, then page through them.
  if [ -x "${LW_FLEET:-}" ]; then
    ff=$LW_TMP/fleet.ini
    printf '[fleet]\nserver = coap://127.0.0.1:%s\nrate = 2000/s\nduration = 120s\nderegister = false\n\n[group e2e]\ncount = 10000\nendpoint = e2e-fleet-{n:5}\nlwm2m = 1.1\nsecurity = nosec\nobjects = 3\nlifetime = 600s\nupdate_interval = 0\n' "$LW_COAP_PORT" > "$ff"
    "$LW_FLEET" --fleet "$ff" --quiet >"$LW_TMP/fleet.log" 2>&1 &
    fleet_pid=$!
    n=0
    for _ in $(seq 1 600); do
      n=$(curl -s "$API/metrics" | awk '/^lwm2md_shard_registrations\{/ {s += $2} END {print s + 0}')
      [ "${n:-0}" -ge 10000 ] && break; sleep 0.2
    done
    check "fleet registered 10000 devices (registrations gauge: $n)" [ "${n:-0}" -ge 10000 ]
    check "paging lists exactly 10000 fleet devices, ordered, no duplicates" python3 - "$API" "$ADMIN" <<'PY'
import json, sys, urllib.request, urllib.parse
api, tok = sys.argv[1], sys.argv[2]
seen, cursor, pages = [], None, 0
while True:
    q = {"limit": "1000", "endpoint": "e2e-fleet-"}
    if cursor: q["cursor"] = cursor
    req = urllib.request.Request(api + "/api/v1/devices?" + urllib.parse.urlencode(q), headers={"Authorization": "Bearer " + tok})
    page = json.load(urllib.request.urlopen(req))
    seen += [d["endpoint"] for d in page["devices"]]
    cursor, pages = page["next_cursor"], pages + 1
    if not cursor or pages > 20: break
ok = len(seen) == 10000 and seen == sorted(seen) and len(set(seen)) == 10000
if not ok: print("    pages=%d devices=%d unique=%d" % (pages, len(seen), len(set(seen))))
sys.exit(0 if ok else 1)
PY
    check "filters: lwm2m=1.0 finds none of the 1.1 fleet" bash -c 'curl -s -H "Authorization: Bearer $2" "$1/api/v1/devices?endpoint=e2e-fleet-&lwm2m=1.0" | python3 -c "import json,sys; sys.exit(0 if json.load(sys.stdin)[\"devices\"]==[] else 1)"' _ "$API" "$ADMIN"
    kill "$fleet_pid" 2>/dev/null; wait "$fleet_pid" 2>/dev/null
  else
    echo "  SKIP - lwm2m-fleet not built: 10 k device paging"
  fi
  check "deregister via the API: 204" [ "$(code DELETE /api/v1/devices/e2e-fleet-00001/registration "${A[@]}")" = 204 ]
  check "deregistered device: 404 problem" [ "$(code GET /api/v1/devices/e2e-fleet-00001 "${A[@]}")" = 404 ]
  check "404 is device-not-found" is_problem device-not-found
  check "40 pipelined requests mixing shard queries and probes answered in order" python3 - "$LW_API_PORT" "$ADMIN" <<'PY'
import re, socket, sys
port, tok = int(sys.argv[1]), sys.argv[2]
reqs = []
for i in range(40):
    if i % 3 == 0: reqs.append("GET /healthz HTTP/1.1\r\n\r\n")
    elif i % 3 == 1: reqs.append("GET /api/v1/devices?limit=2 HTTP/1.1\r\nAuthorization: Bearer %s\r\n\r\n" % tok)
    else: reqs.append("GET /api/v1/devices/e2e-fleet-%05d HTTP/1.1\r\nAuthorization: Bearer %s\r\n\r\n" % (i, tok))
reqs.append("GET /readyz HTTP/1.1\r\nConnection: close\r\n\r\n")
s = socket.create_connection(("127.0.0.1", port)); s.settimeout(10)
s.sendall("".join(reqs).encode())
out = b""
while True:
    b = s.recv(65536)
    if not b: break
    out += b
parts = re.split(r"HTTP/1\.1 ", out.decode())[1:]
ok = len(parts) == 41
for i, b in enumerate(parts[:40]):
    want = ['"status":"ok"', '"devices":', '"endpoint":"e2e-fleet-%05d"' % i][i % 3]
    ok = ok and want in b
sys.exit(0 if ok and '"status":"ready"' in parts[-1] else 1)
PY
  check "paging parameters are validated" [ "$(code GET '/api/v1/devices?limit=0' "${A[@]}")" = 400 ]
fi

# ---- graceful stop with an open event stream and an idle keep-alive connection
curl -sN "${A[@]}" "$API/api/v1/events" > /dev/null &
hold=$!
sleep 0.3
stop_daemon TERM
check "SIGTERM with an open SSE stream stops cleanly (status 0)" [ "$LW_DAEMON_RC" -eq 0 ]
for _ in $(seq 1 20); do kill -0 "$hold" 2>/dev/null || break; sleep 0.1; done
check "the SSE client saw the stream end" bash -c '! kill -0 "$1" 2>/dev/null' _ "$hold"
kill "$hold" 2>/dev/null || true

# ---- SIGHUP applies reloadable api keys (probes_public)
rconf=$LW_TMP/api-reload.conf
printf '[server]\nshards = 2\n[log]\nlevel = debug\nformat = json\n[api]\nprobes_public = true\n' > "$rconf"
check "daemon for the reload check starts" start_daemon "$LW_TMP/api-reload.log" --config "$rconf" --set "api.bootstrap_token_file=$admin_tok"
API=http://127.0.0.1:$LW_API_PORT
check "/metrics public before the reload" [ "$(code GET /metrics)" = 200 ]
check "metrics include SSE ring and token gauges" bash -c 'curl -s "$1/metrics" | grep -q "^lwm2md_sse_ring_events " && curl -s "$1/metrics" | grep -q "^lwm2md_api_tokens "' _ "$API"
printf '[server]\nshards = 2\n[log]\nlevel = debug\nformat = json\n[api]\nprobes_public = false\n' > "$rconf"
kill -HUP "$LW_DAEMON_PID"
wait_for "$LW_TMP/api-reload.log" '"msg":"configuration reloaded"' 10 >/dev/null
check "after SIGHUP with probes_public = false, /metrics needs a token (401)" [ "$(code GET /metrics)" = 401 ]
check "... and serves it with one" [ "$(code GET /metrics -H "Authorization: Bearer $ADMIN")" = 200 ]
stop_daemon TERM

# ---- TLS (api.tls_cert / api.tls_key)
if command -v openssl >/dev/null; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$LW_TMP/key.pem" \
    -out "$LW_TMP/cert.pem" -days 2 -subj /CN=127.0.0.1 >/dev/null 2>&1
  chmod 600 "$LW_TMP/key.pem"
  check "daemon with API TLS starts" start_daemon "$LW_TMP/api-tls.log" --set "api.tls_cert=$LW_TMP/cert.pem" \
    --set "api.tls_key=$LW_TMP/key.pem" --set "api.bootstrap_token_file=$admin_tok"
  TAPI=https://127.0.0.1:$LW_API_PORT
  check "HTTPS /healthz (TLS 1.3)" [ "$(curl -sk --tlsv1.3 -o /dev/null -w '%{http_code}' "$TAPI/healthz")" = 200 ]
  check "HTTPS /healthz (TLS 1.2)" [ "$(curl -sk --tlsv1.2 --tls-max 1.2 -o /dev/null -w '%{http_code}' "$TAPI/healthz")" = 200 ]
  check "HTTPS keeps auth: 401 problem+json" [ "$(curl -sk -o /dev/null -w '%{http_code}:%{content_type}' "$TAPI/api/v1/devices")" = "401:application/problem+json" ]
  check "HTTPS keep-alive: two requests on one connection" bash -c '[ "$(curl -sk -o /dev/null -o /dev/null -w "%{num_connects}" "$1/healthz" "$1/readyz" | tr -d "\n")" = 10 ]' _ "$TAPI"
  check "plain HTTP to the TLS port is refused" bash -c '! curl -s -m 2 "http://127.0.0.1:$1/healthz" >/dev/null' _ "$LW_API_PORT"
  check "lwm2md healthcheck over TLS" "$LW_BIN" --set "api.listen=127.0.0.1:$LW_API_PORT" --set "api.tls_cert=$LW_TMP/cert.pem" --set "api.tls_key=$LW_TMP/key.pem" healthcheck
  stop_daemon TERM
  check "TLS daemon stops cleanly" [ "$LW_DAEMON_RC" -eq 0 ]
  check "a key without a certificate is refused at start" bash -c '"$1" --set "api.listen=127.0.0.1:$(( 20000 + RANDOM % 30000 ))" --set coap.listen= --set coaps.listen= --set "server.state_dir=$2/st2" --set "api.tls_key=$2/key.pem" >"$2/tlsbad.log" 2>&1; [ $? -ne 0 ] && grep -q "tls_cert and api.tls_key must be set together" "$2/tlsbad.log"' _ "$LW_BIN" "$LW_TMP"
else
  echo "  SKIP - openssl not installed: API TLS"
fi
true
