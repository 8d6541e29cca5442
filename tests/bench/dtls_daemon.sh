#!/usr/bin/env bash
# tests/bench/dtls_daemon.sh - CoAPS against the real daemon over loopback (run by `make bench`):
# N devices (default 2000) do a DTLS 1.2 PSK handshake with a CID and Register, one after the
# other (tests/e2e/tools/dtls_client.c on the project's wolfSSL; the client's own work is
# included), idle until the daemon hibernates their sessions, then send one Update each (every
# session woken by import). Reports handshakes+Registers per second, wake+Update per second,
# and the daemon's resident memory per registered, hibernated device (RSS delta / N after a
# malloc_trim wave). The lib-level handshake rate next to a raw wolfSSL loop in the same run is
# tests/bench/dtls_bench.c. The per-prefix hello limit is off (all clients share 127.0.0.1). Appends a JSON line to bench/results/dtls_daemon.json.
# The API's SSE replay ring (api.sse_ring, default 10000 serialised events, ~7 MB when full) is
# a fixed-size buffer, not a per-device cost; over a few thousand devices it would dominate the
# RSS delta (2 events per device here), so it runs at its minimum (16). DTLS_DAEMON_EXTRA adds
# daemon options (e.g. "--set api.sse_ring=10000" to see the ring's share).
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD:-build}
bin=$top/$build/bin/lwm2md
N=${DTLS_DAEMON_N:-2000}
tmp=$(mktemp -d /tmp/lwm2md-dtlsbench.XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
wolf=$top/.deps/wolfssl
if [ ! -x "$bin" ] || ! cc -O2 -o "$tmp/cli" "$top/tests/e2e/tools/dtls_client.c" -I"$wolf/include" \
  "$wolf/lib/libwolfssl.a" -lm 2>"$tmp/cc.err"; then
  echo "bench dtls_daemon: SKIP (no daemon binary or the client does not build)"
  exit 0
fi
port() { echo $((20000 + RANDOM % 30000)); }
cport=$(port) sport=$(port) aport=$(port)
(umask 077; head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' > "$tmp/tok")
tok=$(cat "$tmp/tok")
"$bin" --set server.shards=1 --set "coap.listen=127.0.0.1:$cport" --set "coaps.listen=127.0.0.1:$sport" \
  --set "api.listen=127.0.0.1:$aport" --set "api.bootstrap_token_file=$tmp/tok" \
  --set "server.state_dir=$tmp/state" --set coaps.hibernate_idle=${DTLS_DAEMON_HIBERNATE:-1s} --set coaps.hello_rate=0 --set log.level=warning \
  --set api.sse_ring=16 ${DTLS_DAEMON_EXTRA:-} \
  > "$tmp/d.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$aport/healthz" && break; sleep 0.1; done
key=bench-secret-key
khex=$(printf '%s' "$key" | od -An -tx1 | tr -d ' \n')
: > "$tmp/c.curl"
for ((i = 0; i < N; i++)); do
  [ "$i" -gt 0 ] && echo next >> "$tmp/c.curl"
  printf 'url = "http://127.0.0.1:%s/api/v1/devices/b%d/credentials"\nrequest = "PUT"\nheader = "Authorization: Bearer %s"\nheader = "Content-Type: application/json"\ndata = "{\\"mode\\":\\"psk\\",\\"identity\\":\\"bid%d\\",\\"key\\":\\"%s\\"}"\noutput = "/dev/null"\n' \
    "$aport" "$i" "$tok" "$i" "$khex" >> "$tmp/c.curl"
done
curl -s -K "$tmp/c.curl"
rss() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
rss0=$(rss)
"$tmp/cli" "$sport" bid "$key" b load "$N" 2500 6000 > "$tmp/out" &
cli=$!
for _ in $(seq 1 6000); do grep -q client_rss_kb "$tmp/out" && break; sleep 0.1; done
sleep 3
rss1=$(rss)
hib=$(curl -s "http://127.0.0.1:$aport/metrics" | awk '$1 ~ /^lwm2md_dtls_sessions/ && $1 ~ /hibernated/ {s += $2} END {print s + 0}')
wait $cli
hs=$(awk '$1 == "handshake_register_per_s" {print $2}' "$tmp/out")
wk=$(awk '$1 == "wake_update_per_s" {print $2}' "$tmp/out")
per=$(( (rss1 - rss0) * 1024 / N ))
echo "bench dtls_daemon_handshake_register: $hs per s (DTLS 1.2 PSK + CID + Register, client included, one shard)"
echo "bench dtls_daemon_wake_update: $wk per s (hibernated session imported + Update)"
echo "bench dtls_daemon_hibernated_devices: $hib of $N"
echo "bench dtls_daemon_rss_per_device: $per bytes (RSS delta / N, registered + hibernated)"
mkdir -p "$top/bench/results"
printf '{"bench":"dtls_daemon","ts":"%s","n":%d,"handshake_register_per_s":%s,"wake_update_per_s":%s,"hibernated":%s,"rss_per_device_bytes":%d}\n' \
  "$(date -u +%FT%TZ)" "$N" "${hs:-0}" "${wk:-0}" "${hib:-0}" "$per" >> "$top/bench/results/dtls_daemon.json"
