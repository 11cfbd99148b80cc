"""Shared by the Python interop clients: names unique to the run, cleanup, and the runner that
prints the lines of interop/README.md (PASS/FAIL/SKIP per scenario, then a summary)."""

import os
import signal
import socket
import subprocess
import sys
import time
import traceback
import urllib.parse

import pika

AMQP_URL = os.environ.get("AMQP_URL", "")
BROKER_RESTART = os.environ.get("BROKER_RESTART", "")
RUN_ID = os.environ.get("INTEROP_RUN_ID") or f"{os.getpid()}-{int(time.time())}"
SCENARIO_TIMEOUT = int(os.environ.get("INTEROP_SCENARIO_TIMEOUT", "120"))
WAIT = 10.0


class Skip(Exception):
    """Raised by a scenario that cannot run against this broker."""


class Timeout(Exception):
    pass


class Names:
    """Queue and exchange names unique to this run, remembered for cleanup."""

    def __init__(self, client):
        self.client = client
        self.queues = []
        self.exchanges = []

    def queue(self, what):
        name = f"interop.{self.client}.{what}.{RUN_ID}"
        self.queues.append(name)
        return name

    def exchange(self, what):
        name = f"interop.{self.client}.{what}.x.{RUN_ID}"
        self.exchanges.append(name)
        return name

    def cleanup(self):
        """Deletes what the scenario declared (with pika, whatever the client under test)."""
        if not self.queues and not self.exchanges:
            return
        try:
            conn = pika.BlockingConnection(params())
        except Exception:
            return
        try:
            for q in self.queues:
                try:
                    conn.channel().queue_delete(q)
                except Exception:
                    pass
            for x in self.exchanges:
                try:
                    conn.channel().exchange_delete(x)
                except Exception:
                    pass
        finally:
            try:
                conn.close()
            except Exception:
                pass
        self.queues, self.exchanges = [], []


def params(**kwargs):
    p = pika.URLParameters(AMQP_URL)
    p.connection_attempts = 1
    p.socket_timeout = WAIT
    p.blocked_connection_timeout = 60
    for k, v in kwargs.items():
        setattr(p, k, v)
    return p


def broker_address():
    u = urllib.parse.urlparse(AMQP_URL)
    return u.hostname or "127.0.0.1", u.port or 5672


def restart_broker():
    if not BROKER_RESTART:
        raise Skip("BROKER_RESTART is not set")
    subprocess.run([BROKER_RESTART], check=True, timeout=120)


def wait_until(what, cond, timeout=WAIT, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def check_eq(got, expected, what):
    if got != expected:
        raise AssertionError(f"{what}: got {got!r}, expected {expected!r}")


def pattern(size, seed):
    return bytes(((i * 31 + seed) & 0xFF) for i in range(size))


# Several MiB over many body frames, and bodies that exactly fill one frame and one byte more
# at the default frame_max of 128 KiB; the same sizes as interop/rust.
LARGE_SIZES = [6 * 1024 * 1024 + 13, 131072 - 8, 131072 - 7, 0]

TOPIC_KEYS = ["quick.orange.rabbit", "lazy.orange.elephant", "quick.orange.fox",
              "lazy.brown.fox", "lazy.pink.rabbit", "quick.brown.fox",
              "quick.orange.new.rabbit", "lazy.orange.new.rabbit", "orange", "lazy"]
TOPIC_Q1 = ["quick.orange.rabbit", "lazy.orange.elephant", "quick.orange.fox"]
TOPIC_Q2 = ["quick.orange.rabbit", "lazy.orange.elephant", "lazy.brown.fox",
            "lazy.pink.rabbit", "lazy.orange.new.rabbit", "lazy"]


def fib(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def _alarm(signum, frame):
    raise Timeout(f"timed out after {SCENARIO_TIMEOUT} s")


def run(client, scenarios):
    """Runs each (name, fn(names)) in turn; prints the lines; returns the number failed."""
    if not AMQP_URL:
        print("AMQP_URL is not set", file=sys.stderr)
        sys.exit(2)
    only = [s for s in os.environ.get("INTEROP_SCENARIOS", "").split(",") if s]
    passed = failed = 0
    signal.signal(signal.SIGALRM, _alarm)
    # interop/run.sh's timeout sends SIGTERM: unwind, so `finally` blocks stop celery workers
    # (they run in their own process group and would outlive us).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    for name, fn in scenarios:
        if only and name not in only:
            continue
        names = Names(client)
        stop = False
        started = time.monotonic()
        signal.alarm(SCENARIO_TIMEOUT)
        try:
            fn(names)
            line = f"PASS {name}"
            passed += 1
        except Skip as e:
            line = f"SKIP {name}: {e}"
        except BaseException as e:  # a scenario's failure, whatever it is, is one FAIL line
            if isinstance(e, KeyboardInterrupt):
                raise
            stop = isinstance(e, SystemExit)
            traceback.print_exc(file=sys.stderr)
            why = f"{type(e).__name__}: {e}".replace("\n", " ").replace("\r", " ")
            if stop:
                why = "terminated (SIGTERM, INTEROP_CLIENT_TIMEOUT ran out)"
            line = f"FAIL {name}: {why}"
            failed += 1
        finally:
            signal.alarm(0)
        try:
            names.cleanup()
        except Exception:
            pass
        print(line, flush=True)
        print(f"{client} {name}: {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
        if stop:
            break
    print(f"{client}: {passed} passed, {failed} failed", flush=True)
    return failed
