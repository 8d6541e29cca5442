#!/usr/bin/env bash
# End-to-end test runner: starts a private PostgreSQL (tools/pg.sh, as `make run` does), then runs
# every tests/e2e/test_*.sh against the real daemon. Prints "N passed, N failed" and exits non-zero
# on any failure. E2E_ONLY=name runs one file (E2E_ONLY="a b": those files). E2E_KEEP=1 keeps the
# scratch directory (daemon logs, fleet reports) when a test failed.
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD:-build}
export LW_TOP=$top
export LW_BIN=$top/$build/bin/lwm2md
export LW_FLEET=$top/$build/bin/lwm2m-fleet
export LW_TMP
LW_TMP=$(mktemp -d /tmp/lwm2md-e2e.XXXXXX)
chmod 755 "$LW_TMP"
pgdir=$top/$build/e2e/pg

cleanup() {
  bash "$top/tools/pg.sh" stop "$pgdir" >/dev/null 2>&1 || true
  if [ "${E2E_KEEP:-}" = 1 ] && [ "${failed:-0}" != 0 ]; then
    echo "e2e: scratch kept in $LW_TMP"
  else
    rm -rf "$LW_TMP"
  fi
}
trap cleanup EXIT

[ -x "$LW_BIN" ] || { echo "e2e: $LW_BIN missing (make all)"; exit 1; }
mkdir -p "$top/$build/e2e"
base_url=$(bash "$top/tools/pg.sh" start "$pgdir") || { echo "e2e: cannot start PostgreSQL"; exit 1; }
LW_PG_URL=$base_url
export LW_PG_URL
echo "e2e: PostgreSQL at ${LW_PG_URL%%@*}@...; scratch $LW_TMP"

passed=0 failed=0
for t in "$top"/tests/e2e/test_*.sh; do
  name=$(basename "$t" .sh)
  if [ -n "${E2E_ONLY:-}" ]; then
    want=0
    for o in $E2E_ONLY; do [ "$name" = "$o" ] || [ "$name" = "test_$o" ] && want=1; done
    [ $want = 1 ] || continue
  fi
  echo "e2e: $name"
  start=$(date +%s)
  # Each test file gets a database of its own, created empty: persistence restores what a
  # previous test left behind, so a shared database would couple the tests to their order.
  db=lw_${name#test_}
  psql "$base_url" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null &&
    psql "$base_url" -qAtc "CREATE DATABASE $db" >/dev/null ||
    { echo "  FAIL - cannot create database $db"; failed=$((failed + 1)); continue; }
  export LW_PG_URL=${base_url%/*}/$db
  bash "$t"
  rc=$?
  res=$LW_TMP/result.$name.sh
  if [ -f "$res" ]; then
    read -r p f < "$res"
  else
    p=0 f=1; echo "  FAIL - $name did not finish (exit $rc)"
  fi
  [ "$rc" -eq 0 ] || [ "$f" -gt 0 ] || { f=$((f + 1)); echo "  FAIL - $name exited $rc"; }
  passed=$((passed + p)); failed=$((failed + f))
  echo "e2e: $name: $p passed, $f failed ($(( $(date +%s) - start ))s)"
done
echo "e2e: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
