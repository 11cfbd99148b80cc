"""The celery client: real Celery workers (subprocesses, prefork pool) and a producer running
real tasks against AMQP_URL with acks_late, including a worker killed with SIGKILL mid-task;
and kombu (Celery's messaging library) used directly. Run by interop/python/run.sh."""

import glob
import os
import signal
import subprocess
import sys
import tempfile
import time

import kombu
from celery import group

from common import (BROKER_RESTART, RUN_ID, WAIT, Skip, check, check_eq, pattern,
                    restart_broker, run, wait_until)

HERE = os.path.dirname(os.path.abspath(__file__))
LOGS = os.path.join(os.environ.get("INTEROP_CACHE", os.path.join(HERE, "../../target/interop")),
                    "logs")


class Worker:
    """`celery worker` in its own process group (so SIGKILL takes the pool children too)."""

    count = 0

    def __init__(self, *extra_args):
        Worker.count += 1
        self.name = f"interop{Worker.count}-{RUN_ID}@localhost"
        os.makedirs(LOGS, exist_ok=True)
        self.log_path = os.path.join(LOGS, f"celery-worker-{Worker.count}.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "interop_tasks", "worker",
             "--loglevel=INFO", "--pool=prefork", "--concurrency=2", "-n", self.name,
             *extra_args],
            cwd=HERE, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout=60):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"the worker exited ({self.proc.returncode}); "
                                     f"see {self.log_path}")
            with open(self.log_path, errors="replace") as f:
                return " ready." in f.read()
        wait_until(f"the celery worker to be ready (log {self.log_path})", ready, timeout)
        return self

    def kill9(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=WAIT)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill9()
        self.log.close()


def celery_app(names):
    import interop_tasks
    names.queues.append(interop_tasks.QUEUE)
    names.exchanges.append(interop_tasks.QUEUE)
    return interop_tasks


def celery_tasks(names):
    """20 tasks and a group of 10 through a real worker; results come back over AMQP."""
    tasks = celery_app(names)
    worker = Worker().wait_ready()
    try:
        results = [tasks.add.delay(i, i) for i in range(20)]
        check_eq([r.get(timeout=30) for r in results], [2 * i for i in range(20)],
                 "task results")
        check_eq(group(tasks.add.s(i, 1) for i in range(10))().get(timeout=30),
                 [i + 1 for i in range(10)], "group results")
    finally:
        worker.stop()


def celery_control_ping(names):
    """`celery inspect ping`: a broadcast over the pidbox fanout exchange, replies over AMQP."""
    tasks = celery_app(names)
    worker = Worker().wait_ready()
    try:
        replies = []
        deadline = time.monotonic() + 30
        while not replies and time.monotonic() < deadline:
            replies = tasks.app.control.ping(destination=[worker.name], timeout=2)
        check_eq(replies, [{worker.name: {"ok": "pong"}}], "ping replies")
    finally:
        worker.stop()


def celery_worker_killed_mid_task(names):
    """acks_late: the worker is SIGKILLed (pool and all) while it runs a task; the broker puts
    every unacked task back, and a restarted worker completes them all, the interrupted one
    redelivered."""
    tasks = celery_app(names)
    markers = tempfile.mkdtemp(prefix="interop-celery-")
    worker = Worker().wait_ready()
    try:
        results = [tasks.slow.delay(i, markers, 1.5) for i in range(6)]
        wait_until("a task to start", lambda: glob.glob(os.path.join(markers, "start-*")),
                   timeout=30)
        worker.kill9()
        started = {os.path.basename(p).split("-")[1]
                   for p in glob.glob(os.path.join(markers, "start-*"))}
        done_before = {os.path.basename(p).split("-")[1]
                       for p in glob.glob(os.path.join(markers, "done-*"))}
        interrupted = started - done_before
        check(interrupted, "no task was running when the worker was killed")
    finally:
        worker.stop()
    worker = Worker().wait_ready()
    try:
        check_eq(sorted(r.get(timeout=60) for r in results), list(range(6)), "task results")
        for i in range(6):
            check(os.path.exists(os.path.join(markers, f"done-{i}")), f"task {i} finished")
        for i in interrupted:
            with open(os.path.join(markers, f"done-{i}")) as f:
                check_eq(f.read(), "redelivered", f"the interrupted task {i}'s redelivered flag")
    finally:
        worker.stop()


def celery_worker_survives_broker_restart(names):
    """A running worker reconnects after the broker restarts and goes on running tasks."""
    if not BROKER_RESTART:
        raise Skip("BROKER_RESTART is not set")
    tasks = celery_app(names)
    worker = Worker().wait_ready()
    try:
        check_eq(tasks.add.delay(1, 2).get(timeout=30), 3, "a task before the restart")
        restart_broker()
        # The producer's rpc:// result queue (auto-delete) is gone with the old connection and
        # celery does not declare it again, so the task reports through a marker file instead.
        markers = tempfile.mkdtemp(prefix="interop-celery-")
        tasks.slow.apply_async((7, markers, 0), retry=True, ignore_result=True)
        wait_until("the task sent after the restart to finish",
                   lambda: os.path.exists(os.path.join(markers, "done-7")), timeout=60)
    finally:
        worker.stop()


