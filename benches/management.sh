#!/usr/bin/env bash
# What the management API costs (results in BENCHMARKS.md, "Management API ... (issue 13)"):
#  1. GET /api/queues (unpaged), a page of it, and /api/overview with QUEUES queues declared,
#     each timed TIMES times with curl (from connect to the last byte);
#  2. 1 producer / 1 consumer, 16 B, no-ack, DURATION s, with the QUEUES queues present: a
#     poller fetching unpaged /api/queues and /api/overview once a second, or none; A B B A
#     order, RUNS of each, a fresh broker for every run.
#
#   WARREN_BIN=target/release/warren PERF_BIN=target/release/warren-perf benches/management.sh
set -euo pipefail
WARREN_BIN=${WARREN_BIN:-target/release/warren}
PERF_BIN=${PERF_BIN:-target/release/warren-perf}
QUEUES=${QUEUES:-10000}
TIMES=${TIMES:-5}
RUNS=${RUNS:-3}
DURATION=${DURATION:-20}
PARTS=${PARTS:-"times throughput"}

WORK=$(mktemp -d)
PID=""
POLLER=""
stop() {
  if [ -n "$POLLER" ]; then kill "$POLLER" 2>/dev/null || true; wait "$POLLER" 2>/dev/null || true; fi
  POLLER=""
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  PID=""
}
trap 'stop; rm -rf "$WORK"' EXIT
start() {
  rm -rf "$WORK/data"
  : >"$WORK/out"
  : >"$WORK/err"
  # Port 0 everywhere: other programs on the machine may hold any fixed port. The Prometheus
  # listener is there only for `warren-perf scrape -n N --times 1 --path /metrics`, which declares the queues.
  "$WARREN_BIN" --listen 127.0.0.1:0 --management-listen 127.0.0.1:0 \
    --prometheus-listen 127.0.0.1:0 --data-dir "$WORK/data" >"$WORK/out" 2>"$WORK/err" &
  PID=$!
  for _ in $(seq 100); do
    AMQP=$(sed -n 's/.*listening on \(127\.0\.0\.1:[0-9]*\).*/\1/p' "$WORK/out")
    METRICS=$(sed -n 's/.*Prometheus metrics started listen=\(127\.0\.0\.1:[0-9]*\).*/\1/p' "$WORK/err")
    API=$(sed -n 's/.*management API started listen=\(127\.0\.0\.1:[0-9]*\).*/\1/p' "$WORK/err")
    if [ -n "$AMQP" ] && [ -n "$METRICS" ] && [ -n "$API" ]; then
      URI="amqp://guest:guest@$AMQP/%2f"
      "$PERF_BIN" scrape --uri "$URI" --metrics "$METRICS" -n "$QUEUES" --times 1 --path /metrics >/dev/null
      return 0
    fi
    sleep 0.1
  done
  cat "$WORK/err" >&2
  return 1
}
fetch() {
  curl -sf -o /dev/null -u guest:guest -w '%{time_total} %{size_download}\n' "http://$API$1"
}

if [[ " $PARTS " == *" times "* ]]; then
  echo "== $QUEUES queues: curl time_total (s) and bytes, $TIMES times each (nproc $(nproc))"
  start
  for path in /api/queues "/api/queues?page=1&page_size=100" /api/overview; do
    printf '%s:' "$path"
    for _ in $(seq "$TIMES"); do printf ' %s' "$(fetch "$path")"; done
    echo
  done
  stop
fi

if [[ " $PARTS " == *" throughput "* ]]; then
  echo "== 1p/1c 16 B, ${DURATION} s each, $QUEUES queues, API polled every second or not"
  for i in $(seq "$RUNS"); do
    order="quiet polled"
    [ $((i % 2)) -eq 0 ] && order="polled quiet"
    for mode in $order; do
      start
      if [ "$mode" = polled ]; then
        (while true; do fetch /api/queues >/dev/null; fetch /api/overview >/dev/null; sleep 1; done) &
        POLLER=$!
      fi
      printf '%s run %s: ' "$mode" "$i"
      "$PERF_BIN" throughput --uri "$URI" -x 1 -y 1 -s 16 -z "$DURATION" --quiet \
        --broker-pid "$PID"
      stop
    done
  done
fi
