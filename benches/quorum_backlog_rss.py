#!/usr/bin/env python3
"""RSS of a broker holding a deep quorum queue: publishes N persistent messages of SIZE bytes
(pika, no confirms: waits until the queue holds all N) into a fresh quorum queue with no consumer, reads the broker's RSS
(/proc/PID/status) before and after, then drains the queue checking every body.

    benches/quorum_backlog_rss.py URL BROKER_PID [N] [SIZE]

Needs pika (interop/python/run.sh installs it into target/interop/python/venv)."""

import sys
import time

import pika


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def body(i, size):
    head = f"{i:012d}".encode()
    return head + bytes((i + k) & 0xFF for k in range(size - len(head)))


def main():
    url, pid = sys.argv[1], int(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 1_000_000
    size = int(sys.argv[4]) if len(sys.argv) > 4 else 1024
    queue = f"rss.quorum.{int(time.time())}"
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    time.sleep(1)
    idle = rss_kib(pid)
    props = pika.BasicProperties(delivery_mode=2)
    # One pattern per 256 messages: building a body per message would bottleneck the client.
    patterns = [bytes((j + k) & 0xFF for k in range(size)) for j in range(256)]
    started = time.monotonic()
    for i in range(n):
        ch.basic_publish("", queue, patterns[i & 0xFF], props)
        if i % 200_000 == 0:
            print(f"published {i}", file=sys.stderr, flush=True)
    def count():
        return ch.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"},
                                passive=True).method.message_count
    while count() < n and time.monotonic() - started < 3600:
        time.sleep(0.5)
    rate = n / (time.monotonic() - started)
    time.sleep(2)
    full = rss_kib(pid)
    count = count()
    got = bad = 0
    started = time.monotonic()
    ch.basic_qos(prefetch_count=1000)
    for method, _props, b in ch.consume(queue, auto_ack=True, inactivity_timeout=10):
        if method is None:
            break
        if b != patterns[got & 0xFF]:
            bad += 1
        got += 1
        if got == n:
            break
    drain_rate = got / (time.monotonic() - started)
    ch.cancel()
    time.sleep(1)
    drained = rss_kib(pid)
    ch.queue_delete(queue)
    conn.close()
    per_msg = (full - idle) * 1024 / n
    print(f"messages={n} size={size} in_queue={count} publish_rate={rate:.0f}/s "
          f"rss_idle_kib={idle} rss_full_kib={full} rss_drained_kib={drained} "
          f"rss_bytes_per_message={per_msg:.0f} drained={got} corrupt={bad} "
          f"drain_rate={drain_rate:.0f}/s")
    sys.exit(1 if bad or got != n else 0)


if __name__ == "__main__":
    main()
