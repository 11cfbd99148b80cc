#!/usr/bin/env python3
"""Markdown table of a soak's JSON lines (benches/soak.sh writes target/soak/soak.jsonl).

    benches/soak_table.py [target/soak/soak.jsonl] [EVERY_SECONDS]

One row per EVERY_SECONDS (default 300) of the report lines, plus the last line.
"""
import json
import sys

path = sys.argv[1] if len(sys.argv) > 1 else "target/soak/soak.jsonl"
every = int(sys.argv[2]) if len(sys.argv) > 2 else 300
lines = [json.loads(l) for l in open(path) if l.strip()]
reports = [l for l in lines if "t_s" in l]
rows = [r for r in reports if r["t_s"] % every < reports[0]["t_s"]] or reports
if reports and rows[-1] is not reports[-1]:
    rows.append(reports[-1])
print("| t (min) | pub/s | del/s | p50 / p99 / p999 µs | RSS MiB | CPU % | fds | thr | data MiB "
      "| crossings (blocked s) | undeliv. | lost | redel. dups | unexpl. dups | churn | load |")
print("|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
for r in rows:
    b, a, lat = r["broker"], r["alarm"], r["latency_us"]
    rss = b["rss_kib"] / 1024 if b["rss_kib"] is not None else float("nan")
    print(f"| {r['t_s'] / 60:.0f} | {r['publish_rate']:.0f} | {r['deliver_rate']:.0f} "
          f"| {lat['p50']} / {lat['p99']} / {lat['p999']} | {rss:.1f} | {b['cpu_pct']} "
          f"| {b['fds']} | {b['threads']} | {b['data_mib']} | {a['crossings']} ({a['blocked_s']}) "
          f"| {r['undelivered']} | {r['lost_so_far']} | {r['redelivered_dups']} "
          f"| {r['unexplained_dups']} | {r['churn_cycles']} | {r['loadavg']} |")
summary = [l for l in lines if l.get("mode") == "soak"]
if summary:
    s = summary[-1]
    print()
    print(f"verdict **{s['verdict']}** {s['reasons']}; published {s['published']}, confirmed "
          f"{s['confirmed']}, delivered {s['delivered']}, lost {s['lost']}, redelivered dups "
          f"{s['redelivered_dups']}, unexplained dups {s['unexplained_dups']}, alarm crossings "
          f"{s['alarm_crossings']} ({s['blocked_s']} s blocked), RSS growth {s['rss_growth']}, "
          f"p99 growth {s['p99_growth']}")
