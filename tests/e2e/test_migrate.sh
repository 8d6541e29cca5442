#!/usr/bin/env bash
# Schema migrations (server/store/migrate.c) against the harness's PostgreSQL, each case in its own
# fresh database: `lwm2md migrate [--status]` from empty, re-run idempotent, checksums recorded,
# a tampered applied migration refused (CLI and daemon), a recorded migration missing from the
# directory refused, migrate = off with a pending migration refuses to start (and starts once
# migrated), the daemon migrates an empty database at start, tables written by the earlier
# checksum-less runner adopted, two concurrent runners serialised by the advisory lock.
source "$(dirname "$0")/lib.sh"

conf=$LW_TOP/config/test.conf
base=${LW_PG_URL%/*}
# newdb: creates an empty database, prints its URL (runs in $(...): the name must not rely on
# a counter kept in this shell).
newdb() {
  local name="mig_$$_$(date +%s%N)"
  psql -q "$LW_PG_URL" -c "CREATE DATABASE $name" >/dev/null || return 1
  echo "$base/$name"
}
mig() { # mig URL [args...]: lwm2md migrate with test.conf against URL (run from the repo root)
  local url=$1; shift
  (cd "$LW_TOP" && "$LW_BIN" --config "$conf" --set "database.url=$url" "$@")
}
q() { psql -tAq "$1" -c "$2"; }
# run_daemon_once URL LOG [args...]: runs the daemon in the foreground for at most 10 s, exit
# status in $RC (a daemon that starts is stopped with SIGTERM once ready).
run_daemon_once() {
  local url=$1 log=$2; shift 2
  (cd "$LW_TOP" && exec "$LW_BIN" --config "$conf" --set "database.url=$url" \
    --set "coap.listen=127.0.0.1:$(free_port u)" --set "coaps.listen=127.0.0.1:$(free_port u)" \
    --set "api.listen=127.0.0.1:$(free_port t)" --set "server.state_dir=$LW_TMP/state" "$@") \
    >"$log" 2>&1 &
  local pid=$! i
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    grep -qF '"msg":"ready' "$log" 2>/dev/null && { kill -TERM "$pid"; break; }
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && sleep 2 && kill -KILL "$pid" 2>/dev/null
  wait "$pid"
  RC=$?
}
nfiles=$(ls "$LW_TOP"/schema/[0-9]*_*.sql | wc -l)

# ---- from empty, then idempotent
U=$(newdb)
out=$(mig "$U" migrate --status); rc=$?
check "status on an empty database: exit 3 (pending)" [ "$rc" = 3 ]
check "status lists every file as pending" [ "$(grep -c '^pending ' <<< "$out")" = "$nfiles" ]
check "status changes nothing" [ "$(q "$U" "select to_regclass('schema_migrations') is null")" = t ]
out=$(mig "$U" migrate); rc=$?
check "migrate from empty: exit 0" [ "$rc" = 0 ]
check "migrate reports every file applied" grep -q "$nfiles applied now" <<< "$out"
check "schema_migrations has one row per file" [ "$(q "$U" "select count(*) from schema_migrations")" = "$nfiles" ]
check "recorded checksums are the files' SHA-256" bash -c '
  for f in "$1"/schema/[0-9]*_*.sql; do
    want=$(sha256sum "$f" | cut -d" " -f1)
    got=$(psql -tAq "$2" -c "select checksum from schema_migrations where version = '\''$(basename "$f")'\''")
    [ "$want" = "$got" ] || exit 1
  done' _ "$LW_TOP" "$U"
check "core tables exist" [ "$(q "$U" "select count(*) from pg_tables where tablename in ('devices','credentials','registrations','profiles','observations','operations','operations_history','events','dtls_sessions','webhook_subscriptions','api_tokens','audit_log')")" = 12 ]
check "telemetry is partitioned by range" [ "$(q "$U" "select partstrat from pg_partitioned_table where partrelid = 'telemetry'::regclass")" = r ]
out=$(mig "$U" migrate); rc=$?
check "re-run: exit 0, nothing applied" bash -c '[ "$1" = 0 ] && grep -q " 0 applied now" <<< "$2"' _ "$rc" "$out"
check "re-run: still one row per file" [ "$(q "$U" "select count(*) from schema_migrations")" = "$nfiles" ]
out=$(mig "$U" migrate --status); rc=$?
check "status when up to date: exit 0, every file applied" bash -c '[ "$1" = 0 ] && [ "$(grep -c "^applied " <<< "$2")" = "$3" ]' _ "$rc" "$out" "$nfiles"

# ---- tampered applied migration
tdir=$LW_TMP/schema-tampered
rm -rf "$tdir"; cp -r "$LW_TOP/schema" "$tdir"
echo "-- edited after release" >> "$tdir/001_init.sql"
err=$(mig "$U" --set "database.schema_dir=$tdir" migrate 2>&1); rc=$?
check "tampered migration: migrate exits 1" [ "$rc" = 1 ]
check "tampered migration: the message names the file and the checksum" grep -q "001_init.sql was edited after it was applied (checksum mismatch)" <<< "$err"
out=$(mig "$U" --set "database.schema_dir=$tdir" migrate --status 2>&1)
check "tampered migration: status marks it EDITED" grep -q "^EDITED   001_init.sql" <<< "$out"
run_daemon_once "$U" "$LW_TMP/mig-tampered.log" --set "database.schema_dir=$tdir"
check "tampered migration: the daemon refuses to start (exit 1)" [ "$RC" = 1 ]
check "tampered migration: the daemon says why" grep -q "refusing to start: schema migration failed: migration 001_init.sql was edited" "$LW_TMP/mig-tampered.log"
check "tampered migration: refused before the shards start" bash -c '! grep -q "\"msg\":\"ready" "$1"' _ "$LW_TMP/mig-tampered.log"

# ---- a recorded migration the directory does not have (older build)
odir=$LW_TMP/schema-old
rm -rf "$odir"; mkdir -p "$odir"; cp "$LW_TOP/schema/001_init.sql" "$odir/"
err=$(mig "$U" --set "database.schema_dir=$odir" migrate 2>&1); rc=$?
check "older build than the database: migrate refuses" bash -c '[ "$1" = 1 ] && grep -q "_.*\\.sql is applied but not in the schema directory" <<< "$2"' _ "$rc" "$err"

# ---- migrate = off
U2=$(newdb)
mig "$U2" --set "database.schema_dir=$odir" migrate >/dev/null
run_daemon_once "$U2" "$LW_TMP/mig-off.log" --set database.migrate=off
check "migrate = off with a pending migration: refuses to start (exit 1)" [ "$RC" = 1 ]
check "migrate = off: the message says what to do" grep -qF "refusing to start: $((nfiles - 1)) schema migration(s) pending and database.migrate = off: run \`lwm2md migrate\`" "$LW_TMP/mig-off.log"
check "migrate = off: nothing was applied" [ "$(q "$U2" "select count(*) from schema_migrations")" = 1 ]
mig "$U2" migrate >/dev/null
run_daemon_once "$U2" "$LW_TMP/mig-off2.log" --set database.migrate=off
check "migrate = off, schema up to date: starts and stops cleanly" bash -c '[ "$1" = 0 ] && grep -q "\"msg\":\"ready" "$2"' _ "$RC" "$LW_TMP/mig-off2.log"

# ---- the daemon migrates an empty database at start (migrate = auto, the default)
U3=$(newdb)
run_daemon_once "$U3" "$LW_TMP/mig-auto.log"
check "migrate = auto: the daemon starts on an empty database" [ "$RC" = 0 ]
check "migrate = auto: every migration applied at start" [ "$(q "$U3" "select count(*) from schema_migrations where checksum is not null")" = "$nfiles" ]
check "migrate = auto: logged" grep -q "schema migrated: $nfiles migration(s) applied" "$LW_TMP/mig-auto.log"

# ---- tables of the earlier runner (no checksum column) are adopted
U4=$(newdb)
psql -q "$U4" -v ON_ERROR_STOP=1 -f "$LW_TOP/schema/001_init.sql" \
  -c "CREATE TABLE schema_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())" \
  -c "INSERT INTO schema_migrations (version) VALUES ('001_init.sql')" >/dev/null
out=$(mig "$U4" migrate); rc=$?
check "checksum-less table: migrate adopts it and applies the rest" bash -c '[ "$1" = 0 ] && grep -q "$2 applied now" <<< "$3"' _ "$rc" "$((nfiles - 1))" "$out"
check "checksum-less table: the old row got its checksum" [ "$(q "$U4" "select checksum from schema_migrations where version = '001_init.sql'")" = "$(sha256sum "$LW_TOP/schema/001_init.sql" | cut -d' ' -f1)" ]

# ---- concurrent runners
U5=$(newdb)
for i in 1 2 3; do mig "$U5" migrate >"$LW_TMP/mig-conc.$i" 2>&1 & done
conc_ok=0
for j in 1 2 3; do wait -n && conc_ok=$((conc_ok + 1)); done
check "three concurrent migrate runs all succeed" [ "$conc_ok" = 3 ]
check "concurrent runs applied each migration once" bash -c '[ "$(cat "$1".1 "$1".2 "$1".3 | grep -o "[0-9]* applied now" | cut -d" " -f1 | paste -sd+ | bc)" = "$2" ]' _ "$LW_TMP/mig-conc" "$nfiles"

# ---- errors
err=$(mig "$U" --set "database.schema_dir=$LW_TMP/nowhere" migrate 2>&1); rc=$?
check "missing schema directory: exit 1 with the path" bash -c '[ "$1" = 1 ] && grep -q "cannot read schema directory .*nowhere" <<< "$2"' _ "$rc" "$err"
err=$("$LW_BIN" --set "database.url=" migrate 2>&1); rc=$?
check "no database.url: exit 1" bash -c '[ "$1" = 1 ] && grep -q "database.url is not set" <<< "$2"' _ "$rc" "$err"
err=$(mig "$U" migrate --bogus 2>&1); rc=$?
check "unknown option: exit 2" [ "$rc" = 2 ]
run_daemon_once "$U" "$LW_TMP/mig-nodir.log" --set "database.schema_dir=$LW_TMP/nowhere"
check "daemon without schema files: starts, warns that the check was skipped" bash -c '[ "$1" = 0 ] && grep -q "schema check skipped: cannot read schema directory" "$2"' _ "$RC" "$LW_TMP/mig-nodir.log"
U6=$(newdb)
run_daemon_once "$U6" "$LW_TMP/mig-nodir-empty.log" --set "database.schema_dir=$LW_TMP/nowhere"
check "daemon without schema files on an empty database: refuses to start, says what to do" bash -c '[ "$1" = 1 ] && grep -q "refusing to start: the database has no lwm2md schema.*database.schema_dir" "$2"' _ "$RC" "$LW_TMP/mig-nodir-empty.log"
