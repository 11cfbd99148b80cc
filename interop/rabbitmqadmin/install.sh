#!/usr/bin/env bash
# Installs rabbitmqadmin (the 2.x CLI, crates.io, pinned, --locked) into
# $INTEROP_CACHE/rabbitmqadmin unless that version is there already. Its own step in .ci/run:
# the build (36 min at -j1 on 2 busy cores; several minutes on idle ones) must not count against
# the interop client timeout. Prints the binary's path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${INTEROP_CACHE:-$here/../../target/interop}/rabbitmqadmin"
VERSION=2.35.0
bin="$cache/bin/rabbitmqadmin"
if [ ! -x "$bin" ] || [ "$("$bin" --version 2>/dev/null | awk '{print $2}')" != "$VERSION" ]; then
    echo "installing rabbitmqadmin $VERSION into $cache" >&2
    # --debug: a CLI run a few dozen times needs no optimisation, and the build takes a fraction
    # of the release build's time.
    cargo install rabbitmqadmin --version "$VERSION" --locked --debug --root "$cache" >&2
fi
echo "$bin"
