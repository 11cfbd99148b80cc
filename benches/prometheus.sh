#!/usr/bin/env bash
# What Prometheus scraping costs (results in BENCHMARKS.md, "Prometheus metrics"):
#  1. a per-object scrape (and an aggregated one) of 10,000 queues, timed by warren-perf;
#  2. 1 producer / 1 consumer, 16 B, no-ack, for DURATION s: /metrics scraped every second vs
#     not, alternating, RUNS of each (medians reported by the caller).
#
#   WARREN_BIN=target/release/warren PERF_BIN=target/release/warren-perf benches/prometheus.sh
set -euo pipefail
WARREN_BIN=${WARREN_BIN:-target/release/warren}
PERF_BIN=${PERF_BIN:-target/release/warren-perf}
QUEUES=${QUEUES:-10000}
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
AMQP_PORT=${AMQP_PORT:-25672}
METRICS_PORT=${METRICS_PORT:-25692}
URI="amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f"

WORK=$(mktemp -d)
PID=""
stop() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  PID=""
}
trap 'stop; rm -rf "$WORK"' EXIT
start() {
  rm -rf "$WORK/data"
  "$WARREN_BIN" --listen "127.0.0.1:$AMQP_PORT" --management-listen none \
    --prometheus-listen "127.0.0.1:$METRICS_PORT" --data-dir "$WORK/data" \
    >"$WORK/out" 2>"$WORK/err" &
  PID=$!
  for _ in $(seq 100); do
    grep -q 'Prometheus metrics started' "$WORK/err" && return 0
    sleep 0.1
  done
  cat "$WORK/err" >&2
  return 1
}

echo "== scrape of $QUEUES queues (nproc $(nproc))"
start
"$PERF_BIN" scrape --uri "$URI" --metrics "127.0.0.1:$METRICS_PORT" -n "$QUEUES" --times 5
"$PERF_BIN" scrape --uri "$URI" --metrics "127.0.0.1:$METRICS_PORT" -n 0 --path /metrics --times 5
stop

echo "== 1p/1c 16 B, ${DURATION} s each, scraped every second or not"
for i in $(seq "$RUNS"); do
  for mode in plain scraped; do
    start
    extra=()
    [ "$mode" = scraped ] && extra=(--scrape "127.0.0.1:$METRICS_PORT")
    printf '%s run %s: ' "$mode" "$i"
    "$PERF_BIN" throughput --uri "$URI" -x 1 -y 1 -s 16 -z "$DURATION" --quiet \
      --broker-pid "$PID" "${extra[@]}"
    stop
  done
done
