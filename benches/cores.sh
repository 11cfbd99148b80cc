#!/usr/bin/env bash
# Scaling with cores (issue 16, target 1): Warren pinned to 1, 2, 4, … broker cores with
# `taskset`, warren-perf pinned to the other cores, the same scenarios at each core count; a
# fresh broker per run. Prints, per scenario and core count, the medians of msg/s, deliveries/s,
# deliveries per broker CPU-second, context switches per 1,000 deliveries, and the efficiency per
# core against the 1-core run (deliveries per broker CPU-s at N cores / at 1 core).
#
#   benches/cores.sh                                  # this machine: broker on 0, clients on 1
#   BROKER_CPUS=0-7 CLIENT_CPUS=8-15 SWEEP="1 2 4 8" benches/cores.sh     # a 16-core machine
#   ROUNDS=1 DURATION=3 SWEEP=1 benches/cores.sh 1p1c                     # one scenario, quick
#
# Prepared to run unattended where cargo cannot build (a lent machine without network): set
# WARREN and PERF to the release binaries (built here, carried there). Writes JSON lines to
# target/bench/cores.jsonl and the table to target/bench/cores.md.
set -euo pipefail
cd "$(dirname "$0")/.."

BROKER_CPUS=${BROKER_CPUS:-0}
CLIENT_CPUS=${CLIENT_CPUS:-1}
SWEEP=${SWEEP:-1}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
WARREN=${WARREN:-target/release/warren}
PERF=${PERF:-target/release/warren-perf}
OUT=${OUT:-target/bench}
mkdir -p "$OUT"
RESULTS="$OUT/cores.jsonl"
: > "$RESULTS"

if [[ ! -x $WARREN || ! -x $PERF ]]; then
  cargo build --release --quiet --bin warren --bin warren-perf
fi

# The first N CPUs of a taskset list such as 0-7 or 0,2,4.
first_cpus() {
  python3 - "$1" "$2" <<'EOF'
import sys
cpus = []
for part in sys.argv[1].split(","):
    lo, _, hi = part.partition("-")
    cpus += range(int(lo), int(hi or lo) + 1)
n = int(sys.argv[2])
if n > len(cpus):
    sys.exit(f"{n} broker cores asked for, BROKER_CPUS={sys.argv[1]} has {len(cpus)}")
print(",".join(map(str, cpus[:n])))
EOF
}

# name | warren-perf arguments after --uri/--broker-pid
SCENARIOS=(
  "1p1c|throughput -x 1 -y 1 -s 16 -z $DURATION"
  "4p4c|throughput -x 4 -y 4 -s 16 -z $DURATION --queues 4"
  "8p8c|throughput -x 8 -y 8 -s 16 -z $DURATION --queues 8"
  "fanout10|throughput -x 1 -y 10 -s 16 -z $DURATION -t fanout --queues 10"
  "persistent4p4c|throughput -x 4 -y 4 -s 1024 -z $DURATION --queues 4 --persistent --confirm 100 --ack --prefetch 100"
)
wanted=("$@")

for cores in $SWEEP; do
  cpus=$(first_cpus "$BROKER_CPUS" "$cores")
  for scenario in "${SCENARIOS[@]}"; do
    name=${scenario%%|*}
    args=${scenario#*|}
    if ((${#wanted[@]})) && [[ ! " ${wanted[*]} " =~ " $name " ]]; then continue; fi
    for round in $(seq 1 "$ROUNDS"); do
      data=$(mktemp -d)
      log="$OUT/cores-warren.log"
      taskset -c "$cpus" "$WARREN" --listen 127.0.0.1:0 --data-dir "$data" \
        --management-listen none --prometheus-listen none > "$log" 2> "$log.err" &
      pid=$!
      addr=""
      for _ in $(seq 1 100); do
        addr=$(head -n 1 "$log" | sed -n 's/.* listening on \([0-9.:]*\).*/\1/p')
        [[ -n $addr ]] && break
        sleep 0.1
      done
      if [[ -z $addr ]]; then
        echo "warren did not start: $(cat "$log" "$log.err")" >&2
        kill "$pid" 2>/dev/null || true
        exit 1
      fi
      line=$(taskset -c "$CLIENT_CPUS" "$PERF" ${args%% *} --uri "amqp://guest:guest@$addr/%2f" \
        --broker-pid "$pid" --quiet ${args#* } | tail -n 1) || line='{"error": true}'
      kill "$pid"
      wait "$pid" 2>/dev/null || true
      rm -rf "$data"
      echo "{\"scenario\": \"$name\", \"cores\": $cores, \"cpus\": \"$cpus\", \"round\": $round, \"load\": \"$(cut -d' ' -f1-3 /proc/loadavg)\", \"result\": $line}" >> "$RESULTS"
      echo "$name cores=$cores round=$round: $(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(r.get("consume_rate"), "deliveries/s,", r.get("deliveries_per_broker_cpu_s"), "per broker CPU-s")' "$line")" >&2
    done
  done
done

python3 - "$RESULTS" <<'EOF' | tee "$OUT/cores.md"
import json, statistics, sys
from collections import defaultdict
runs = defaultdict(list)
for line in open(sys.argv[1]):
    row = json.loads(line)
    runs[(row["scenario"], row["cores"])].append(row["result"])
def median(rows, key):
    values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    return statistics.median(values) if values else None
print("| scenario | broker cores | publish msg/s | deliveries/s | deliveries per broker CPU-s | switches per 1k deliveries | efficiency vs 1 core | lost/dup |")
print("|---|---:|---:|---:|---:|---:|---:|---|")
for (scenario, cores), rows in runs.items():
    per_cpu = median(rows, "deliveries_per_broker_cpu_s")
    one = median(runs.get((scenario, 1), []), "deliveries_per_broker_cpu_s")
    eff = f"{per_cpu / one:.0%}" if per_cpu and one else "-"
    bad = sum(r.get("lost", 0) + r.get("duplicates", 0) + (1 if r.get("error") else 0) for r in rows)
    fmt = lambda v: "-" if v is None else f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"
    print(f"| {scenario} | {cores} | {fmt(median(rows, 'publish_rate'))} | {fmt(median(rows, 'consume_rate'))} | {fmt(per_cpu)} | {fmt(median(rows, 'broker_switches_per_1k_deliveries'))} | {eff} | {bad} |")
EOF
