#!/usr/bin/env bash
# Builds Warren as one static binary (x86_64-unknown-linux-musl, jemalloc included) and checks
# that it starts and answers an AMQP handshake. Installs what it needs: the Rust target and
# musl-gcc (Debian/Ubuntu's musl-tools; jemalloc is C and needs a musl C compiler).
#
#   packaging/build-static.sh            # -> target/x86_64-unknown-linux-musl/release-static/warren
#
# The binary depends on nothing at run time (no glibc): copy it anywhere, e.g. into the
# Dockerfile's final image or /usr/local/bin for packaging/warren.service.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-unknown-linux-musl
PROFILE=release-static
BIN="target/$TARGET/$PROFILE/warren"

if ! rustup target list --installed | grep -qx "$TARGET"; then
  rustup target add "$TARGET"
fi
if ! command -v musl-gcc >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q musl-tools
fi

CC_x86_64_unknown_linux_musl=musl-gcc \
  cargo build --locked --profile "$PROFILE" --target "$TARGET" --bin warren

# Static: no program interpreter, no shared libraries.
if readelf -l "$BIN" | grep -q "Requesting program interpreter"; then
  echo "build-static: $BIN is dynamically linked" >&2
  exit 1
fi

# Start it on a free port (the banner on stdout names the address) and speak AMQP to it.
WORK=$(mktemp -d)
cleanup() {
  [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
"$BIN" --listen 127.0.0.1:0 --data-dir "$WORK/data" >"$WORK/stdout" 2>"$WORK/stderr" &
PID=$!
PORT=""
for _ in $(seq 100); do
  PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/stdout")
  [ -n "$PORT" ] && break
  kill -0 "$PID" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$PORT" ]; then
  echo "build-static: warren did not start:" >&2
  cat "$WORK/stderr" >&2
  exit 1
fi
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
printf 'AMQP\x00\x00\x09\x01' >&3
# A method frame (type 1) on channel 0 carrying connection.start (class 10, method 10).
REPLY=$(head -c 11 <&3 | od -An -tx1 | tr -s ' \n' ' ')
exec 3<&-
case "$REPLY" in
  " 01 00 00 "*" 00 0a 00 0a ") ;;
  *) echo "build-static: no connection.start from warren (got:$REPLY)" >&2; exit 1 ;;
esac
echo "build-static: $BIN ($(du -h "$BIN" | cut -f1), static) answers AMQP on 127.0.0.1:$PORT"
