#!/usr/bin/env bash
# systemd integration without systemd: a unix datagram socket stands in for the service manager
# (NOTIFY_SOCKET), so READY, the watchdog pings (WATCHDOG_USEC), RELOADING and STOPPING are
# observed as the daemon sends them.
source "$(dirname "$0")/lib.sh"

sock=$LW_TMP/notify.sock
msgs=$LW_TMP/notify.log
python3 - "$sock" "$msgs" <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(0.2)
end = time.time() + 40
with open(sys.argv[2], "a", buffering=1) as out:
    while time.time() < end:
        try:
            data = s.recv(4096).decode()
        except socket.timeout:
            continue
        for line in data.split("\n"):
            if line:
                out.write("%.3f %s\n" % (time.time(), line))
PY
rx=$!
for _ in $(seq 1 50); do [ -S "$sock" ] && break; sleep 0.1; done

log=$LW_TMP/daemon-systemd.log
NOTIFY_SOCKET=$sock WATCHDOG_USEC=400000 start_daemon "$log"
check "READY=1 sent once serving" wait_for "$msgs" "READY=1" 10
sleep 1.5
n=$(grep -c 'WATCHDOG=1' "$msgs")
check "watchdog pinged every half interval while shards answer ($n pings in ~1.5 s)" [ "$n" -ge 3 ]
check "watchdog interval logged" grep -qF 'systemd watchdog every 200 ms' "$log"
kill -HUP "$LW_DAEMON_PID"
check "RELOADING=1 on SIGHUP" wait_for "$msgs" "RELOADING=1" 10
check "READY=1 again after the reload" bash -c '[ "$(grep -c "READY=1" "$1")" -ge 2 ]' _ "$msgs"
stop_daemon TERM
check "STOPPING=1 on SIGTERM" grep -qF "STOPPING=1" "$msgs"
check "clean exit under the watchdog" [ "$LW_DAEMON_RC" -eq 0 ]

# Without NOTIFY_SOCKET nothing is sent and the watchdog stays off.
: > "$msgs"
unset NOTIFY_SOCKET WATCHDOG_USEC WATCHDOG_PID
start_daemon "$LW_TMP/daemon-nosd.log"
sleep 0.5
stop_daemon TERM
check "no notifications without NOTIFY_SOCKET" [ ! -s "$msgs" ]
check "no watchdog without WATCHDOG_USEC" bash -c '! grep -q "systemd watchdog" "$1"' _ "$LW_TMP/daemon-nosd.log"
kill "$rx" 2>/dev/null
wait "$rx" 2>/dev/null || true
