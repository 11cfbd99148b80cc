#!/usr/bin/env bash
# amqp091-go (Debian's golang-github-rabbitmq-amqp091-go-dev, pinned) against $AMQP_URL;
# convention in interop/README.md.
#
# Offline Go recipe: the Go module proxy is not reachable, so the library comes from Debian, which
# puts its source under /usr/share/gocode/src. GOPATH mode (GO111MODULE=off) with
# GOPATH=<writable dir>:/usr/share/gocode resolves the import there, with no go.mod, go.sum or
# network (module mode would need a replace line for amqp091-go and for every module in its go.mod).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${INTEROP_CACHE:-$here/../../target/interop}/go"
: "${AMQP_URL:?AMQP_URL must be set}"

# Debian bookworm versions; the table in interop/README.md names them.
pkgs=(golang-go=2:1.19~1 golang-github-rabbitmq-amqp091-go-dev=1.5.0-2)
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

export GO111MODULE=off GOPATH="$cache/gopath:/usr/share/gocode" GOCACHE="$cache/build-cache"
export GOPROXY=off GOFLAGS= GOTOOLCHAIN=local GOTELEMETRY=off
mkdir -p "$cache/gopath"
bin="$cache/interop-go"
if [ ! -x "$bin" ] || [ "$here/main.go" -nt "$bin" ]; then
  (cd "$here" && go build -o "$bin" ./main.go) >&2
fi
exec "$bin"