def celery_eta_and_retry(names):
    """Tasks with a countdown are held unacked by the worker, which raises its basic.qos
    prefetch on the fly to keep receiving other tasks; a task retried with a countdown is
    republished and runs again."""
    tasks = celery_app(names)
    markers = tempfile.mkdtemp(prefix="interop-celery-")
    worker = Worker().wait_ready()
    try:
        later = [tasks.add.apply_async((i, 100), countdown=5) for i in range(4)]
        now = [tasks.add.delay(i, 1) for i in range(4)]
        started = time.monotonic()
        check_eq([r.get(timeout=30) for r in now], [i + 1 for i in range(4)], "immediate tasks")
        check(time.monotonic() - started < 4,
              "the immediate tasks waited behind the countdown ones (prefetch not raised)")
        check_eq([r.get(timeout=30) for r in later], [i + 100 for i in range(4)],
                 "countdown tasks")
        check_eq(tasks.flaky.delay(markers, "a").get(timeout=30), 3, "tries of a retried task")
    finally:
        worker.stop()


def celery_pool_process_lost(names):
    """A task whose pool process dies is rejected with requeue (task_reject_on_worker_lost)
    and redelivered to the same worker."""
    tasks = celery_app(names)
    markers = tempfile.mkdtemp(prefix="interop-celery-")
    worker = Worker().wait_ready()
    try:
        check_eq(tasks.dies_once.delay(markers, "a").get(timeout=60), True,
                 "the redelivered task's redelivered flag")
    finally:
        worker.stop()


def celery_events(names):
    """A worker started with -E sends task events to the celeryev topic exchange; a monitor
    (what flower and `celery events` do) reads them from an auto-delete queue declared with
    x-message-ttl and x-expires."""
    tasks = celery_app(names)
    app = tasks.app
    seen = []
    worker = Worker("-E").wait_ready()
    try:
        with app.connection_for_read() as conn:
            receiver = app.events.Receiver(conn, handlers={
                "task-succeeded": lambda e: seen.append(e["uuid"])})
            with receiver.consumer_context() as (rconn, _channel, _consumers):
                result = tasks.add.delay(2, 2)
                check_eq(result.get(timeout=30), 4, "task result")
                deadline = time.monotonic() + WAIT
                while result.id not in seen and time.monotonic() < deadline:
                    try:
                        rconn.drain_events(timeout=0.5)
                    except TimeoutError:
                        pass
            check(result.id in seen, "no task-succeeded event for the task")
    finally:
        worker.stop()


def kombu_simple_queue(names):
    """kombu's SimpleQueue (durable queue, persistent messages, ack) and a large message."""
    queue = names.queue("kombu_simple")
    names.exchanges.append(queue)
    with kombu.Connection(os.environ["AMQP_URL"], transport_options={"confirm_publish": True}) as c:
        q = c.SimpleQueue(queue)
        for i in range(10):
            q.put({"n": i, "text": "héllo"}, headers={"attempt": i})
        q.put(pattern(3 * 1024 * 1024, 5), serializer=None, content_type="application/data",
              content_encoding="binary")
        for i in range(10):
            m = q.get(timeout=WAIT)
            check_eq(m.payload, {"n": i, "text": "héllo"}, "payload")
            check_eq(m.headers.get("attempt"), i, "header")
            m.ack()
        m = q.get(timeout=WAIT)
        check(m.body == pattern(3 * 1024 * 1024, 5), "the large body came back different")
        m.ack()
        q.close()


def kombu_reconnect_after_restart(names):
    """kombu's ensure/autoretry: a producer publishing across a broker restart reconnects;
    persistent messages in a durable queue are all there afterwards."""
    if not BROKER_RESTART:
        raise Skip("BROKER_RESTART is not set")
    name = names.queue("kombu_durable")
    exchange = kombu.Exchange(names.exchange("kombu_durable"), type="direct", durable=True)
    queue = kombu.Queue(name, exchange, routing_key="k", durable=True)
    with kombu.Connection(os.environ["AMQP_URL"],
                          transport_options={"confirm_publish": True}) as c:
        producer = c.Producer()
        publish = c.ensure(producer, producer.publish, max_retries=30, interval_start=0.2,
                           interval_step=0.5, interval_max=1)
        for i in range(10):
            publish({"n": i}, exchange=exchange, routing_key="k", declare=[queue],
                    delivery_mode=2)
        restart_broker()
        for i in range(10, 20):
            publish({"n": i}, exchange=exchange, routing_key="k", declare=[queue],
                    delivery_mode=2)
    got = []
    with kombu.Connection(os.environ["AMQP_URL"]) as c:
        with c.Consumer(queue, callbacks=[lambda body, m: (got.append(body["n"]), m.ack())]):
            deadline = time.monotonic() + WAIT
            while len(got) < 20 and time.monotonic() < deadline:
                try:
                    c.drain_events(timeout=0.5)
                except TimeoutError:
                    pass
    check_eq(got, list(range(20)), "messages published before and after the restart")


SCENARIOS = [(f.__name__, f) for f in (
    celery_tasks, celery_control_ping, celery_events, celery_eta_and_retry, celery_pool_process_lost,
    celery_worker_killed_mid_task, celery_worker_survives_broker_restart, kombu_simple_queue, kombu_reconnect_after_restart)]

if __name__ == "__main__":
    sys.exit(1 if run("celery", SCENARIOS) else 0)
