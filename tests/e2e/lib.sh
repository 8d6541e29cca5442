# tests/e2e/lib.sh - helpers for end-to-end tests (sourced by run.sh and each test_*.sh).
# Each test file runs in its own bash process with these variables set by run.sh:
#   LW_BIN (daemon), LW_TOP (repo), LW_PG_URL (private PostgreSQL), LW_TMP (scratch dir)
# and reports with pass/fail; run.sh prints the totals.

LW_PASS=0
LW_FAIL=0
LW_DAEMON_PID=""

pass() { LW_PASS=$((LW_PASS + 1)); echo "  ok   - $*"; }
fail() { LW_FAIL=$((LW_FAIL + 1)); echo "  FAIL - $*"; }
check() { # check "description" command...
  local what=$1; shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
finish() { echo "$LW_PASS $LW_FAIL" > "$LW_TMP/result.$(basename "$0")"; }

# free_port u|t: a port no socket uses (loopback tests only), below the kernel's ephemeral range:
# a port picked inside it can be taken as the local port of an outgoing connection (the daemon's
# own PostgreSQL connections, made before its API listens) between the pick and the bind.
free_port() {
  local proto=$1 p lo
  lo=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)
  [ "${lo:-0}" -gt 12000 ] || lo=32768
  for _ in $(seq 1 200); do
    p=$((10000 + RANDOM % (lo - 10000)))
    if ! ss -Han"${proto}" "sport = :$p" | grep -q .; then echo "$p"; return 0; fi
  done
  return 1
}

# e2e_master_key: path of this test run's master key (32 random bytes in hex, mode 0600), created
# once; start_daemon gives it to the daemon (security.master_key_file) so credentials persist.
e2e_master_key() {
  local f=$LW_TMP/master.key
  [ -s "$f" ] || (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$f")
  echo "$f"
}

# start_daemon LOGFILE [extra args...]: starts the daemon with config/test.conf on free ports.
start_daemon() {
  local log=$1 key; shift
  key=$(e2e_master_key)
  LW_COAP_PORT=$(free_port u)
  LW_COAPS_PORT=$(free_port u)
  LW_API_PORT=$(free_port t)
  ${LW_WRAPPER:-} "$LW_BIN" --config "$LW_TOP/config/test.conf" \
    --set "coap.listen=127.0.0.1:$LW_COAP_PORT" --set "coaps.listen=127.0.0.1:$LW_COAPS_PORT" \
    --set "api.listen=127.0.0.1:$LW_API_PORT" --set "database.url=$LW_PG_URL" \
    --set "server.state_dir=$LW_TMP/state" --set "security.master_key_file=$key" "$@" >"$log" 2>&1 &
  LW_DAEMON_PID=$!
  wait_for "$log" '"msg":"ready' 30
}

# restart_daemon LOGFILE [extra args...]: the daemon again on the ports start_daemon picked (the
# devices of a test keep talking to them), same database, state directory and master key.
restart_daemon() {
  local log=$1; shift
  ${LW_WRAPPER:-} "$LW_BIN" --config "$LW_TOP/config/test.conf" \
    --set "coap.listen=127.0.0.1:$LW_COAP_PORT" --set "coaps.listen=127.0.0.1:$LW_COAPS_PORT" \
    --set "api.listen=127.0.0.1:$LW_API_PORT" --set "database.url=$LW_PG_URL" \
    --set "server.state_dir=$LW_TMP/state" --set "security.master_key_file=$(e2e_master_key)" \
    "$@" >"$log" 2>&1 &
  LW_DAEMON_PID=$!
  wait_for "$log" '"msg":"ready' 60
}

# until_ok SECONDS cmd...: true once cmd succeeds (tried every 100 ms).
until_ok() {
  local secs=$1 i; shift
  for ((i = 0; i < secs * 10; i++)); do "$@" && return 0; sleep 0.1; done
  return 1
}

# wait_for FILE PATTERN SECONDS: true once FILE contains PATTERN (fixed string).
wait_for() {
  local file=$1 pat=$2 secs=$3 i
  for ((i = 0; i < secs * 10; i++)); do
    grep -qF -- "$pat" "$file" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "    (timed out after ${secs}s waiting for '$pat' in $file)"
  tail -n 20 "$file" | sed 's/^/    | /'
  return 1
}

# stop_daemon [SIGNAL]: signals the daemon and waits (at most 30 s); sets LW_DAEMON_RC.
stop_daemon() {
  local sig=${1:-TERM} i
  [ -n "$LW_DAEMON_PID" ] || return 0
  kill "-$sig" "$LW_DAEMON_PID" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do
    kill -0 "$LW_DAEMON_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$LW_DAEMON_PID" 2>/dev/null; then
    echo "    (daemon did not stop; killing)"
    kill -KILL "$LW_DAEMON_PID" 2>/dev/null || true
  fi
  wait "$LW_DAEMON_PID" 2>/dev/null
  LW_DAEMON_RC=$?
  LW_DAEMON_PID=""
}

trap 'stop_daemon KILL >/dev/null 2>&1; finish' EXIT
