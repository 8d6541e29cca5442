#!/usr/bin/env bash
# Daemon lifecycle: start against the real PostgreSQL, readiness, SIGHUP reload (valid and
# invalid), graceful SIGTERM, configuration errors with FILE:LINE and exit status 2,
# valgrind-clean start and shutdown.
source "$(dirname "$0")/lib.sh"

log=$LW_TMP/daemon.log
check "daemon starts and reports ready" start_daemon "$log"
check "daemon saw the database" grep -qF '"msg":"database reachable"' "$log"
check "ready line names the shard count" grep -qF '"msg":"ready: 2 shards"' "$log"

# SIGHUP: a reloadable change applies, a restart-only change is reported, a broken file is refused.
conf=$LW_TMP/reload.conf
printf '[log]\nlevel = info\n' > "$conf"
stop_daemon TERM
log=$LW_TMP/daemon-reload.log
start_daemon "$log" --config "$conf" --set log.format=json
kill -HUP "$LW_DAEMON_PID"
check "reload is logged" wait_for "$log" '"msg":"configuration reloaded"' 10
printf '[log]\nlevel = debug\n[server]\nshards = 5\n' > "$conf"
kill -HUP "$LW_DAEMON_PID"
check "restart-only key reported on reload" wait_for "$log" 'take effect only after a restart: server.shards' 10
printf '[log]\nlevel = shouting\n' > "$conf"
kill -HUP "$LW_DAEMON_PID"
check "invalid reload refused with file:line" wait_for "$log" "reload refused, keeping the running configuration: $conf:2: key 'log.level'" 10
check "daemon still running after a refused reload" kill -0 "$LW_DAEMON_PID"

stop_daemon TERM
check "SIGTERM stops the daemon with status 0" [ "$LW_DAEMON_RC" -eq 0 ]
check "stop is logged" grep -qF '"msg":"stopped"' "$log"

# --check-config: errors name FILE:LINE and the key, exit status 2.
bad=$LW_TMP/bad.conf
printf '[server]\nshards = 2\n\n[coap]\nlisten = 127.0.0.1:notaport\n' > "$bad"
out=$("$LW_BIN" --check-config --config "$bad" 2>&1); rc=$?
check "--check-config on a bad value exits 2" [ "$rc" -eq 2 ]
check "--check-config names FILE:LINE and key" grep -qF "$bad:5: key 'coap.listen': '127.0.0.1:notaport': port must be 1..65535" <<< "$out"
out=$("$LW_BIN" --check-config --config "$LW_TOP/config/lwm2md.conf.example" 2>&1); rc=$?
check "the documented example configuration is valid" [ "$rc" -eq 0 ]
out=$("$LW_BIN" --print-config --set database.url=postgresql://u:s3cret@127.0.0.1/x 2>&1)
check "--print-config masks secrets" bash -c '! grep -q s3cret <<< "$1" && grep -q "url = \*\*\*\*\*\*\*\*  # --set" <<< "$1"' _ "$out"
out=$("$LW_BIN" --bogus 2>&1); rc=$?
check "unknown option exits 2" [ "$rc" -eq 2 ]

# A listener that cannot be opened: clear error, exit status 1, every handle closed.
busy=$(free_port t)
python3 -c 'import socket,sys,time; s=socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); time.sleep(30)' "$busy" &
holder=$!
sleep 0.5
out=$("$LW_BIN" --set "coap.listen=127.0.0.1:$(free_port u)" --set coaps.listen= \
      --set "api.listen=127.0.0.1:$busy" --set log.format=json 2>&1); rc=$?
kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null
check "API port in use: exit status 1" [ "$rc" -eq 1 ]
check "API port in use: the error names the address" grep -qF "cannot listen on 127.0.0.1:$busy" <<< "$out"
check "API port in use: clean shutdown (no open handles)" bash -c '! grep -q "handles still open" <<< "$1" && grep -qF "\"msg\":\"stopped\"" <<< "$1"' _ "$out"

# valgrind: start, serve, stop cleanly with no leaks or errors.
if [ -n "${LW_SANITIZED:-}" ]; then
  echo "  SKIP - valgrind run: this is a sanitizer build (ASan and valgrind cannot be combined)"
elif command -v valgrind >/dev/null; then
  vlog=$LW_TMP/valgrind.log
  LW_WRAPPER="valgrind --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible --log-file=$vlog" \
    start_daemon "$LW_TMP/daemon-vg.log"
  check "daemon under valgrind reports ready" wait_for "$LW_TMP/daemon-vg.log" '"msg":"ready' 60
  stop_daemon TERM
  check "valgrind-clean shutdown (exit $LW_DAEMON_RC)" [ "$LW_DAEMON_RC" -eq 0 ]
  [ "$LW_DAEMON_RC" -eq 0 ] || sed 's/^/    | /' "$vlog" | tail -n 40
else
  echo "  SKIP - valgrind not installed"
fi
