#!/usr/bin/env bash
# `make run` (tools/run-dev.sh): brings up a private PostgreSQL and the daemon, writes the dev
# token with mode 0600, and Ctrl-C (SIGINT to the process group) leaves nothing running.
source "$(dirname "$0")/lib.sh"

var=$LW_TMP/var
log=$LW_TMP/make-run.log
cd "$LW_TOP"
# A process group of its own, like a terminal's foreground job.
LW_RUN_VAR=$var LW_RUN_ARGS="--set log.format=json --set coap.listen=127.0.0.1:$(free_port u) --set coaps.listen=127.0.0.1:$(free_port u) --set api.listen=127.0.0.1:$(free_port t)" \
  BUILD=${BUILD:-build} setsid bash tools/run-dev.sh >"$log" 2>&1 &
pid=$!
check "make run reports the daemon ready" wait_for "$log" '"msg":"ready' 60
check "private PostgreSQL started under var/pg" grep -qF 'private PostgreSQL running' "$log"
check "the daemon reached that database" grep -qF '"msg":"database reachable"' "$log"
check "dev token written with mode 0600" [ "$(stat -c %a "$var/dev-token")" = 600 ]
check "dev token printed" grep -qF "API token (admin): $(cat "$var/dev-token")" "$log"
check "bootstrap token loaded by the daemon" grep -qF 'bootstrap admin token loaded' "$log"
pgdata=$(readlink -f "$var/pg")/data
pgpid=$(head -n1 "$pgdata/postmaster.pid" 2>/dev/null)
check "make run still running before Ctrl-C" kill -0 "$pid"
kill -INT -- -"$pid"   # Ctrl-C: the whole process group
for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
check "make run exited after Ctrl-C" bash -c "! kill -0 $pid 2>/dev/null"
check "daemon stopped gracefully" grep -qF '"msg":"stopped"' "$log"
check "private PostgreSQL stopped" bash -c "[ -n '$pgpid' ] && ! kill -0 '$pgpid' 2>/dev/null"
check "no process of the group is left" bash -c "! pgrep -g $pid >/dev/null"
