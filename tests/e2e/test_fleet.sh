#!/usr/bin/env bash
# End-to-end tests of the fleet simulator (tools/fleet, build/bin/lwm2m-fleet):
#  - against a small scripted NoSec LwM2M server written below (python3): registration, the
#    downlink operations a server performs (Read TLV/text, Discover, Write-Attributes, Observe +
#    notifications, Read-Composite, Write, Execute, firmware push via Block1 and pull via Block2 +
#    Update), Send, the storm and rebind scenarios, packet impairments, and the JSON report;
#  - command-line refusals (non-loopback target, psk with a coap:// server, bad fleet file);
#  - against the real daemon when its registration interface answers (skipped visibly otherwise):
#    NoSec, and DTLS PSK with provisioning through the API, rebinding with and without CID.
. "$(dirname "$0")/lib.sh"

FLEET=${LW_FLEET:-$LW_TOP/build/bin/lwm2m-fleet}
if [ ! -x "$FLEET" ]; then
  fail "lwm2m-fleet is built ($FLEET)"
  exit 0
fi

# jq-free JSON field access: json_get FILE EXPR (python expression on `d`).
json_get() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1" 2>/dev/null; }

# ---- command-line contract -------------------------------------------------------------------
out=$("$FLEET" --server coap://192.0.2.1:5683 --devices 1 2>&1); rc=$?
check "refuses a target outside loopback (exit 2)" test "$rc" -eq 2
check "explains the refusal" grep -q "refusing target" <<<"$out"
out=$("$FLEET" --server coap://127.0.0.1:5683 --devices 1 --security psk --psk-key 0011223344556677 2>&1); rc=$?
check "psk with a coap:// server is refused with a reason" test "$rc" -eq 2 -a -n "$(grep coaps <<<"$out")"
out=$("$FLEET" --server coaps://127.0.0.1:5684 --devices 1 2>&1); rc=$?
check "coaps:// without --psk-key is refused" test "$rc" -eq 2 -a -n "$(grep psk-key <<<"$out")"
printf '[group a]\ncount = 1\nlwm2m = 3.0\n' > "$LW_TMP/bad.ini"
out=$("$FLEET" --fleet "$LW_TMP/bad.ini" 2>&1); rc=$?
check "bad fleet file: exit 2 with file:line" test "$rc" -eq 2 -a -n "$(grep 'line 3' <<<"$out")"
out=$("$FLEET" --fleet "$LW_TOP/config/fleet.example.ini" --server coap://127.0.0.1:1 --devices 1 \
  --duration 0.1s --rate 1000 --quiet --no-deregister 2>&1); rc=$?
check "example fleet file parses (run exits 1: nobody registered at port 1)" test "$rc" -eq 1

# ---- scripted mini server --------------------------------------------------------------------
if ! command -v python3 >/dev/null; then
  echo "  SKIP: python3 not installed: simulator tests against the scripted server skipped"
else
cat > "$LW_TMP/fleet_server.py" <<'PY'
"""Minimal NoSec LwM2M server for the lwm2m-fleet end-to-end test (not a product: just enough
of RFC 7252 and the LwM2M registration interface). It registers devices, deduplicates CON
requests, runs a scripted sequence of downlink operations on the first PROBE devices, serves a
firmware image block-wise at /fw, and writes a JSON summary on SIGTERM."""
import json, os, random, signal, socket, struct, sys, time

port, probe, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind(("127.0.0.1", port))
s.settimeout(0.02)
print("ready", flush=True)
regs, by_ep, dedup = {}, {}, {}
st = {"register": 0, "update": 0, "deregister": 0, "send": 0, "update_404": 0, "notify": 0,
      "addr_changes": 0, "update_lt": 0, "fw_blocks_served": 0, "results": {}, "jobs_done": 0,
      "reregister_after_fw": 0}
FW = bytes((i * 7) & 0xff for i in range(5000))
mid = random.randint(0, 65535)
jobs = {}       # token -> (gen, what, expected)
timers = []     # (time, gen)

def parse(d):
    t, tkl, code = (d[0] >> 4) & 3, d[0] & 15, d[1]
    m = struct.unpack(">H", d[2:4])[0]
    tok, i, opts, num, pl = d[4:4 + tkl], 4 + tkl, [], 0, b""
    while i < len(d):
        if d[i] == 0xff:
            pl = d[i + 1:]; break
        dl, ln = d[i] >> 4, d[i] & 15; i += 1
        vals = []
        for v in (dl, ln):
            if v == 13: v = d[i] + 13; i += 1
            elif v == 14: v = struct.unpack(">H", d[i:i + 2])[0] + 269; i += 2
            vals.append(v)
        num += vals[0]; opts.append((num, d[i:i + vals[1]])); i += vals[1]
    return t, code, m, tok, opts, pl

def nib(x):
    if x < 13: return x, b""
    if x < 269: return 13, bytes([x - 13])
    return 14, struct.pack(">H", x - 269)

def build(t, code, m, tok, opts=(), pl=b""):
    b, last = b"", 0
    for n, v in sorted(opts, key=lambda x: x[0]):
        (a, ae), (c, ce) = nib(n - last), nib(len(v)); last = n
        b += bytes([a << 4 | c]) + ae + ce + v
    return bytes([0x40 | t << 4 | len(tok), code]) + struct.pack(">H", m) + tok + b + (b"\xff" + pl if pl else b"")

def u(v):
    return v.to_bytes((v.bit_length() + 7) // 8, "big") if v else b""

def opt(opts, n):
    return [v for k, v in opts if k == n]

def result(key):
    st["results"][key] = st["results"].get(key, 0) + 1

def request(gen, addr, step):
    global mid
    if step is None:
        st["jobs_done"] += 1; return
    if step[0] == "sleep":
        timers.append((time.time() + step[1], gen, addr)); return
    what, code, path, extra, pl = step
    mid = (mid + 1) & 0xffff
    tok = os.urandom(4)
    opts = [(11, p.encode()) for p in path.strip("/").split("/") if p] + list(extra)
    jobs[tok] = (gen, what, addr)
    s.sendto(build(0, code, mid, tok, opts, pl), addr)

def advance(gen, addr, resp):
    try:
        step = gen.send(resp)
    except StopIteration:
        step = None
    request(gen, addr, step)

def probe_job(rid, n):
    r = yield ("read_tlv", 1, "/3/0", [(17, u(11542))], b"")
    result("read_tlv %s" % r[0])
    r = yield ("read_text", 1, "/10243/0/6", [], b"")
    result("read_text %s" % r[0]); float(r[1].decode())
    r = yield ("read_multi", 1, "/3/0/6", [], b"")
    result("read_multi %s" % r[0])
    r = yield ("discover", 1, "/3", [(17, u(40))], b"")
    result("discover %s" % r[0]); assert b"</3/0/0>" in r[1]
    r = yield ("write_attr", 3, "/10243/0/6", [(15, b"pmin=1"), (15, b"pmax=2")], b"")
    result("write_attr %s" % r[0])
    r = yield ("observe", 1, "/10243/0/6", [(6, b""), (17, u(110))], b"")
    result("observe %s" % r[0])
    r = yield ("read_missing", 1, "/99/0", [], b"")
    result("read_missing %s" % r[0])
    # Read-Composite: SenML-CBOR path list [{0:"/3/0/0"},{0:"/10243/0/14"}]
    body = bytes.fromhex("82a100662f332f302f30a1006b2f31303234332f302f3134")
    r = yield ("read_composite", 5, "/", [(12, u(112)), (17, u(112))], body)
    result("read_composite %s" % r[0])
    r = yield ("write_lifetime", 3, "/1/0/1", [(12, b"")], b"600")
    result("write_lifetime %s" % r[0])
    # Write-Composite: iPATCH / with SenML-CBOR [{0:"/1/0/1", 2:600}] (same lifetime: no Update)
    r = yield ("write_composite", 7, "/", [(12, u(112))], bytes.fromhex("81a200662f312f302f3102190258"))
    result("write_composite %s" % r[0])
    # Observe-Composite: FETCH / + Observe 0 with a path list [{0:"/10243/0/6"}]
    body = bytes.fromhex("81a1006a2f31303234332f302f36")
    r = yield ("observe_composite", 5, "/", [(6, b""), (12, u(112)), (17, u(112))], body)
    result("observe_composite %s" % r[0])
    r = yield ("execute_trigger", 2, "/1/0/8", [], b"")
    result("execute_trigger %s" % r[0])
    if n % 2 == 0:
        # Firmware push: atomic Block1 to /5/0/0 (512-byte blocks), then Update.
        num = 0
        while True:
            chunk = FW[num * 512:(num + 1) * 512]
            more = (num + 1) * 512 < len(FW)
            r = yield ("fw_push", 3, "/5/0/0", [(12, u(42)), (27, u(num << 4 | more << 3 | 5))], chunk)
            if not more or r[0] != "2.31":
                break
            num += 1
        result("fw_push %s" % r[0])
    else:
        uri = ("coap://127.0.0.1:%d/fw" % port).encode()
        r = yield ("fw_pull", 3, "/5/0/1", [(12, b"")], uri)
        result("fw_pull_write %s" % r[0])
    for _ in range(50):
        r = yield ("fw_state", 1, "/5/0/3", [], b"")
        if r[1] == b"2":
            break
        yield ("sleep", 0.1)
    result("fw_state %s" % r[1].decode())
    r = yield ("fw_update", 2, "/5/0/2", [], b"")
    result("fw_update %s" % r[0])
    by_ep_name = regs[rid]["ep"]
    st.setdefault("fw_eps", []).append(by_ep_name)

def summary(*_):
    st["registered_now"] = len(regs)
    with open(out, "w") as f:
        json.dump(st, f)
    sys.exit(0)

signal.signal(signal.SIGTERM, summary)
nid = probed = 0
while True:
    now = time.time()
    for tm in [x for x in timers if x[0] <= now]:
        timers.remove(tm); advance(tm[1], tm[2], None)
    try:
        d, addr = s.recvfrom(4096)
    except socket.timeout:
        continue
    try:
        t, code, m, tok, opts, pl = parse(d)
    except Exception:
        continue
    if 1 <= code <= 31:
        key = (addr, m)
        if t == 0 and key in dedup:
            s.sendto(dedup[key], addr); continue
        path = [v.decode() for v in opt(opts, 11)]
        q = [v.decode() for v in opt(opts, 15)]
        def reply(c, o=(), p=b""):
            b = build(2 if t == 0 else 1, c, m, tok, o, p)
            if t == 0: dedup[key] = b
            s.sendto(b, addr)
        if code == 2 and path == ["rd"]:
            ep = [x[3:] for x in q if x.startswith("ep=")]
            if not ep or not any(x.startswith("lwm2m=") for x in q) or not pl:
                reply(0x80); continue
            ep = ep[0]
            if ep in by_ep:
                regs.pop(by_ep[ep], None)
                if ep in st.get("fw_eps", []): st["reregister_after_fw"] += 1
            nid += 1; rid = "%x" % nid
            regs[rid] = {"ep": ep, "addr": addr}; by_ep[ep] = rid
            st["register"] += 1
            reply(0x41, [(8, b"rd"), (8, rid.encode())])
            if probed < probe and ep not in st.get("fw_eps", []):
                probed += 1
                g = probe_job(rid, probed); request(g, addr, next(g))
        elif code == 2 and len(path) == 2 and path[0] == "rd":
            r = regs.get(path[1])
            if not r:
                st["update_404"] += 1; reply(0x84); continue
            if r["addr"] != addr:
                st["addr_changes"] += 1; r["addr"] = addr
            if "lt=600" in q: st["update_lt"] += 1
            st["update"] += 1; reply(0x44)
        elif code == 4 and len(path) == 2 and path[0] == "rd":
            r = regs.pop(path[1], None)
            if not r:
                reply(0x84); continue
            by_ep.pop(r["ep"], None); st["deregister"] += 1; reply(0x42)
        elif code == 2 and path == ["dp"]:
            st["send"] += 1; reply(0x44)
        elif code == 1 and path == ["fw"]:
            b2 = opt(opts, 23)
            v = int.from_bytes(b2[0], "big") if b2 else 6
            szx = min(v & 7, 6); num = v >> 4; size = 16 << szx
            chunk = FW[num * size:(num + 1) * size]
            more = (num + 1) * size < len(FW)
            st["fw_blocks_served"] += 1
            reply(0x45, [(4, b"\x01\x02"), (23, u(num << 4 | more << 3 | szx))], chunk)
        else:
            reply(0x84)
    elif code == 0:
        continue
    else:
        if t == 0:
            s.sendto(build(2, 0, m, b""), addr)
        j = jobs.get(tok)
        if not j:
            continue
        gen, what, jaddr = j
        if what.endswith("!rst"):
            st["notify_after_rst"] = st.get("notify_after_rst", 0) + 1
            continue
        if what.endswith("!"):
            st["notify"] += 1
            if what == "observe_composite!":
                # Reject it: the device must drop the observation (RFC 7641 3.6).
                s.sendto(build(3, 0, m, b""), addr)
                st["rst_sent"] = st.get("rst_sent", 0) + 1
                jobs[tok] = (gen, what + "rst", jaddr)
            continue
        if what.startswith("observe"):
            jobs[tok] = (gen, what + "!", jaddr)
        else:
            jobs.pop(tok)
        advance(gen, jaddr, ("%d.%02d" % (code >> 5, code & 31), pl))
PY

# run_mini NAME PROBES FLEET-ARGS...: runs the fleet against a fresh mini server; leaves
# $LW_TMP/NAME.json (fleet report), NAME.srv.json (server summary), NAME.out, and $rc.
run_mini() {
  local name=$1 probes=$2; shift 2
  local port; port=$(free_port u)
  python3 "$LW_TMP/fleet_server.py" "$port" "$probes" "$LW_TMP/$name.srv.json" \
    >"$LW_TMP/$name.srv.log" 2>&1 &
  local spid=$!
  wait_for "$LW_TMP/$name.srv.log" ready 10
  "$FLEET" --server "coap://127.0.0.1:$port" --report-json "$LW_TMP/$name.json" "$@" \
    >"$LW_TMP/$name.out" 2>&1
  rc=$?
  kill -TERM "$spid" 2>/dev/null; wait "$spid" 2>/dev/null
}

cat > "$LW_TMP/fleet.ini" <<'INI'
[fleet]
rate = 400/s
duration = 8s
[group meters]
count = 150
endpoint = e2e-meter-{n:4}
lwm2m = 1.1
send_interval = 2s
fw_success_rate = 100%
fw_update_time = 3s
reboot_time = 300ms
[group old]
count = 50
endpoint = e2e-old-{n}
lwm2m = 1.0
format = tlv
objects = 3,10243
INI
run_mini steady 6 --fleet "$LW_TMP/fleet.ini" --quiet
r=$LW_TMP/steady.json s=$LW_TMP/steady.srv.json
check "steady: exit 0 (every device registered)" test "$rc" -eq 0
check "report: devices 200, registered 200, failed 0" \
  test "$(json_get "$r" '(d["devices"], d["registered"], d["failed"])')" = "(200, 200, 0)"
check "report: duration_s and per-operation rate_per_s/p50_ms/p99_ms/errors" \
  test "$(json_get "$r" 'all(k in d["operations"]["register"] for k in ("rate_per_s","p50_ms","p99_ms","errors")) and d["duration_s"] > 8')" = True
check "server saw 200 registers and 200 de-registers" \
  test "$(json_get "$s" 'd["register"] >= 200 and d["deregister"] >= 200 and d["registered_now"] == 0')" = True
check "Send (POST /dp) from 1.1 devices" test "$(json_get "$s" 'd["send"] > 0')" = True
for k in "read_tlv 2.05" "read_text 2.05" "read_multi 2.05" "discover 2.05" "write_attr 2.04" "observe 2.05" \
         "read_missing 4.04" "read_composite 2.05" "write_lifetime 2.04" "write_composite 2.04" \
         "observe_composite 2.05" "execute_trigger 2.04" \
         "fw_push 2.04" "fw_pull_write 2.04" "fw_state 2" "fw_update 2.04"; do
  check "device answers: $k" test "$(json_get "$s" "d['results'].get('$k', 0) > 0")" = True
done
check "scripted operations completed on 6 devices" test "$(json_get "$s" 'd["jobs_done"]')" = 6
check "notifications follow pmin/pmax" test "$(json_get "$s" 'd["notify"] > 0')" = True
check "an RST to a notification ends the observation" \
  test "$(json_get "$s" 'd.get("rst_sent", 0) > 0 and d.get("notify_after_rst", 0) == 0')" = True
check "lifetime write reaches the server in an Update (lt=600)" \
  test "$(json_get "$s" 'd["update_lt"] > 0')" = True
check "devices re-register after a firmware update" \
  test "$(json_get "$s" 'd["reregister_after_fw"] > 0')" = True
check "firmware pull fetched blocks" test "$(json_get "$s" 'd["fw_blocks_served"] >= 5')" = True
check "human report printed" grep -q "^register " "$LW_TMP/steady.out"

run_mini storm 0 --devices 300 --rate 1000 --duration 4s --scenario storm --quiet
check "storm: exit 0" test "$rc" -eq 0
check "storm: recovery time reported" \
  test "$(json_get "$LW_TMP/storm.json" '"storm_recovery_s" in d and d["scenario"] == "storm"')" = True
check "storm: server saw every device register twice" \
  test "$(json_get "$LW_TMP/storm.srv.json" 'd["register"] >= 600')" = True

run_mini rebind 0 --devices 100 --rate 1000 --duration 4s --scenario rebind --sockets 4 --quiet
check "rebind: exit 0" test "$rc" -eq 0
check "rebind: the server saw Updates from new source ports" \
  test "$(json_get "$LW_TMP/rebind.srv.json" 'd["addr_changes"] >= 90')" = True

run_mini lossy 0 --devices 100 --rate 500 --duration 5s --loss 5% --duplicate 5% --reorder 5% --quiet
check "impairments: every device registered despite loss" test "$rc" -eq 0
check "impairments: loss, duplicates and retransmissions counted" \
  test "$(json_get "$LW_TMP/lossy.json" 'd["network"]["dropped_by_loss"] > 0 and d["network"]["duplicated"] > 0 and d["network"]["retransmissions"] > 0')" = True
fi

# ---- the real daemon -------------------------------------------------------------------------
if start_daemon "$LW_TMP/fleet-daemon.log"; then
  "$FLEET" --server "coap://127.0.0.1:$LW_COAP_PORT" --devices 20 --rate 200 --duration 3s \
    --quiet --report-json "$LW_TMP/probe.json" >/dev/null 2>&1
  if [ "$(json_get "$LW_TMP/probe.json" 'd["registered"]')" != 20 ]; then
    echo "  SKIP: the daemon does not register devices yet: fleet-vs-daemon tests skipped"
  else
    "$FLEET" --server "coap://127.0.0.1:$LW_COAP_PORT" --devices 1000 --rate 500 --duration 5s \
      --server-pid "$LW_DAEMON_PID" --quiet --report-json "$LW_TMP/daemon.json" \
      >"$LW_TMP/daemon.out" 2>&1
    rc=$?
    check "daemon: 1000 devices register, update and de-register (exit 0)" test "$rc" -eq 0
    check "daemon: report has registered 1000, failed 0" \
      test "$(json_get "$LW_TMP/daemon.json" '(d["registered"], d["failed"])')" = "(1000, 0)"
    check "daemon: de-registrations succeeded" \
      test "$(json_get "$LW_TMP/daemon.json" 'd["operations"]["deregister"]["count"]')" = 1000
    check "daemon: CPU and RSS sampled from /proc" \
      test "$(json_get "$LW_TMP/daemon.json" 'd["server_process"]["rss_end_kb"] > 0')" = True
    "$FLEET" --server "coap://127.0.0.1:$LW_COAP_PORT" --devices 500 --rate 1000 --duration 4s \
      --scenario storm --quiet --report-json "$LW_TMP/dstorm.json" >/dev/null 2>&1
    check "daemon: power-restoration storm, everyone registers again" \
      test "$(json_get "$LW_TMP/dstorm.json" '"storm_recovery_s" in d and d["failed"] == 0')" = True
    "$FLEET" --server "coap://127.0.0.1:$LW_COAP_PORT" --devices 300 --rate 1000 --duration 4s \
      --scenario rebind --quiet --report-json "$LW_TMP/drebind.json" >/dev/null 2>&1
    check "daemon: NAT rebinding, Updates from new source ports succeed" \
      test "$(json_get "$LW_TMP/drebind.json" 'd["operations"]["update"]["count"] >= 300 and d["operations"]["update"]["errors"] == 0')" = True
  fi
  stop_daemon
else
  fail "daemon starts for the fleet tests"
fi

# ---- the real daemon over DTLS PSK -----------------------------------------------------------
# Credentials are provisioned by the simulator through the admin API, then the devices register
# over coaps (CID negotiated); rebinding keeps the sessions with CID and needs new handshakes
# without.
tok=$LW_TMP/fleet-admin-token
(umask 077; head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' > "$tok")
if start_daemon "$LW_TMP/fleet-dtls.log" --set "api.bootstrap_token_file=$tok"; then
  API="http://127.0.0.1:$LW_API_PORT"
  PSK=(--server "coaps://127.0.0.1:$LW_COAPS_PORT" --psk-identity 'id-{ep}' --psk-key 'a1b2c3d4e5f60718{n:16}')
  "$FLEET" "${PSK[@]}" --devices 200 --rate 400 --duration 2s --provision "$API" --token "$(cat "$tok")" \
    --server-pid "$LW_DAEMON_PID" --quiet --report-json "$LW_TMP/psk.json" >"$LW_TMP/psk.out" 2>&1
  rc=$?
  r=$LW_TMP/psk.json
  if [ "$(json_get "$r" 'd["registered"]')" = "" ] && grep -q "provision" "$LW_TMP/psk.out"; then
    fail "psk: provisioning through the API ($(head -c 300 "$LW_TMP/psk.out"))"
  else
    check "psk: 200 devices provisioned, registered and de-registered over DTLS (exit 0)" test "$rc" -eq 0
    check "psk: report has registered 200, failed 0" \
      test "$(json_get "$r" '(d["registered"], d["failed"])')" = "(200, 0)"
    check "psk: 200 handshakes, every session with a CID" \
      test "$(json_get "$r" '(d["dtls"]["handshakes"], d["dtls"]["cid_sessions"])')" = "(200, 200)"
    check "psk: handshake latency reported" \
      test "$(json_get "$r" 'd["operations"]["dtls_handshake"]["p99_ms"] > 0')" = True
    check "psk: simulator bytes per device reported" \
      test "$(json_get "$r" 'd["simulator"]["bytes_per_device"] > 0')" = True
  fi
  check "psk: the daemon has the provisioned credentials (GET: mode psk)" bash -c \
    'curl -s -H "Authorization: Bearer $2" "$1/api/v1/devices/fleet-default-0000007/credentials" | grep -q "\"mode\":\"psk\""' \
    _ "$API" "$(cat "$tok")"

  "$FLEET" "${PSK[@]}" --devices 100 --rate 500 --duration 4s --scenario rebind --quiet \
    --report-json "$LW_TMP/psk-rebind.json" >/dev/null 2>&1
  r=$LW_TMP/psk-rebind.json
  check "psk rebind with CID: every device registered, Updates from new ports succeed" \
    test "$(json_get "$r" 'd["failed"] == 0 and d["registered_at_end"] == 100 and d["operations"]["update"]["count"] >= 100 and d["operations"]["update"]["errors"] == 0')" = True
  check "psk rebind with CID: 100 rebinds kept their sessions, zero new handshakes" \
    test "$(json_get "$r" '(d["dtls"]["rebinds"], d["dtls"]["rebinds_kept_session"], d["dtls"]["handshakes"], d["dtls"]["handshakes_started"])')" = "(100, 100, 100, 100)"

  "$FLEET" "${PSK[@]}" --devices 100 --rate 500 --duration 4s --scenario rebind --no-cid --quiet \
    --report-json "$LW_TMP/psk-rebind-nocid.json" >/dev/null 2>&1
  r=$LW_TMP/psk-rebind-nocid.json
  check "psk rebind without CID: every device registered, Updates succeed" \
    test "$(json_get "$r" 'd["failed"] == 0 and d["registered_at_end"] == 100 and d["operations"]["update"]["count"] >= 100 and d["operations"]["update"]["errors"] == 0')" = True
  check "psk rebind without CID: no CID, 100 new handshakes (200 in all)" \
    test "$(json_get "$r" '(d["dtls"]["cid_sessions"], d["dtls"]["rebinds_new_handshake"], d["dtls"]["handshakes"])')" = "(0, 100, 200)"

  "$FLEET" "${PSK[@]}" --devices 50 --rate 500 --duration 1s --dtls 1.3 --quiet \
    --report-json "$LW_TMP/psk13.json" >/dev/null 2>&1
  check "psk over DTLS 1.3: 50 devices register" \
    test "$(json_get "$LW_TMP/psk13.json" '(d["registered"], d["failed"], d["dtls"]["handshakes"])')" = "(50, 0, 50)"

  out=$("$FLEET" "${PSK[@]}" --devices 5 --provision "$API" --token wrong-token-0123456789abcdef0123456789 \
    --quiet 2>&1); rc=$?
  check "provisioning with a bad token fails before any device starts (exit 2)" \
    test "$rc" -eq 2 -a -n "$(grep 'HTTP 401' <<<"$out")"
  stop_daemon
else
  fail "daemon with an admin token starts for the DTLS fleet tests"
fi

# ---- handshake admission under overload ----------------------------------------------------------
# coaps.max_handshakes=4 per shard and 300 devices (DTLS 1.2, then 1.3) starting at once: the
# hellos with a cookie beyond the budget wait in the backlog (coaps.handshake_backlog: a copy of
# the datagram, no session, no reply) and are started as handshakes end, so every device
# registers without a failed handshake; with the backlog off they are dropped, and only the
# clients' retransmissions bring them back.
hello() { curl -s "$API/metrics" | awk -v r="result=\"$1\"" '$1 ~ /^lwm2md_dtls_hello_total/ && index($1, r) {s += $2} END {print s + 0}'; }
if start_daemon "$LW_TMP/fleet-admit.log" --set "api.bootstrap_token_file=$tok" \
  --set coaps.max_handshakes=4; then
  API="http://127.0.0.1:$LW_API_PORT"
  PSK=(--server "coaps://127.0.0.1:$LW_COAPS_PORT" --psk-identity 'id-{ep}' --psk-key 'a1b2c3d4e5f60718{n:16}')
  "$FLEET" "${PSK[@]}" --devices 300 --rate 100000 --duration 0 --provision "$API" \
    --token "$(cat "$tok")" --quiet --report-json "$LW_TMP/admit.json" >"$LW_TMP/admit.out" 2>&1
  check "admission: 300 devices at once past a budget of 4 handshakes per shard all register" \
    test "$(json_get "$LW_TMP/admit.json" '(d["registered"], d["failed"], d["dtls"]["handshakes"], d["dtls"]["handshake_failures"])')" = "(300, 0, 300, 0)"
  budget=$(hello budget) deferred=$(hello deferred) full=$(hello backlog_full)
  check "admission: hellos refused for the budget ($budget) waited in the backlog ($deferred), none dropped ($full)" \
    test "$budget" -gt 0 -a "$deferred" -gt 0 -a "$full" -eq 0
  waiting=$(curl -s "$API/metrics" | awk '$1 ~ /^lwm2md_dtls_sessions/ && $1 ~ /hello_waiting/ {s += $2} END {print s + 0}')
  check "admission: the backlog is empty afterwards ($waiting)" test "$waiting" -eq 0
  "$FLEET" "${PSK[@]}" --devices 300 --rate 100000 --duration 0 --dtls 1.3 --quiet \
    --report-json "$LW_TMP/admit13.json" >/dev/null 2>&1
  check "admission: the same over DTLS 1.3 (cookie in the HRR extension)" \
    test "$(json_get "$LW_TMP/admit13.json" '(d["registered"], d["failed"], d["dtls"]["handshake_failures"])')" = "(300, 0, 0)"
  check "admission: the 1.3 hellos were kept too" test "$(hello deferred)" -gt "$deferred"
  stop_daemon
else
  fail "daemon with coaps.max_handshakes=4 starts"
fi
if start_daemon "$LW_TMP/fleet-admit0.log" --set "api.bootstrap_token_file=$tok" \
  --set coaps.max_handshakes=4 --set coaps.handshake_backlog=0; then
  API="http://127.0.0.1:$LW_API_PORT"
  PSK=(--server "coaps://127.0.0.1:$LW_COAPS_PORT" --psk-identity 'id-{ep}' --psk-key 'a1b2c3d4e5f60718{n:16}')
  # 20 devices: the refused ones only get in through their own retransmissions (1, 2, 4 s ...),
  # which come back in synchronised waves that again meet a full budget
  "$FLEET" "${PSK[@]}" --devices 20 --rate 100000 --duration 0 --quiet \
    --report-json "$LW_TMP/admit0.json" >/dev/null 2>&1
  check "admission without backlog: refused hellos dropped (none kept), the clients had to retransmit" \
    test "$(hello deferred)" -eq 0 -a "$(hello budget)" -gt 0 -a "$(json_get "$LW_TMP/admit0.json" 'd["dtls"]["flight_retransmissions"] > 0')" = True
  stop_daemon
else
  fail "daemon with coaps.handshake_backlog=0 starts"
fi
