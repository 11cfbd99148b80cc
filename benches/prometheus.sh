#!/usr/bin/env bash
# What Prometheus scraping costs (results in BENCHMARKS.md, "Prometheus metrics"):
#  1. a per-object scrape (and an aggregated one) of 10,000 queues, timed by warren-perf;
#  2. 1 producer / 1 consumer, 16 B, no-ack, for DURATION s: /metrics scraped every second vs
#     not, in A B B A order, RUNS of each (medians reported by the caller).
#
#   WARREN_BIN=target/release/warren PERF_BIN=target/release/warren-perf benches/prometheus.sh
set -euo pipefail
WARREN_BIN=${WARREN_BIN:-target/release/warren}
PERF_BIN=${PERF_BIN:-target/release/warren-perf}
QUEUES=${QUEUES:-10000}
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}

WORK=$(mktemp -d)
PID=""
stop() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  PID=""
}
trap 'stop; rm -rf "$WORK"' EXIT
start() {
  rm -rf "$WORK/data"
  : >"$WORK/out"
  : >"$WORK/err"
  # Port 0 for both: other programs on the machine may hold any fixed port.
  "$WARREN_BIN" --listen 127.0.0.1:0 --management-listen none \
    --prometheus-listen 127.0.0.1:0 --data-dir "$WORK/data" >"$WORK/out" 2>"$WORK/err" &
  PID=$!
  for _ in $(seq 100); do
    AMQP=$(sed -n 's/.*listening on \(127\.0\.0\.1:[0-9]*\).*/\1/p' "$WORK/out")
    METRICS=$(sed -n 's/.*Prometheus metrics started listen=\(127\.0\.0\.1:[0-9]*\).*/\1/p' "$WORK/err")
    if [ -n "$AMQP" ] && [ -n "$METRICS" ]; then
      URI="amqp://guest:guest@$AMQP/%2f"
      return 0
    fi
    sleep 0.1
  done
  cat "$WORK/err" >&2
  return 1
}

echo "== scrape of $QUEUES queues (nproc $(nproc))"
start
"$PERF_BIN" scrape --uri "$URI" --metrics "$METRICS" -n "$QUEUES" --times 5
"$PERF_BIN" scrape --uri "$URI" --metrics "$METRICS" -n 0 --path /metrics --times 5
stop

echo "== 1p/1c 16 B, ${DURATION} s each, scraped every second or not"
# A B B A …: the machine's load drifts, and a fixed order would charge the drift to one side.
for i in $(seq "$RUNS"); do
  order="plain scraped"
  [ $((i % 2)) -eq 0 ] && order="scraped plain"
  for mode in $order; do
    start
    extra=()
    [ "$mode" = scraped ] && extra=(--scrape "$METRICS")
    printf '%s run %s: ' "$mode" "$i"
    "$PERF_BIN" throughput --uri "$URI" -x 1 -y 1 -s 16 -z "$DURATION" --quiet \
      --broker-pid "$PID" "${extra[@]}"
    stop
  done
done
