#!/usr/bin/env bash
# Saved DTLS sessions across daemon restarts (W1.8): a DTLS 1.2 PSK device with a connection id
# (tests/e2e/tools/dtls_client.c, one process that keeps its session and source port) registers;
# its session hibernates and is written, sealed under the master key, to dtls_sessions; the
# daemon is killed with SIGKILL and started again on the same ports: the device's Update on its
# old session gets 2.04 and no handshake is counted. Then the session is live when the daemon
# stops gracefully (exported at stop) and again survives. The saved state does not show the
# PSK identity in clear; a row sealed under another master key is skipped; a restored session
# whose credentials were deleted while the daemon was down is closed when it wakes.
source "$(dirname "$0")/lib.sh"

for c in curl psql; do
  if ! command -v $c >/dev/null; then
    echo "  SKIP - $c not installed"
    finish
    exit 0
  fi
done

cli=$LW_TMP/dtls_client_restart
wolf=$LW_TOP/.deps/wolfssl
if ! cc -O1 -o "$cli" "$LW_TOP/tests/e2e/tools/dtls_client.c" -I"$wolf/include" "$wolf/lib/libwolfssl.a" -lm 2>"$LW_TMP/cc-restart.err"; then
  fail "dtls_client compiles against the project's wolfSSL"
  sed 's/^/    | /' "$LW_TMP/cc-restart.err" | head
  finish
  exit 0
fi

