"""Medians per scenario and broker from benches/compare.sh's results.jsonl, with the
Warren/RabbitMQ ratio of each figure, as a Markdown table."""

import json
import statistics
import sys
from collections import defaultdict

FIGURES = {
    "throughput": ["publish_rate", "consume_rate", "deliveries_per_broker_cpu_s", "broker_switches_per_1k_deliveries", "latency_us.p50", "latency_us.p99", "broker_cpu_s", "generator_cpu_s"],
    "latency": ["consume_rate", "broker_switches_per_1k_deliveries", "latency_us.p50", "latency_us.p99", "latency_us.p999", "latency_us.max"],
    "connections": ["connections_per_s", "broker_rss_kib_before", "broker_rss_kib_after", "broker_rss_kib_per_connection"],
    "backlog": ["publish_rate", "drain_rate", "broker_rss_kib_full", "broker_rss_bytes_per_message", "broker_rss_kib_drained"],
}


def get(result, path):
    value = result
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def main(path, rmq_version):
    runs = defaultdict(lambda: defaultdict(list))
    for line in open(path):
        row = json.loads(line)
        runs[row["scenario"]][row["broker"]].append(row["result"])
    print(f"RabbitMQ {rmq_version}; medians of {max(len(v) for s in runs.values() for v in s.values())} rounds\n")
    print("| scenario | figure | Warren | RabbitMQ | Warren/RabbitMQ |")
    print("|---|---|---:|---:|---:|")
    for scenario, brokers in runs.items():
        mode = next((r.get("mode") for rs in brokers.values() for r in rs if "mode" in r), None)
        for figure in FIGURES.get(mode, []):
            medians = {}
            for broker in ("warren", "rabbitmq"):
                values = [get(r, figure) for r in brokers.get(broker, [])]
                values = [v for v in values if isinstance(v, (int, float))]
                medians[broker] = statistics.median(values) if values else None
            w, r = medians["warren"], medians["rabbitmq"]
            ratio = f"{w / r:.2f}" if w is not None and r else "-"
            fmt = lambda v: "-" if v is None else f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"
            print(f"| {scenario} | {figure} | {fmt(w)} | {fmt(r)} | {ratio} |")
        errors = sum(1 for rs in brokers.values() for r in rs if r.get("error"))
        checks = [(b, r.get("lost", 0), r.get("duplicates", 0), r.get("corrupt", 0)) for b, rs in brokers.items() for r in rs]
        bad = [c for c in checks if any(c[1:])]
        if errors or bad:
            print(f"| {scenario} | problems | errors: {errors} | lost/dup/corrupt: {bad} | |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "unknown")
