#!/usr/bin/env bash
# Dependency bootstrap for lwm2md (called by `make deps`; idempotent, quick when done).
#  1. Installs the Debian packages the build and the tests need when they are missing
#     (as root; otherwise prints the exact apt-get command and stops).
#  2. Builds wolfSSL from Debian's *source* package with the features LwM2M needs
#     (static PSK, DTLS 1.3, Connection ID, RPK, session export) into .deps/wolfssl.
#     apt is given a private source list and lists directory; the system's apt
#     configuration is never edited. Facts: docs/dependencies.md.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
deps_dir="$top/.deps"
wolf_prefix="$deps_dir/wolfssl"
wolf_min="5.8.0"

# Build dependencies (enough for `make all`; the container build uses --build-only).
packages=(
  build-essential pkg-config autoconf automake libtool dpkg-dev xz-utils ca-certificates curl
  libuv1-dev libcbor-dev libpq-dev check libjansson-dev node-llhttp libinih-dev libexpat1-dev
  libsystemd-dev libcurl4-openssl-dev
)
# Test and development tools: PostgreSQL server for `make run` and e2e, libcoap's clients as
# independent peers, clang/libFuzzer, clang-format, valgrind, systemd-analyze, python3-yaml.
if [ "${1:-}" != "--build-only" ]; then
  packages+=(postgresql-15 postgresql-client-15 libcoap3-bin clang llvm libclang-rt-14-dev
             clang-format valgrind procps iproute2 systemd python3-yaml)
fi

say() { printf 'deps: %s\n' "$*" >&2; }

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    say "missing Debian packages: ${missing[*]}"
    say "run as root:  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
    exit 1
  fi
  say "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---- wolfSSL -------------------------------------------------------------------------------
stamp="$wolf_prefix/.lwm2md-built"
# The feature set LwM2M needs. ALWAYS_VERIFY_CB + KEEP_PEER_CERT let lib/dtls see every client
# certificate / raw public key (RPK binding to a device, intermediates checked by our own store).
wolf_configure=(--enable-static --disable-shared --disable-examples
  --disable-crypttests --disable-benchmark --enable-dtls --enable-dtls13 --enable-dtlscid
  --enable-dtls-mtu --enable-psk --enable-aesccm --enable-hkdf --enable-rpk --enable-sessionexport
  --enable-session-ticket --enable-tls13 --enable-ecc --enable-supportedcurves --enable-sp
  --enable-sp-asm --enable-aesni --enable-intelasm --enable-certgen --enable-keygen
  --enable-secure-renegotiation-info --enable-aesgcm --enable-sha512
  "CPPFLAGS=-DWOLFSSL_STATIC_PSK -DDTLS_CID_MAX_SIZE=8 -DWOLFSSL_ALWAYS_VERIFY_CB -DKEEP_PEER_CERT")
want_stamp=$(printf '%s\n' "${wolf_configure[@]}" | sha256sum | cut -c1-16)
want_defines=(WOLFSSL_STATIC_PSK WOLFSSL_DTLS WOLFSSL_DTLS13 WOLFSSL_DTLS_CID WOLFSSL_SESSION_EXPORT HAVE_RPK)

check_wolf() { # [prefix]
  local opts="${1:-$wolf_prefix}/include/wolfssl/options.h" d ok=0
  [ -f "$opts" ] || return 1
  for d in "${want_defines[@]}"; do
    if ! grep -q "^#define $d\b" "$opts"; then
      say "wolfSSL in $wolf_prefix lacks $d (needed for LwM2M: static PSK CCM_8, DTLS 1.3, CID, session export, RPK)"
      ok=1
    fi
  done
  return $ok
}

if [ -f "$stamp" ] && [ "$(sed -n 2p "$stamp")" = "$want_stamp" ] && check_wolf; then
  exit 0
fi

mkdir -p "$deps_dir/apt/lists/partial" "$deps_dir/apt/etc" "$deps_dir/src"
# Use the mirror this machine is already configured with; never write it into the repository.
mirror=""
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  mirror=$(awk '/^URIs:/ {print $2; exit}' "$f")
  [ -n "$mirror" ] && break
done
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '$1=="deb" {for(i=2;i<=NF;i++) if ($i ~ /^(https?|file):/) {print $i; exit}}' /etc/apt/sources.list)
fi
[ -n "$mirror" ] || { say "no Debian mirror found in /etc/apt/sources.list{,.d}"; exit 1; }
mirror=${mirror%-security}
printf 'Types: deb-src\nURIs: %s\nSuites: forky sid trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
  "$mirror" > "$deps_dir/apt/etc/src.sources"
