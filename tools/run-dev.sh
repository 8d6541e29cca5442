#!/usr/bin/env bash
# `make run`: runs build/bin/lwm2md in the foreground with config/dev.conf. When no
# database.url is configured (file, conf.d, LWM2MD_DATABASE_URL or LW_RUN_ARGS --set), starts a
# private PostgreSQL 15 cluster under var/pg first and stops it again when the daemon exits.
# Ctrl-C / SIGTERM stop the daemon gracefully, then PostgreSQL: nothing is left running.
# Without a configured master key (security.master_key_file) one is generated in var/master.key.
# Extra daemon arguments: LW_RUN_ARGS="--set log.level=debug".
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bin=${BUILD:-build}/bin/lwm2md
conf=${LWM2MD_CONFIG:-config/dev.conf}
read -r -a extra <<< "${LW_RUN_ARGS:-}"
# LW_RUN_VAR relocates var/ (the e2e tests use it so a developer's own var/ is untouched).
var=$(realpath -m "${LW_RUN_VAR:-var}")
mkdir -p "$var/state"

# Development admin token for the HTTP API, written once (0600) and printed.
if [ ! -s "$var/dev-token" ]; then
  (umask 077; head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' > "$var/dev-token")
  echo "run: wrote a development admin API token to $var/dev-token"
fi
echo "run: API token (admin): $(cat "$var/dev-token")"

pg_started=0
args=(--config "$conf")
if [ -n "${LW_RUN_VAR:-}" ]; then
  args+=(--set "server.state_dir=$var/state" --set "api.bootstrap_token_file=$var/dev-token")
fi
args+=("${extra[@]}")
if "$bin" "${args[@]}" --print-config | grep -qE '^url = .*# default'; then
  url=$(bash tools/pg.sh start "$var/pg")
  pg_started=1
  echo "run: private PostgreSQL running for this session (var/pg)"
  args+=(--set "database.url=$url")
fi

# Development master key (secrets at rest in the database: device credentials, saved DTLS
# sessions), written once (0600) unless one is configured or given by systemd.
if [ -z "${CREDENTIALS_DIRECTORY:-}" ] &&
  "$bin" "${args[@]}" --print-config | grep -qE '^master_key_file = .*# default'; then
  if [ ! -s "$var/master.key" ]; then
    (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$var/master.key")
    echo "run: wrote a development master key to $var/master.key"
  fi
  chmod 600 "$var/master.key"
  args+=(--set "security.master_key_file=$var/master.key")
fi

daemon=0
cleanup() {
  trap - INT TERM EXIT
  if [ "$daemon" -ne 0 ] && kill -0 "$daemon" 2>/dev/null; then
    kill -TERM "$daemon" 2>/dev/null || true
    wait "$daemon" 2>/dev/null || true
  fi
  if [ "$pg_started" -eq 1 ]; then
    bash tools/pg.sh stop "$var/pg"
    echo "run: private PostgreSQL stopped"
  fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

"$bin" "${args[@]}" &
daemon=$!
set +e
wait "$daemon"
rc=$?
# A signal delivered to the process group also interrupts `wait`; wait for the real exit.
while kill -0 "$daemon" 2>/dev/null; do wait "$daemon"; rc=$?; done
set -e
daemon=0
exit "$rc"