key=$LW_TMP/master.key
(umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$key")
admin_tok=$LW_TMP/dtlsr-admin-token
(umask 077; head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' > "$admin_tok")
ADMIN=$(cat "$admin_tok")

metric() { curl -s "http://127.0.0.1:$LW_API_PORT/metrics" | awk -v m="$1" 'index($1, m) == 1 {s += $2} END {print s + 0}'; }
hs_all() { curl -s "http://127.0.0.1:$LW_API_PORT/metrics" | awk '$1 ~ /^lwm2md_dtls_handshakes_total/ && $1 ~ /result="ok"/ {s += $2} END {print s + 0}'; }
saved_written() { metric 'lwm2md_dtls_saved_sessions_total{kind="written"}'; }
hex() { printf '%s' "$1" | od -An -tx1 | tr -d ' \n'; }
common=(--set "api.bootstrap_token_file=$admin_tok" --set "security.master_key_file=$key")

log1=$LW_TMP/dtlsr-1.log
check "daemon with a master key and coaps.hibernate_idle=1s starts" start_daemon "$log1" \
  "${common[@]}" --set coaps.hibernate_idle=1s
API="http://127.0.0.1:$LW_API_PORT"
KEY=e2e-restart-key-1
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H "Authorization: Bearer $ADMIN" \
  -H 'Content-Type: application/json' \
  -d "{\"mode\":\"psk\",\"identity\":\"restart-id\",\"key\":\"$(hex $KEY)\"}" \
  "$API/api/v1/devices/dtls-restart/credentials")
check "PSK credentials provisioned (201)" [ "$code" = 201 ]

fifo=$LW_TMP/dtlsr.fifo
out=$LW_TMP/dtlsr.out
mkfifo "$fifo"
timeout 300 "$cli" "$LW_COAPS_PORT" restart-id "$KEY" dtls-restart hold < "$fifo" > "$out" &
clipid=$!
exec 3>"$fifo"
wait_for "$out" "register " 30 >/dev/null
check "DTLS 1.2 CID device registers (2.01)" grep -q "register 201" "$out"
for _ in $(seq 1 50); do [ "$(saved_written)" -ge 1 ] && break; sleep 0.1; done
check "its session hibernated and was written to dtls_sessions" [ "$(saved_written)" -ge 1 ]
rows=$(psql "$LW_PG_URL" -qAtc "SELECT count(*) FROM dtls_sessions WHERE endpoint = 'dtls-restart' AND cid IS NOT NULL AND length(nonce) = 12")
check "one row with its connection id" [ "$rows" = 1 ]
check "the saved state is sealed (no PSK identity in clear)" bash -c '! psql "$1" -qAtc "SELECT encode(state, '"'"'hex'"'"') FROM dtls_sessions" | grep -q "$2"' _ "$LW_PG_URL" "$(hex restart-id)"
sleep 0.3 # the registration's write-behind (50 ms batches)

check "kill -9" stop_daemon KILL
log2=$LW_TMP/dtlsr-2.log
check "daemon starts again on the same ports" restart_daemon "$log2" "${common[@]}" --set coaps.hibernate_idle=60s
check "the session was restored" grep -q '"msg":"dtls sessions restored: restored=1 ' "$log2"
echo update >&3
wait_for "$out" "update " 20 >/dev/null
check "after kill -9: Update on the old session gets 2.04" grep -qx "update 204" "$out"
check "after kill -9: no handshake" [ "$(hs_all)" = 0 ]
check "the row went when the session woke" [ "$(psql "$LW_PG_URL" -qAtc "SELECT count(*) FROM dtls_sessions")" = 0 ]

# Graceful stop with the session live (hibernate_idle=60s): exported and written at stop.
check "SIGTERM with the session live" stop_daemon TERM
check "exit status 0" [ "$LW_DAEMON_RC" = 0 ]
check "the live session was saved at stop" [ "$(psql "$LW_PG_URL" -qAtc "SELECT count(*) FROM dtls_sessions WHERE endpoint = 'dtls-restart'")" = 1 ]
log3=$LW_TMP/dtlsr-3.log
check "daemon starts a third time" restart_daemon "$log3" "${common[@]}"
check "the session was restored again" grep -q '"msg":"dtls sessions restored: restored=1 ' "$log3"
echo update >&3
for _ in $(seq 1 100); do [ "$(grep -c '^update ' "$out")" -ge 2 ] && break; sleep 0.1; done
check "after a graceful restart: Update gets 2.04" [ "$(grep '^update ' "$out" | tail -n 1)" = "update 204" ]
check "after a graceful restart: no handshake" [ "$(hs_all)" = 0 ]
check "the device is registered (API)" [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $ADMIN" "$API/api/v1/devices/dtls-restart")" = 200 ]

# Without the master key the rows do not open: skipped (the row stays).
check "SIGTERM" stop_daemon TERM
other=$LW_TMP/other.key
(umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$other")
log4=$LW_TMP/dtlsr-4.log
check "daemon with another master key starts" restart_daemon "$log4" \
  --set "api.bootstrap_token_file=$admin_tok" --set "security.master_key_file=$other"
check "a row sealed under another key is skipped" grep -q '"msg":"dtls sessions restored: restored=0 skipped=1' "$log4"
check "daemon stops" stop_daemon TERM

# Credentials deleted while the daemon was down: the restored session must not talk.
psql "$LW_PG_URL" -qAtc "DELETE FROM credentials WHERE endpoint = 'dtls-restart'" >/dev/null
log5=$LW_TMP/dtlsr-5.log
check "daemon with the right key again" restart_daemon "$log5" "${common[@]}"
check "the session was restored" grep -q '"msg":"dtls sessions restored: restored=1 ' "$log5"
echo update >&3
for _ in $(seq 1 100); do [ "$(grep -c '^update ' "$out")" -ge 3 ] && break; sleep 0.1; done
check "credentials gone: the restored session gets no answer" [ "$(grep '^update ' "$out" | tail -n 1)" = "update 0" ]
check "credentials gone: closed as unbound" [ "$(curl -s "$API/metrics" | awk '$1 ~ /^lwm2md_dtls_handshakes_total/ && $1 ~ /result="unbound"/ {s += $2} END {print s + 0}')" -ge 1 ]
echo quit >&3
exec 3>&-
wait "$clipid" 2>/dev/null
check "daemon stops cleanly" stop_daemon TERM
check "no sanitizer report in the daemon logs" bash -c '! grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$@"' _ "$LW_TMP"/dtlsr-*.log
finish
