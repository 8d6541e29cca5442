#!/usr/bin/env bash
# Static checks run by `make test`: formatting, configuration docs in step with the code, systemd
# unit verification, container files. Prints "lint: N passed, N failed".
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bin=${BUILD:-build}/bin/lwm2md
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "  ok   - $*"; }
ko() { fail=$((fail + 1)); echo "  FAIL - $*"; }

if make --no-print-directory format-check >/tmp/lw-format.$$ 2>&1; then ok "clang-format clean"; else
  ko "clang-format: run 'make format'"; head -n 20 /tmp/lw-format.$$; fi
rm -f /tmp/lw-format.$$

# Every declared key is documented in the example and the reference, and nothing else is.
keys=$("$bin" --print-config | awk '/^\[/ {s=substr($0,2,length($0)-2)} / = / {print s"."$1}' | sort)
ex=$(awk '/^\[/ {s=substr($0,2,length($0)-2)} /^[a-z_]+ *=/ {sub(/ *=.*/,""); print s"."$0}' config/lwm2md.conf.example | sort)
doc=$(awk '/^## \[/ {s=substr($2,2,length($2)-2)} /^\| `[a-z_]+` \|/ {k=$2; gsub(/`/,"",k); print s"."k}' docs/configuration.md | sort)
if [ "$keys" = "$ex" ]; then ok "config/lwm2md.conf.example lists every key"; else
  ko "config/lwm2md.conf.example differs from the declared keys:"; diff <(echo "$keys") <(echo "$ex") | sed 's/^/    /'; fi
if [ "$keys" = "$doc" ]; then ok "docs/configuration.md documents every key"; else
  ko "docs/configuration.md differs from the declared keys:"; diff <(echo "$keys") <(echo "$doc") | sed 's/^/    /'; fi
# Defaults in the example equal the built-in defaults.
defaults=$("$bin" --print-config | awk '/^\[/ {s=substr($0,2,length($0)-2)} / = / {line=$0; sub(/  # .*/,"",line); print s"."line}' | sed 's/ *$//' | sort)
exdefs=$(awk '/^\[/ {s=substr($0,2,length($0)-2)} /^[a-z_]+ *=/ {print s"."$0}' config/lwm2md.conf.example | sed 's/ *$//' | sort)
if [ "$defaults" = "$exdefs" ]; then ok "example values are the built-in defaults"; else
  ko "example values differ from built-in defaults:"; diff <(echo "$defaults") <(echo "$exdefs") | sed 's/^/    /'; fi

for c in config/*.conf config/*.example; do
  if "$bin" --check-config --config "$c" >/dev/null 2>&1; then ok "$c is valid"; else ko "$c is invalid"; "$bin" --check-config --config "$c"; fi
done

# systemd: verify the unit against the built binary.
if command -v systemd-analyze >/dev/null; then
  d=$(mktemp -d)
  sed "s|/usr/local/bin/lwm2md|$top/$bin|g" systemd/lwm2md.service > "$d/lwm2md.service"
  out=$(systemd-analyze verify "$d/lwm2md.service" 2>&1 | grep -v -e 'Failed to load credential' -e 'Cannot add dependency job' -e 'Unit .* not found' )
  if [ -z "$out" ]; then ok "systemd-analyze verify lwm2md.service"; else ko "systemd-analyze verify:"; echo "$out" | sed 's/^/    /'; fi
  rm -rf "$d"
else
  echo "  SKIP - systemd-analyze not installed"
fi
grep -q '^u lwm2md ' systemd/lwm2md.sysusers && ok "sysusers declares user lwm2md" || ko "sysusers"
grep -q '^d /var/lib/lwm2md ' systemd/lwm2md.tmpfiles && ok "tmpfiles creates the state dir" || ko "tmpfiles"

# make install stages every file where the docs say.
stage=$(mktemp -d)
if make --no-print-directory install BUILD="${BUILD:-build}" DESTDIR="$stage" PREFIX=/usr >/dev/null 2>&1 \
   && [ -x "$stage/usr/bin/lwm2md" ] && [ -f "$stage/etc/lwm2md/lwm2md.conf.example" ] \
   && [ -f "$stage/usr/lib/systemd/system/lwm2md.service" ] && [ -f "$stage/usr/lib/sysusers.d/lwm2md.conf" ] \
   && [ -f "$stage/usr/lib/tmpfiles.d/lwm2md.conf" ] && [ -d "$stage/usr/share/lwm2md/schema" ]; then
  ok "make install DESTDIR=... PREFIX=/usr stages binary, config, systemd files, schema"
else
  ko "make install staging"; (cd "$stage" && find . | sed 's/^/    /')
fi
rm -rf "$stage"

# Container files: what can be checked without a Docker engine.
df=docker/Dockerfile
grep -q 'LWM2MD_DATABASE_SCHEMA_DIR=/usr/share/lwm2md/schema' $df && grep -q 'PREFIX=/usr' $df \
  && ok "Dockerfile: the schema directory matches the image's install prefix" || ko "Dockerfile schema_dir vs PREFIX"
grep -q '^FROM debian:bookworm-slim AS build' $df && grep -q '^USER lwm2md' $df && grep -q '^HEALTHCHECK' $df \
  && ok "Dockerfile: bookworm multi-stage, non-root, healthcheck" || ko "Dockerfile structure"
py=python3; [ -x /usr/bin/python3 ] && py=/usr/bin/python3
if $py -c 'import yaml' 2>/dev/null; then
  $py - docker/compose.yml <<'PY' && ok "compose.yml parses; lwm2md waits for a healthy postgres" || ko "compose.yml"
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
s = c["services"]
assert s["lwm2md"]["depends_on"]["postgres"]["condition"] == "service_healthy"
assert "pg_isready" in s["postgres"]["healthcheck"]["test"]
assert any("/udp" in p for p in s["lwm2md"]["ports"])
PY
else
  echo "  SKIP - python3 yaml not available for compose.yml"
fi

echo "lint: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
