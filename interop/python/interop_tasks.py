"""The Celery app the celery scenarios run: broker AMQP_URL, results over AMQP (rpc://),
late acks (a task's message is acked only after the task finished)."""

import os
import time

from celery import Celery

RUN_ID = os.environ.get("INTEROP_RUN_ID", "local")
QUEUE = f"interop.celery.tasks.{RUN_ID}"

app = Celery("interop_tasks", broker=os.environ["AMQP_URL"], backend="rpc://")
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue=QUEUE,
    task_default_exchange=QUEUE,
    task_default_routing_key=QUEUE,
    task_queue_ha_policy=None,
    broker_connection_retry_on_startup=True,
    broker_connection_timeout=10,
    result_expires=600,
    worker_hijack_root_logger=False,
)


@app.task
def add(x, y):
    return x + y


@app.task(bind=True)
def slow(self, i, marker_dir, seconds):
    """Marks its start (with the message's redelivered flag), sleeps, marks its end."""
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    path = os.path.join(marker_dir, f"start-{i}-{time.time_ns()}")
    with open(path, "w") as f:
        f.write("redelivered" if redelivered else "first")
    time.sleep(seconds)
    with open(os.path.join(marker_dir, f"done-{i}"), "w") as f:
        f.write("redelivered" if redelivered else "first")
    return i


@app.task(bind=True, max_retries=3)
def flaky(self, marker_dir, key):
    """Fails (and is retried with a countdown) until it has run three times."""
    path = os.path.join(marker_dir, f"try-{key}-{time.time_ns()}")
    open(path, "w").close()
    tries = len([p for p in os.listdir(marker_dir) if p.startswith(f"try-{key}-")])
    if tries < 3:
        raise self.retry(countdown=0.5)
    return tries


@app.task(bind=True)
def dies_once(self, marker_dir, key):
    """Kills its own pool process the first time it runs (task_reject_on_worker_lost requeues
    it); succeeds when redelivered."""
    first = os.path.join(marker_dir, f"died-{key}")
    if not os.path.exists(first):
        open(first, "w").close()
        os._exit(1)
    return bool((self.request.delivery_info or {}).get("redelivered"))
