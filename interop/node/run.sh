#!/usr/bin/env bash
# amqplib (npm, pinned in package-lock.json) against $AMQP_URL; convention in interop/README.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${INTEROP_CACHE:-$here/../../target/interop}/node"
: "${AMQP_URL:?AMQP_URL must be set}"

command -v node >/dev/null && command -v npm >/dev/null || {
  echo "node/npm missing: installing Debian's nodejs and npm" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm >&2 ||
    { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm >&2; }
}

# Install amqplib exactly as locked, into the cache; only when the lock changed.
mkdir -p "$cache"
if ! cmp -s "$here/package-lock.json" "$cache/package-lock.json" || [ ! -d "$cache/node_modules/amqplib" ]; then
  cp "$here/package.json" "$here/package-lock.json" "$cache/"
  (cd "$cache" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi

NODE_PATH="$cache/node_modules" exec node "$here/scenarios.js"
