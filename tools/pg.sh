#!/usr/bin/env bash
# Private PostgreSQL 15 cluster for development and tests (used by `make run` and tests/e2e).
#   tools/pg.sh start DIR   -> initdb DIR if needed, start on 127.0.0.1:<free port>, unix socket in
#                              DIR/run, create database "lwm2md"; prints the connection URL
#   tools/pg.sh stop DIR    -> fast shutdown
#   tools/pg.sh url DIR     -> prints the URL of a running cluster
# The cluster trusts loopback connections from user "lwm2md": development and tests only.
# initdb/postgres refuse to run as root; as root the cluster runs as the "postgres" user, and lives
# under /var/tmp (linked from DIR) when DIR's parents are not traversable by that user.
set -euo pipefail

cmd=${1:?usage: pg.sh start|stop|url DIR}
dir=${2:?usage: pg.sh start|stop|url DIR}
pgbin=/usr/lib/postgresql/15/bin
[ -x "$pgbin/initdb" ] || { echo "pg.sh: PostgreSQL 15 server binaries not found in $pgbin (run make deps)" >&2; exit 1; }

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

data_dir() {
  if [ -L "$dir" ]; then readlink -f "$dir"; else echo "$dir"; fi
}

case "$cmd" in
start)
  mkdir -p "$(dirname "$dir")"
  if [ ! -e "$dir" ]; then
    if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$(cd "$(dirname "$dir")" && pwd)"; then
      real=$(mktemp -d /var/tmp/lwm2md-pg.XXXXXX)
      ln -s "$real" "$dir"
      echo "pg.sh: $(dirname "$dir") is not reachable by user postgres; cluster kept in $real (linked from $dir)" >&2
    else
      mkdir -p "$dir"
    fi
  fi
  d=$(data_dir)
  [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$d"
  chmod 700 "$d"
  if [ ! -f "$d/data/PG_VERSION" ]; then
    as_pg mkdir -p "$d/data" "$d/run"
    as_pg "$pgbin/initdb" -D "$d/data" -U lwm2md --auth=trust -E UTF8 --locale=C.UTF-8 >"$d/initdb.log" 2>&1 \
      || { cat "$d/initdb.log" >&2; exit 1; }
  fi
  if as_pg "$pgbin/pg_ctl" -D "$d/data" status >/dev/null 2>&1; then
    port=$(cat "$d/port")
  else
    # Pick a free port and start; another cluster (a concurrent test run) may take the same port
    # between the check and the bind, so a start that fails to bind moves on to the next port.
    port=""
    for p in $(seq 55432 55532); do
      ss -Hltn "sport = :$p" | grep -q . && continue
      echo "$p" | as_pg tee "$d/port" >/dev/null
      : | as_pg tee "$d/postgres.log" >/dev/null
      if as_pg "$pgbin/pg_ctl" -D "$d/data" -l "$d/postgres.log" -w -t 60 \
          -o "-c listen_addresses=127.0.0.1 -p $p -k $d/run -c fsync=on -c max_connections=200" \
          start >/dev/null; then
        port=$p; break
      fi
      grep -q -i -e "already in use" -e "could not bind" -e "could not create any TCP/IP sockets" \
        "$d/postgres.log" || { tail -n 20 "$d/postgres.log" >&2; exit 1; }
    done
    [ -n "$port" ] || { echo "pg.sh: no free port in 55432-55532" >&2; exit 1; }
  fi
  if ! as_pg "$pgbin/../bin/psql" -h 127.0.0.1 -p "$port" -U lwm2md -d postgres -tAc \
       "select 1 from pg_database where datname='lwm2md'" | grep -q 1; then
    as_pg "$pgbin/createdb" -h 127.0.0.1 -p "$port" -U lwm2md lwm2md
  fi
  echo "postgresql://lwm2md@127.0.0.1:$port/lwm2md"
  ;;
stop)
  d=$(data_dir)
  [ -d "$d/data" ] || exit 0
  pid=$(head -n1 "$d/data/postmaster.pid" 2>/dev/null || true)
  as_pg "$pgbin/pg_ctl" -D "$d/data" -m fast -w stop >/dev/null 2>&1 || true
  # pg_ctl returns early when the postmaster was already shutting down (e.g. it got the
  # terminal's SIGINT too): wait for the process itself.
  if [ -n "$pid" ]; then
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  ;;
url)
  d=$(data_dir)
  echo "postgresql://lwm2md@127.0.0.1:$(cat "$d/port")/lwm2md"
  ;;
*) echo "usage: pg.sh start|stop|url DIR" >&2; exit 2 ;;
esac
