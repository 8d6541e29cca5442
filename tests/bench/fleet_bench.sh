#!/usr/bin/env bash
# Benchmark: lwm2md under a simulated fleet (build/bin/lwm2m-fleet, docs/benchmarks.md).
# Starts a private PostgreSQL and the daemon (config/test.conf), then runs
#   1. a steady run: FLEET_DEVICES devices registering at FLEET_RATE/s, 10 s steady, de-register;
#   2. a power-restoration storm with the same fleet.
# Prints "bench fleet_...: value unit" lines and appends one JSON line per run to
# bench/results/fleet_bench.json. Environment: BUILD (default build), FLEET_DEVICES (20000),
# FLEET_RATE (2000).
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD:-build}
bin=$top/$build/bin
devices=${FLEET_DEVICES:-20000}
rate=${FLEET_RATE:-2000}
work=$(mktemp -d /tmp/lwm2md-fleet-bench.XXXXXX)
chmod 755 "$work"
pgdir=$top/$build/bench/pg
dpid=""

cleanup() {
  [ -n "$dpid" ] && kill "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null
  bash "$top/tools/pg.sh" stop "$pgdir" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

[ -x "$bin/lwm2md" ] && [ -x "$bin/lwm2m-fleet" ] || { echo "fleet_bench: build first (make all)"; exit 1; }
mkdir -p "$top/$build/bench" "$top/bench/results"
pg_url=$(bash "$top/tools/pg.sh" start "$pgdir") || { echo "fleet_bench: cannot start PostgreSQL"; exit 1; }

port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
coap=$(port); coaps=$(port); api=$(tport)
"$bin/lwm2md" --config "$top/config/test.conf" --set "coap.listen=127.0.0.1:$coap" \
  --set "coaps.listen=127.0.0.1:$coaps" --set "api.listen=127.0.0.1:$api" \
  --set "database.url=$pg_url" --set "server.state_dir=$work/state" --set "log.level=notice" \
  >"$work/daemon.log" 2>&1 &
dpid=$!
for _ in $(seq 1 100); do grep -q '"ready' "$work/daemon.log" 2>/dev/null && break; sleep 0.1; done
grep -q "\"ready" "$work/daemon.log" || { echo "fleet_bench: daemon did not start"; tail "$work/daemon.log"; exit 1; }

git_rev=$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo unknown)
run() { # run NAME ARGS...
  local name=$1; shift
  "$bin/lwm2m-fleet" --server "coap://127.0.0.1:$coap" --devices "$devices" --rate "$rate" \
    --server-pid "$dpid" --quiet --report-json "$work/$name.json" "$@" >"$work/$name.out" 2>&1
  python3 - "$work/$name.json" "$name" "$git_rev" "$top/bench/results/fleet_bench.json" <<'PY'
import json, sys, time
d = json.load(open(sys.argv[1])); name = sys.argv[2]
reg = d["operations"].get("register", {})
srv = d.get("server_process", {})
per_dev = (srv.get("rss_end_kb", 0) - srv.get("rss_start_kb", 0)) * 1024 / max(d["registered_at_end"], 1)
out = {"bench": "fleet_" + name, "git": sys.argv[3], "time": int(time.time()),
       "devices": d["devices"], "registered": d["registered"], "failed": d["failed"],
       "register_p50_ms": reg.get("p50_ms"), "register_p99_ms": reg.get("p99_ms"),
       "retransmissions": d["network"]["retransmissions"],
       "server_cpu_s": srv.get("cpu_s"), "server_rss_end_kb": srv.get("rss_end_kb"),
       "server_rss_bytes_per_device": round(per_dev), "storm_recovery_s": d.get("storm_recovery_s"),
       "simulator_rss_kb": d.get("simulator", {}).get("rss_kb")}
print("bench fleet_%s_registered: %d devices" % (name, d["registered"]))
print("bench fleet_%s_register_p99: %.2f ms" % (name, reg.get("p99_ms", 0)))
print("bench fleet_%s_retransmissions: %d datagrams" % (name, d["network"]["retransmissions"]))
print("bench fleet_%s_server_cpu: %.2f s" % (name, srv.get("cpu_s", 0)))
print("bench fleet_%s_server_rss_per_device: %d bytes" % (name, per_dev))
if "storm_recovery_s" in d:
    print("bench fleet_%s_recovery: %.2f s" % (name, d["storm_recovery_s"]))
with open(sys.argv[4], "a") as f:
    f.write(json.dumps(out) + "\n")
PY
}
run steady --duration 10s || exit 1
run storm --duration 10s --scenario storm || exit 1
