#!/usr/bin/env bash
# Bunny (Debian's ruby-bunny, pinned) against $AMQP_URL; convention in interop/README.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
: "${AMQP_URL:?AMQP_URL must be set}"

# Debian bookworm versions; the table in interop/README.md names them. ruby-bunny pulls in ruby
# and ruby-amq-protocol.
pkgs=(ruby-bunny=2.19.0-2 ruby-amq-protocol=2.3.2-1)
missing=()
for p in "${pkgs[@]}"; do
  [ "$(dpkg-query -W -f='${Version}' "${p%%=*}" 2>/dev/null)" = "${p#*=}" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
    { apt-get update >&2 && apt-get install -y --no-install-recommends "${missing[@]}" >&2; }
fi

exec ruby "$here/scenarios.rb"