aptopts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$deps_dir/apt/etc"
         -o "Dir::State::Lists=$deps_dir/apt/lists" -o "APT::Sandbox::User=root")

cd "$deps_dir/src"
shopt -s nullglob
origs=(wolfssl_*.orig.tar.gz wolfssl_*.orig.tar.xz wolfssl_*.orig.tar.bz2)
if ((${#origs[@]} == 0)); then
  say "fetching wolfSSL source package (private apt config under .deps/apt)"
  apt-get "${aptopts[@]}" -qq update
  ver=$(apt-cache "${aptopts[@]}" showsrc wolfssl 2>/dev/null | awk '/^Version:/ {print $2}' | sort -V | tail -n1)
  [ -n "$ver" ] || { say "no wolfssl source package found in forky/sid/trixie"; exit 1; }
  upstream=${ver#*:}; upstream=${upstream%-*}; upstream=${upstream%%+*}
  if dpkg --compare-versions "$upstream" lt "$wolf_min"; then
    say "newest wolfssl source is $ver; need >= $wolf_min (DTLS 1.2 CID record parsing)"; exit 1
  fi
  # Only the orig tarball is needed (the Debian packaging files of a revision are sometimes
  # absent from the mirror). apt verifies what it downloads; we also check the orig tarball's
  # SHA-256 against the signed index ourselves, and fetch it directly if apt did not.
  apt-get "${aptopts[@]}" -qq source --download-only "wolfssl=$ver" >/dev/null 2>&1 || true
  stanza=$(apt-cache "${aptopts[@]}" showsrc wolfssl | awk -v v="$ver" '
    /^Package:/ {keep=0} /^Version:/ {keep=($2==v)} keep {print}')
  path=$(printf '%s\n' "$stanza" | awk '/^Directory:/ {print $2; exit}')
  orig=$(printf '%s\n' "$stanza" | awk '/^Checksums-Sha256:/ {f=1; next} /^[^ ]/ {f=0} f && /orig\.tar\.[a-z0-9]+$/ {print $1, $3; exit}')
  sum=${orig% *}; file=${orig#* }
  [ -n "$path" ] && [ -n "$sum" ] && [ -n "$file" ] || { say "cannot locate the wolfssl $ver orig tarball in the index"; exit 1; }
  if [ ! -f "$file" ]; then
    curl -fsSL -o "$file" "$mirror/$path/$file" || { say "download of $file failed"; rm -f "$file"; exit 1; }
  fi
  echo "$sum  $file" | sha256sum -c --quiet - || { say "checksum mismatch for $file"; rm -f "$file"; exit 1; }
  rm -f wolfssl_*.asc wolfssl_*.dsc
fi
origs=(wolfssl_*.orig.tar.gz wolfssl_*.orig.tar.xz wolfssl_*.orig.tar.bz2)
tarball=$(printf '%s\n' "${origs[@]}" | sort -V | tail -n1)
srcdir="$deps_dir/src/wolfssl-build"
rm -rf "$srcdir"; mkdir -p "$srcdir"
tar -xf "$tarball" -C "$srcdir" --strip-components=1
cd "$srcdir"
say "building wolfSSL from $tarball (about a minute)"
{
  ./autogen.sh
  ./configure --prefix="$wolf_prefix" "${wolf_configure[@]}"
  make -j"$(nproc)"
  rm -rf "$deps_dir/stage"
  make install DESTDIR="$deps_dir/stage"
} > "$deps_dir/wolfssl-build.log" 2>&1 || { say "wolfSSL build failed; see .deps/wolfssl-build.log"; tail -n 30 "$deps_dir/wolfssl-build.log" >&2; exit 1; }
staged="$deps_dir/stage$wolf_prefix"
check_wolf "$staged" || { say "refusing this wolfSSL build"; exit 1; }
printf '%s\n%s\n' "$tarball" "$want_stamp" > "$staged/.lwm2md-built"
# Swap the new build in with two renames so a concurrent build never sees a half-installed tree.
rm -rf "$wolf_prefix.old"
[ -d "$wolf_prefix" ] && mv "$wolf_prefix" "$wolf_prefix.old"
mv "$staged" "$wolf_prefix"
rm -rf "$wolf_prefix.old" "$deps_dir/stage"
rm -rf "$srcdir"
say "wolfSSL ready in .deps/wolfssl"
