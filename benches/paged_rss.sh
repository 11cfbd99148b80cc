#!/usr/bin/env bash
# Bookkeeping per paged-out message in a classic durable queue (issue 16, target 2).
#
#   benches/paged_rss.sh [BIN_DIR] [N] [SIZE]     # defaults: target/release 1000000 1024
#
# Starts a fresh broker from BIN_DIR (warren, and warren-perf unless PERF names another; build
# them with `cargo build --release --bin warren --bin warren-perf`) on a fresh data dir, reads its idle
# RSS, has `warren-perf throughput` publish N persistent SIZE-byte messages into a durable
# classic queue (1 publisher, confirms with a window of 1,000, no consumer), waits 2 s, reads
# the RSS again and the queue's counters from /api/queues, and prints one JSON line with
#
#   (RSS full - RSS idle - bodies still in memory) / messages paged out
#
# as `bookkeeping_bytes_per_paged_message`. A classic durable queue keeps the first 16 MiB of
# ready bodies in memory (`PAGE_OUT_BYTES`) and pages out every persistent message behind
# them; `message_bytes_ram` of /api/queues is what stays in memory. A broker that reports no
# `messages_paged_out` for classic queues (before issue 16's third round) is taken to keep
# exactly the first 16 MiB. The messages in memory cost their own bookkeeping too (~16k of
# them at 1 KiB: a few bytes per paged message), counted here as the paged ones' cost.
# The broker is stopped and its data dir removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${1:-target/release}
N=${2:-1000000}
SIZE=${3:-1024}
QUEUE=paged-rss
# The load generator (any build with --keep-queues; the same one for every broker compared).
PERF=${PERF:-$BIN/warren-perf}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

PORT=$(free_port)
MPORT=$(free_port)
DATA=$(mktemp -d)
"$BIN/warren" --listen "127.0.0.1:$PORT" --management-listen "127.0.0.1:$MPORT" \
  --prometheus-listen none --data-dir "$DATA" >"$DATA.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DATA" "$DATA.log"' EXIT
for _ in $(seq 1 100); do port_open "$PORT" && port_open "$MPORT" && break; sleep 0.1; done
sleep 1
IDLE=$(rss_kib $PID)

PUBLISHED=$("$PERF" throughput --uri "amqp://guest:guest@127.0.0.1:$PORT/%2f" \
  -x 1 -y 0 -s "$SIZE" -C "$N" --confirm 1000 --persistent -u "$QUEUE" --broker-pid $PID --quiet --keep-queues)
sleep 2
FULL=$(rss_kib $PID)
QUEUE_JSON=$(curl -sSf -u guest:guest "http://127.0.0.1:$MPORT/api/queues/%2f/$QUEUE")

python3 - "$IDLE" "$FULL" "$N" "$SIZE" "$QUEUE_JSON" "$PUBLISHED" <<'EOF'
import json, sys
idle, full, n, size = (int(x) for x in sys.argv[1:5])
q = json.loads(sys.argv[5])
published = json.loads(sys.argv[6].strip().splitlines()[-1])
paged = q["messages_paged_out"]
in_ram = q["message_bytes_ram"]
counted = paged > 0
if not counted:
    # A broker that does not count paged-out classic messages (before issue 16's round 3):
    # the first 16 MiB of bodies stay in memory, every message behind them is paged out.
    in_ram = min(n * size, 16 << 20)
    paged = max(n - in_ram // size, 0)
extra = (full - idle) * 1024 - in_ram
print(json.dumps({
    "messages": n, "size": size, "in_queue": q["messages"],
    "messages_paged_out": paged, "message_bytes_ram": in_ram,
    "message_bytes_paged_out": q["message_bytes_paged_out"],
    "rss_kib_idle": idle, "rss_kib_full": full,
    "rss_bytes_per_message": round((full - idle) * 1024 / n),
    "bookkeeping_bytes_per_paged_message": round(extra / paged) if paged else None,
    "paged_counted_by_broker": counted,
    "publish_rate": published.get("publish_rate"),
}))
if q["messages"] != n:
    sys.exit(f"the queue holds {q['messages']} of {n} confirmed messages")
EOF
