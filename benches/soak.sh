#!/usr/bin/env bash
# The soak of issue 16 (target 6): a fresh release broker with a low memory watermark (so that
# each burst crosses it) and `warren-perf soak` against it for an hour. One JSON line a minute
# and the summary with its PASS/FAIL verdict go to OUT/soak.jsonl, the broker's log to
# OUT/broker.log. Exits non-zero on FAIL.
#
#   benches/soak.sh                      # one hour
#   DURATION=600 benches/soak.sh         # ten minutes
#   SOAK_FLAGS="--rate 1000 --burst-every 120" benches/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-3600}
WATERMARK=${WATERMARK:-64MiB}
OUT=${OUT:-target/soak}
mkdir -p "$OUT"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

cargo build --release --bin warren --bin warren-perf
data=$(mktemp -d /tmp/warren-soak.XXXXXX)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
./target/release/warren --listen "127.0.0.1:$port" --management-listen none \
  --prometheus-listen none --data-dir "$data" --memory-high-watermark "$WATERMARK" \
  --log-file "$OUT/broker.log" &
broker=$!
trap 'kill "$broker" 2>/dev/null || true; wait "$broker" 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 100); do port_open "$port" && break; sleep 0.1; done
echo "broker pid $broker on port $port, data dir $data, watermark $WATERMARK; ${DURATION}s of load"
# shellcheck disable=SC2086 # SOAK_FLAGS is a list of flags
./target/release/warren-perf soak --uri "amqp://guest:guest@127.0.0.1:$port/%2f" \
  --duration "$DURATION" --broker-pid "$broker" --data-dir "$data" ${SOAK_FLAGS:-} \
  | tee "$OUT/soak.jsonl"
