#!/usr/bin/env bash
# Debian 12's Node.js 18 (the `nodejs` package of bookworm-security), unpacked
# into a cache directory next to the machine's own node, which stays as it is.
# Prints the path of a `node` that runs it; runtime/test/cli/node18.test.ts
# runs the built bundle with it.
#
#   scripts/node18.sh            -> /work/main/runtime/.cache/node18/bin/node
#   NODE18_CACHE=/var/cache/mailinfra/node18 scripts/node18.sh
#
# Idempotent: once the cache holds a binary that answers `--version`, nothing
# is downloaded. What the unpacked binary needs from the system:
#  - shared libraries: libnode108 links libc-ares2, libuv1, libicu72,
#    libnghttp2-14, libbrotli1, libssl3, zlib1g (all but c-ares come with the
#    machine's other packages);
#  - Debian builds node with some builtins "externalized" at fixed paths under
#    /usr/share/nodejs (node-cjs-module-lexer, node-undici, node-acorn): node
#    aborts at start without them.
# These are listed in .ci/packages.txt (scripts/prereqs.sh installs them); as
# root this script installs whichever is missing itself.
set -euo pipefail

VERSION="18.20.4+dfsg-1~deb12u3"
WANT="v18.20.4"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${NODE18_CACHE:-$ROOT/runtime/.cache/node18}"
WRAPPER="$CACHE/bin/node"
SYSTEM_DEPS=(libc-ares2 libuv1 libicu72 libnghttp2-14 libbrotli1 libssl3 node-cjs-module-lexer node-undici node-acorn)

works() {
  [ -x "$WRAPPER" ] && [ "$("$WRAPPER" --version 2>/dev/null)" = "$WANT" ]
}

if works; then
  echo "$WRAPPER"
  exit 0
fi

# One unpacking at a time (tests of several workers may call this at once).
mkdir -p "$(dirname "$CACHE")"
exec 9>"$(dirname "$CACHE")/.node18.lock"
flock 9
if works; then
  echo "$WRAPPER"
  exit 0
fi

missing=()
for p in "${SYSTEM_DEPS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "node18.sh: missing Debian packages; as root run: apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  echo "node18.sh: installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
    { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; }
fi

# Unpack into a fresh directory, then move it into place: an interrupted run
# never leaves a half-unpacked cache behind.
work="$(mktemp -d "$(dirname "$CACHE")/.node18.XXXXXX")"
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
(
  cd "$work"
  # apt's _apt user cannot write into a root-owned mktemp dir; that is fine (warning only).
  apt-get download -qq "nodejs=$VERSION" "libnode108=$VERSION" 2>/dev/null ||
    { apt-get update -qq && apt-get download -qq "nodejs=$VERSION" "libnode108=$VERSION"; }
  for deb in ./*.deb; do dpkg-deb -x "$deb" unpacked; done
  rm -f ./*.deb
) >&2
# Keep only the binary and its library: the packages' docs, man pages and
# bundled type definitions are no business of the repo's linters.
bin="$work/unpacked/usr/bin/node"
libnode="$(find "$work/unpacked/usr/lib" -name libnode.so.108 | head -n 1)"
[ -x "$bin" ] && [ -n "$libnode" ] || { echo "node18.sh: node or libnode.so.108 missing from the packages" >&2; exit 1; }
mkdir -p "$work/lib" "$work/libexec"
mv "$bin" "$work/libexec/node"
mv "$libnode" "$work/lib/"
rm -rf "$work/unpacked"
mkdir -p "$work/bin"
# The binary finds its libnode.so.108 in the cache, nothing else changes.
cat >"$work/bin/node" <<EOF
#!/bin/sh
LD_LIBRARY_PATH="$CACHE/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$CACHE/libexec/node" "\$@"
EOF
chmod 755 "$work/bin/node"

rm -rf "$CACHE"
mv "$work" "$CACHE"
trap - EXIT

if ! works; then
  echo "node18.sh: $WRAPPER does not run (want $WANT):" >&2
  "$WRAPPER" --version >&2 || true
  exit 1
fi
echo "$WRAPPER"
