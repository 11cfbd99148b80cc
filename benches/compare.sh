#!/usr/bin/env bash
# Benchmark matrix: Warren against RabbitMQ on this machine, in the same run, alternating
# (A B A B …) for ROUNDS rounds, with warren-perf as the load generator for both. Prints the
# median of each figure and the Warren/RabbitMQ ratio, and writes the raw JSON lines to
# target/bench/results.jsonl.
#
#   benches/compare.sh                 # everything, 3 rounds
#   ROUNDS=1 DURATION=5 benches/compare.sh throughput_16b latency_10k
#
# Installs RabbitMQ from Debian if missing, and starts it (with a raised open-file limit) when
# nothing listens on RMQ_PORT yet.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
RMQ_PORT=${RMQ_PORT:-5672}
OUT=target/bench
mkdir -p "$OUT"
: > "$OUT/results.jsonl"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! command -v rabbitmq-server >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
fi
if ! port_open "$RMQ_PORT"; then
  echo "starting RabbitMQ on port $RMQ_PORT"
  # Debian's default of 1024 open files lets RabbitMQ accept only ~832 connections; the
  # wrapper script's `su rabbitmq` resets limits, so raise it inside the rabbitmq user's shell.
  su rabbitmq -s /bin/sh -c "ulimit -n 65536 2>/dev/null || ulimit -n \$(ulimit -Hn); cd /var/lib/rabbitmq && RABBITMQ_NODE_PORT=$RMQ_PORT /usr/lib/rabbitmq/bin/rabbitmq-server -detached"
  for _ in $(seq 1 60); do port_open "$RMQ_PORT" && break; sleep 1; done
fi
RMQ_PID=$(pgrep -f 'beam.smp' | head -n 1)
# RabbitMQ runs in a vhost of its own, so that limits or queues other tools left on its `/`
# (a shared development node) cannot fail or slow a scenario.
RMQ_VHOST=${RMQ_VHOST:-warren-bench}
rabbitmqctl add_vhost "$RMQ_VHOST" > /dev/null 2>&1 || true
rabbitmqctl set_permissions -p "$RMQ_VHOST" guest '.*' '.*' '.*' > /dev/null
RMQ_VERSION=$(rabbitmqctl version 2>/dev/null || echo unknown)

cargo build --release --quiet --bin warren --bin warren-perf
WARREN_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DATA=$(mktemp -d)
./target/release/warren --listen "127.0.0.1:$WARREN_PORT" --data-dir "$DATA" > "$OUT/warren.log" 2>&1 &
WARREN_PID=$!
trap 'kill $WARREN_PID 2>/dev/null; rm -rf "$DATA"' EXIT
for _ in $(seq 1 50); do port_open "$WARREN_PORT" && break; sleep 0.1; done

PERF=./target/release/warren-perf
declare -A URL=([warren]="amqp://guest:guest@127.0.0.1:$WARREN_PORT/%2f" [rabbitmq]="amqp://guest:guest@127.0.0.1:$RMQ_PORT/$RMQ_VHOST")
declare -A PID=([warren]=$WARREN_PID [rabbitmq]=$RMQ_PID)

# name | command after the URL/pid flags
SCENARIOS=(
  "throughput_16b|throughput -x 1 -y 1 -s 16 -z $DURATION"
  "persistent_1k_confirm_ack|throughput -x 1 -y 1 -s 1024 -z $DURATION --persistent --confirm 100 --ack --prefetch 100"
  "throughput_4p4c_16b|throughput -x 4 -y 4 -s 16 -z $DURATION"
  "latency_1k|throughput -x 1 -y 1 -s 16 -z $DURATION --rate 1000"
  "latency_10k|throughput -x 1 -y 1 -s 16 -z $DURATION --rate 10000"
  "fanout_10|throughput -x 1 -y 10 -s 16 -z $DURATION -t fanout --queues 10"
  "connections_1000|connections -n 1000"
  "backlog_1m_16b|backlog -m 1000000 -s 16"
)

echo "idle RSS: warren $(grep VmRSS /proc/$WARREN_PID/status | awk '{print $2}') KiB, rabbitmq $(grep VmRSS /proc/$RMQ_PID/status | awk '{print $2}') KiB" | tee "$OUT/idle.txt"

wanted=("$@")
for scenario in "${SCENARIOS[@]}"; do
  name=${scenario%%|*}
  args=${scenario#*|}
  if [ ${#wanted[@]} -gt 0 ] && [[ ! " ${wanted[*]} " =~ " $name " ]]; then continue; fi
  for round in $(seq 1 "$ROUNDS"); do
    for broker in warren rabbitmq; do
      echo "== $name round $round: $broker" >&2
      # shellcheck disable=SC2086
      line=$($PERF ${args%% *} --uri "${URL[$broker]}" --broker-pid "${PID[$broker]}" ${args#* } 2>>"$OUT/progress.log" | tail -n 1) || line='{"error": true}'
      echo "{\"scenario\": \"$name\", \"broker\": \"$broker\", \"round\": $round, \"result\": $line}" >> "$OUT/results.jsonl"
    done
  done
done

python3 benches/summarize.py "$OUT/results.jsonl" "$RMQ_VERSION"
