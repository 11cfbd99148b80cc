"""The interop scenarios written with pika (BlockingConnection, and SelectConnection for
batched and asynchronous publisher confirms). Run by interop/python/run.sh."""

import datetime
import decimal
import os
import ssl
import sys
import threading
import time

import pika
import pika.exceptions

from common import (BROKER_RESTART, LARGE_SIZES, TOPIC_KEYS, TOPIC_Q1, TOPIC_Q2, WAIT, Skip, check, check_eq,
                    fib, params, pattern, restart_broker, run, wait_until)


def connect():
    return pika.BlockingConnection(params())


def drain(ch, queue):
    out = []
    while True:
        method, _props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return out
        out.append(body.decode())


def next_message(ch, queue, auto_ack=True, what="a message"):
    """One delivery from a consumer on `queue` (the generator API), within WAIT seconds."""
    for method, props, body in ch.consume(queue, auto_ack=auto_ack, inactivity_timeout=WAIT):
        if method is None:
            raise AssertionError(f"timed out waiting for {what}")
        return method, props, body
    raise AssertionError(f"the consumer ended while waiting for {what}")


def hello_world(names):
    conn = connect()
    ch = conn.channel()
    queue = names.queue("hello")
    ch.queue_declare(queue)
    ch.basic_publish("", queue, b"Hello World!")
    method, _props, body = next_message(ch, queue)
    check_eq(body, b"Hello World!", "body")
    check_eq(method.routing_key, queue, "routing key")
    ch.cancel()
    conn.close()


QUORUM = {"x-queue-type": "quorum"}


def work_queues(names, arguments=None, what="task_queue"):
    """Durable queue, persistent tasks, manual ack, prefetch 1: a slow worker holds one task
    while a fast one takes the rest (fair dispatch)."""
    tasks = 12
    queue = names.queue(what)
    done, lock, stop = [], threading.Lock(), threading.Event()
    ready = threading.Barrier(3)

    def worker(label, pause):
        conn = connect()
        ch = conn.channel()
        ch.queue_declare(queue, durable=True, arguments=arguments)
        ch.basic_qos(prefetch_count=1)
        started = False
        for method, _props, body in ch.consume(queue, inactivity_timeout=0.05):
            if not started:
                ready.wait()
                started = True
            if stop.is_set():
                break
            if method is None:
                continue
            time.sleep(pause)
            with lock:
                done.append((label, body.decode()))
            ch.basic_ack(method.delivery_tag)
        ch.cancel()
        conn.close()

    threads = [threading.Thread(target=worker, args=w, daemon=True)
               for w in (("slow", 0.4), ("fast", 0.005))]
    for t in threads:
        t.start()
    ready.wait(timeout=WAIT)
    conn = connect()
    ch = conn.channel()
    for i in range(tasks):
        ch.basic_publish("", queue, f"task {i}".encode(),
                         pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent))
    try:
        wait_until("every task", lambda: len(done) >= tasks, timeout=30)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=WAIT)
    conn.close()
    bodies = sorted((b for _, b in done), key=lambda s: int(s.split()[1]))
    check_eq(bodies, [f"task {i}" for i in range(tasks)], "every task done exactly once")
    slow = sum(1 for w, _ in done if w == "slow")
    fast = sum(1 for w, _ in done if w == "fast")
    check(slow <= 2 and fast >= tasks - 2,
          f"no fair dispatch with prefetch 1: slow worker did {slow} tasks, fast one {fast}")
    return queue


def work_queues_quorum(names):
    """Tutorial 2 on a quorum queue (durable, x-queue-type: quorum): the same fair dispatch;
    then a task a worker gives back (nack, requeue) comes again with x-delivery-count 1, which
    only a quorum queue adds, and a redeclare without the type is refused (406): it is one."""
    queue = work_queues(names, QUORUM, "task_queue_quorum")
    conn = connect()
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("", queue, b"given back",
                     pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent))
    method, _props, body = ch.basic_get(queue, auto_ack=False)
    check_eq(body, b"given back", "the task")
    ch.basic_nack(method.delivery_tag, requeue=True)
    method, props, body = ch.basic_get(queue, auto_ack=False)
    check(method is not None and method.redelivered, "the task came back, redelivered")
    check_eq((props.headers or {}).get("x-delivery-count"), 1, "x-delivery-count")
    ch.basic_ack(method.delivery_tag)
    try:
        ch.queue_declare(queue, durable=True)
        raise AssertionError("a quorum queue was redeclared as a classic one")
    except pika.exceptions.ChannelClosedByBroker as e:
        check_eq(e.reply_code, 406, "reply code of a redeclare as classic")
    conn.close()


def publish_subscribe(names):
    conn = connect()
    ch = conn.channel()
    logs = names.exchange("logs")
    ch.exchange_declare(logs, exchange_type="fanout")
    queues = []
    for _ in range(2):
        q = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(q, logs)
        queues.append(q)
    lines = ["info: one", "warning: two", "error: three"]
    got = {q: [] for q in queues}
    for q in queues:
        ch.basic_consume(q, lambda c, m, p, b, q=q: got[q].append(b.decode()), auto_ack=True)
    for line in lines:
        ch.basic_publish(logs, "ignored", line.encode())
    deadline = time.monotonic() + WAIT
    while any(len(v) < len(lines) for v in got.values()) and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    for q in queues:
        check_eq(got[q], lines, "log lines of one subscriber")
    ch.exchange_delete(logs)
    conn.close()


def routing(names):
    conn = connect()
    ch = conn.channel()
    ch.confirm_delivery()
    direct = names.exchange("direct_logs")
    ch.exchange_declare(direct, exchange_type="direct")
    errors = ch.queue_declare("", exclusive=True).method.queue
    every = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(errors, direct, routing_key="error")
    for key in ("info", "warning", "error"):
        ch.queue_bind(every, direct, routing_key=key)
    for key in ("error", "info", "warning", "debug"):
        ch.basic_publish(direct, key, f"{key} message".encode())
    check_eq(drain(ch, errors), ["error message"], "queue bound to 'error'")
    check_eq(drain(ch, every), ["error message", "info message", "warning message"],
             "queue bound to info, warning and error")
    ch.exchange_delete(direct)
    conn.close()


def topics(names):
    conn = connect()
    ch = conn.channel()
    ch.confirm_delivery()
    topic = names.exchange("topic_logs")
    ch.exchange_declare(topic, exchange_type="topic")
    q1 = ch.queue_declare("", exclusive=True).method.queue
    q2 = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q1, topic, routing_key="*.orange.*")
    ch.queue_bind(q2, topic, routing_key="*.*.rabbit")
    ch.queue_bind(q2, topic, routing_key="lazy.#")
    for key in TOPIC_KEYS:
        ch.basic_publish(topic, key, key.encode())
    check_eq(drain(ch, q1), TOPIC_Q1, "*.orange.*")
    check_eq(drain(ch, q2), TOPIC_Q2, "*.*.rabbit + lazy.#")
    ch.exchange_delete(topic)
    conn.close()


class RpcServer(threading.Thread):
    """Tutorial 6's server on its own connection: fib(n) back to reply_to with the
    correlation_id, acked after replying."""

    def __init__(self, queue, arguments=None):
        super().__init__(daemon=True)
        self.queue = queue
        self.arguments = arguments
        self.seen_reply_to = []
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.error = None

    def run(self):
        try:
            conn = connect()
            ch = conn.channel()
            # A quorum queue is durable only.
            ch.queue_declare(self.queue, durable=self.arguments is not None,
                             arguments=self.arguments)
            ch.basic_qos(prefetch_count=1)
            self.ready.set()
            for method, props, body in ch.consume(self.queue, inactivity_timeout=0.05):
                if self.stop.is_set():
                    break
                if method is None:
                    continue
                self.seen_reply_to.append(props.reply_to)
                answer = str(fib(int(body))).encode()
                ch.basic_publish("", props.reply_to, answer,
                                 pika.BasicProperties(correlation_id=props.correlation_id))
                ch.basic_ack(method.delivery_tag)
            ch.cancel()
            conn.close()
        except Exception as e:  # reported by the client side
            self.error = e
            self.ready.set()


def rpc_calls(conn, ch, queue, reply_to):
    replies = {}
    ch.basic_consume(reply_to, lambda c, m, p, b: replies.__setitem__(p.correlation_id, b),
                     auto_ack=True)
    expected = {}
    for n in range(10):
        corr = f"{n}-{time.time_ns()}"
        ch.basic_publish("", queue, str(n).encode(),
                         pika.BasicProperties(reply_to=reply_to, correlation_id=corr))
        expected[corr] = str(fib(n)).encode()
    deadline = time.monotonic() + WAIT
    while len(replies) < len(expected) and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    check_eq(replies, expected, "RPC answers by correlation_id")


def _rpc(names, what, reply_to, arguments=None):
    server = RpcServer(names.queue(what), arguments)
    server.start()
    server.ready.wait(WAIT)
    if server.error:
        raise server.error
    conn = connect()
    ch = conn.channel()
    try:
        if reply_to is None:
            reply_to = ch.queue_declare("", exclusive=True).method.queue
        rpc_calls(conn, ch, server.queue, reply_to)
    finally:
        server.stop.set()
        server.join(WAIT)
    conn.close()
    return server


def rpc(names):
    _rpc(names, "rpc_queue", None)


def rpc_direct_reply_to(names):
    server = _rpc(names, "rpc_queue_drt", "amq.rabbitmq.reply-to")
    seen = server.seen_reply_to[0] if server.seen_reply_to else None
    check(seen and seen.startswith("amq.rabbitmq.reply-to."),
          f"the server saw reply_to {seen!r}, not a rewritten amq.rabbitmq.reply-to.*")


def rpc_quorum(names):
    """Tutorial 6 with the server consuming a quorum queue; the client's exclusive reply queue."""
    _rpc(names, "rpc_queue_quorum", None, QUORUM)


def rpc_direct_reply_to_quorum(names):
    """Tutorial 6 with the server consuming a quorum queue; replies by direct reply-to."""
    server = _rpc(names, "rpc_queue_drt_quorum", "amq.rabbitmq.reply-to", QUORUM)
    seen = server.seen_reply_to[0] if server.seen_reply_to else None
    check(seen and seen.startswith("amq.rabbitmq.reply-to."),
          f"the server saw reply_to {seen!r}, not a rewritten amq.rabbitmq.reply-to.*")


def message_count(ch, queue):
    return ch.queue_declare(queue, passive=True).method.message_count


def confirms_single(names):
    """BlockingChannel in confirm mode waits for each publish's ack (raises on a nack)."""
    conn = connect()
    ch = conn.channel()
    ch.confirm_delivery()
    queue = names.queue("confirms_single")
    ch.queue_declare(queue)
    for i in range(50):
        ch.basic_publish("", queue, str(i).encode())
    check_eq(message_count(ch, queue), 50, "messages in the queue")
    conn.close()


class AsyncPublisher:
    """SelectConnection publisher: publishes `total` messages in batches of `batch` (waiting
    for every confirm between batches) and counts acks, checking that each is for an
    outstanding publish (multiple acks included)."""

    def __init__(self, queue, total, batch):
        self.queue, self.total, self.batch = queue, total, batch
        self.published = 0
        self.outstanding = set()
        self.acked = 0
        self.error = None
        self.acks_while_publishing = 0
        self.conn = pika.SelectConnection(params(), on_open_callback=self.on_open,
                                          on_open_error_callback=self.fail_open,
                                          on_close_callback=self.on_closed)

    def fail(self, why):
        if self.error is None:
            self.error = why
        if not self.conn.is_closing and not self.conn.is_closed:
            self.conn.close()

    def fail_open(self, _conn, err):
        self.error = f"connecting: {err}"
        self.conn.ioloop.stop()

    def on_closed(self, _conn, _reason):
        self.conn.ioloop.stop()

    def on_open(self, conn):
        conn.channel(on_open_callback=self.on_channel)

    def on_channel(self, ch):
        self.ch = ch
        ch.confirm_delivery(self.on_confirm, callback=lambda _f: ch.queue_declare(
            self.queue, callback=lambda _f: self.publish_batch()))

    def publish_batch(self):
        for _ in range(min(self.batch, self.total - self.published)):
            self.ch.basic_publish("", self.queue, str(self.published).encode())
            self.published += 1
            self.outstanding.add(self.published)

    def on_confirm(self, frame):
        method = frame.method
        if isinstance(method, pika.spec.Basic.Nack):
            return self.fail(f"publish {method.delivery_tag} was nacked")
        tags = ({t for t in self.outstanding if t <= method.delivery_tag} if method.multiple
                else {method.delivery_tag})
        if not tags or not tags <= self.outstanding:
            return self.fail(f"ack {method.delivery_tag} (multiple={method.multiple}) "
                             "for nothing outstanding")
        self.outstanding -= tags
        self.acked += len(tags)
        if self.published < self.total:
            self.acks_while_publishing += 1
        if not self.outstanding:
            if self.published < self.total:
                self.publish_batch()
            else:
                self.conn.close()

    def run(self):
        timer = self.conn.ioloop.call_later(60, lambda: self.fail("timed out"))
        self.conn.ioloop.start()
        self.conn.ioloop.remove_timeout(timer)
        if self.error:
            raise AssertionError(self.error)
        check_eq(self.acked, self.total, "acked publishes")


def confirms_batch(names):
    queue = names.queue("confirms_batch")
    AsyncPublisher(queue, total=500, batch=100).run()
    conn = connect()
    check_eq(message_count(conn.channel(), queue), 500, "messages in the queue")
    conn.close()


def confirms_async(names):
    """Everything published at once from the I/O loop; acks handled by the callback as they
    come."""
    queue = names.queue("confirms_async")
    AsyncPublisher(queue, total=2000, batch=2000).run()
    conn = connect()
    check_eq(message_count(conn.channel(), queue), 2000, "messages in the queue")
    conn.close()


def consumer_cancel_on_delete(names):
    conn = connect()
    ch = conn.channel()
    queue = names.queue("cancel_me")
    ch.queue_declare(queue)
    cancelled = []
    ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    tag = ch.basic_consume(queue, lambda *a: None)
    conn.channel().queue_delete(queue)
    deadline = time.monotonic() + WAIT
    while not cancelled and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    check_eq(cancelled, [tag], "consumer tags cancelled by the broker")
    check(ch.is_open, "the channel closed after basic.cancel")
    ch.queue_declare(names.queue("after_cancel"))
    conn.close()


def mandatory_return(names):
    conn = connect()
    nowhere = names.queue("no_such_queue")
    # With confirms: BlockingChannel raises UnroutableError carrying the basic.return.
    ch = conn.channel()
    ch.confirm_delivery()
    for exchange in ("", "amq.direct"):
        try:
            ch.basic_publish(exchange, nowhere, b"undeliverable",
                             pika.BasicProperties(message_id="m-1"), mandatory=True)
            raise AssertionError("a mandatory publish with no route was not returned")
        except pika.exceptions.UnroutableError as e:
            check_eq(len(e.messages), 1, "returned messages")
            returned = e.messages[0]
            check_eq(returned.method.reply_code, 312, "reply code")
            check_eq(returned.method.reply_text, "NO_ROUTE", "reply text")
            check_eq(returned.method.exchange, exchange, "exchange")
            check_eq(returned.method.routing_key, nowhere, "routing key")
            check_eq(returned.body, b"undeliverable", "body")
            check_eq(returned.properties.message_id, "m-1", "message_id")
    # Without confirms: the on-return callback.
    plain = conn.channel()
    returns = []
    plain.add_on_return_callback(lambda c, m, p, b: returns.append((m.reply_code, b)))
    plain.basic_publish("", nowhere, b"back", mandatory=True)
    deadline = time.monotonic() + WAIT
    while not returns and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    check_eq(returns, [(312, b"back")], "basic.return without confirms")
    conn.close()


def redeclare_406_channel_only(names):
    conn = connect()
    ch1 = conn.channel()
    queue = names.queue("redeclare")
    ch1.queue_declare(queue)
    ch2 = conn.channel()
    try:
        ch2.queue_declare(queue, durable=True)
        raise AssertionError("redeclaring a transient queue as durable succeeded")
    except pika.exceptions.ChannelClosedByBroker as e:
        check_eq(e.reply_code, 406, "reply code")
        check(e.reply_text.startswith("PRECONDITION_FAILED - inequivalent arg 'durable'"),
              f"reply text {e.reply_text!r}")
    check(ch2.is_closed, "the channel that failed is still open")
    check(conn.is_open, "the connection closed")
    ch1.basic_publish("", queue, b"still here")
    got = []
    wait_until("the message on the other channel",
               lambda: got.extend(drain(ch1, queue)) or got)
    check_eq(got, ["still here"], "messages on the surviving channel")
    conn.channel().queue_declare(queue)
    conn.close()


def large_message(names):
    conn = connect()
    ch = conn.channel()
    ch.confirm_delivery()
    queue = names.queue("large")
    ch.queue_declare(queue)
    for i, size in enumerate(LARGE_SIZES):
        ch.basic_publish("", queue, pattern(size, i))
    for i, size in enumerate(LARGE_SIZES):
        method, _props, body = next_message(ch, queue, auto_ack=False, what="a large message")
        check_eq(len(body), size, "body length")
        check(body == pattern(size, i), f"the body of {size} bytes came back different")
        ch.basic_ack(method.delivery_tag)
    ch.cancel()
    conn.close()


def all_field_types():
    """Every field type pika writes: S (str), x (bytes), t, I, l, D, T, F, A, V. (pika cannot
    write floats or the small integer types.)"""
    scalars = {
        "string": "héllo wörld",
        "empty": "",
        "bytes": b"\x00\x01\xfe\xff",
        "true": True,
        "false": False,
        "i32": -320000,
        "i64": -6400000000000,
        "decimal": decimal.Decimal("123.45"),
        "timestamp": datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=datetime.timezone.utc),
        "void": None,
    }
    table = dict(scalars)
    table["table"] = dict(scalars)
    table["array"] = list(scalars.values())
    table["empty_array"] = []
    table["empty_table"] = {}
    return table


def headers_roundtrip(names):
    conn = connect()
    ch = conn.channel()
    ch.confirm_delivery()
    queue = names.queue("headers")
    ch.queue_declare(queue)
    props = pika.BasicProperties(
        content_type="application/json", content_encoding="gzip", headers=all_field_types(),
        delivery_mode=2, priority=7, correlation_id="corr-1", reply_to="reply.queue",
        expiration="600000", message_id="msg-1", timestamp=1700000123, type="order.created",
        user_id="guest", app_id="warren-interop", cluster_id="cluster-a")
    ch.basic_publish("", queue, b"{}", props)
    method, got, _body = ch.basic_get(queue, auto_ack=True)
    check(method is not None, "the message is not in the queue")
    for field in ("content_type", "content_encoding", "delivery_mode", "priority",
                  "correlation_id", "reply_to", "expiration", "message_id", "timestamp",
                  "type", "user_id", "app_id", "cluster_id"):
        check_eq(getattr(got, field), getattr(props, field), field)
    for key, value in props.headers.items():
        check_eq(got.headers.get(key), value, f"header {key}")
    check_eq(sorted(got.headers), sorted(props.headers), "header names")
    conn.close()


def restart_durable(names):
    if not BROKER_RESTART:
        raise Skip("BROKER_RESTART is not set")
    exchange = names.exchange("durable")
    queue = names.queue("durable")
    conn = connect()
    ch = conn.channel()
    ch.confirm_delivery()
    ch.exchange_declare(exchange, exchange_type="direct", durable=True)
    ch.queue_declare(queue, durable=True)
    ch.queue_bind(queue, exchange, routing_key="k")
    for i in range(20):
        ch.basic_publish(exchange, "k", f"persistent {i}".encode(),
                         pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent))
    ch.basic_publish(exchange, "k", b"transient")
    restart_broker()
    try:
        deadline = time.monotonic() + WAIT
        while conn.is_open and time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.1)
        raise AssertionError("the connection opened before the restart still looks open")
    except (pika.exceptions.ConnectionClosed, pika.exceptions.StreamLostError,
            pika.exceptions.AMQPConnectionError):
        pass
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = connect()
            break
        except pika.exceptions.AMQPConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)
    ch = conn.channel()
    ch.exchange_declare(exchange, exchange_type="direct", durable=True, passive=True)
    check_eq(message_count(ch, queue), 20, "messages in the durable queue after the restart")
    ch.basic_publish(exchange, "k", b"after restart")
    expected = [f"persistent {i}" for i in range(20)] + ["after restart"]
    got = []
    wait_until("the messages", lambda: got.extend(drain(ch, queue)) or len(got) >= 21)
    check_eq(got, expected, "messages after the restart (the binding survived too)")
    conn.close()


def tune_negotiation(names):
    """The client asks for a smaller frame_max (4096) and a 1 s heartbeat: after 3.5 s idle the
    connection is alive (both sides heartbeat), and a 300 KiB body crosses in 4 KiB frames."""
    conn = pika.BlockingConnection(params(frame_max=4096, heartbeat=1))
    check_eq(conn._impl.params.frame_max, 4096, "negotiated frame_max")
    check_eq(conn._impl.params.heartbeat, 1, "negotiated heartbeat")
    ch = conn.channel()
    queue = names.queue("tune")
    ch.queue_declare(queue)
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.1)
    check(conn.is_open, "the connection closed while idle with 1 s heartbeats")
    body = pattern(300 * 1024, 9)
    ch.basic_publish("", queue, body)
    method, _props, got = next_message(ch, queue, what="the 300 KiB message")
    check(got == body, "the 300 KiB body came back different")
    ch.cancel()
    conn.close()


def headers_exchange(names):
    """A headers exchange routes on what pika writes: str (`S`) and bytes (`x`) headers match
    each other, as do int (`I`), large int (`l`) and datetime (`T`) of the same value; x-match
    all and any."""
    conn = connect()
    ch = conn.channel()
    ch.confirm_delivery()
    x = names.exchange("headers")
    ch.exchange_declare(x, exchange_type="headers")
    when = datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=datetime.timezone.utc)
    bindings = {
        "all_str": ({"x-match": "all", "format": "pdf", "type": "report"}, ["both", "bytes"]),
        "any_str": ({"x-match": "any", "format": "pdf", "type": "report"},
                    ["both", "pdf", "bytes"]),
        "int": ({"n": 1700000000}, ["int", "time"]),
        "big": ({"big": 2 ** 40}, ["big"]),
        "time": ({"t": when}, ["time_t"]),
    }
    queues = {}
    for name, (args, _) in bindings.items():
        queues[name] = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(queues[name], x, arguments=args)
    messages = [
        ("both", {"format": "pdf", "type": "report"}),
        ("pdf", {"format": "pdf"}),
        ("bytes", {"format": b"pdf", "type": b"report"}),
        ("int", {"n": 1700000000}),
        ("time", {"n": when}),
        ("time_t", {"t": 1700000000}),
        ("big", {"big": 2 ** 40}),
        ("none", {"format": "zip"}),
    ]
    for key, headers in messages:
        ch.basic_publish(x, key, key.encode(), pika.BasicProperties(headers=headers))
    for name, (_args, expected) in bindings.items():
        check_eq(drain(ch, queues[name]), expected, f"binding {name}")
    ch.exchange_delete(x)
    conn.close()


def quorum_queue(names):
    """A quorum queue (x-queue-type: quorum) as RabbitMQ 3.10+ runs it: durable only (406),
    confirmed publishes, x-delivery-count on basic.get (0, then one more per return), and
    x-delivery-limit dead-lettering with reason delivery_limit."""
    conn = connect()
    ch = conn.channel()
    queue, dlq = names.queue("quorum"), names.queue("quorum_dlq")
    quorum = {"x-queue-type": "quorum"}
    try:
        ch.queue_declare(queue, arguments=quorum)
        raise AssertionError("a non-durable quorum queue was declared")
    except pika.exceptions.ChannelClosedByBroker as e:
        check_eq((e.reply_code, e.reply_text),
                 (406, f"PRECONDITION_FAILED - invalid property 'non-durable' for queue '{queue}' in vhost '/'"),
                 "non-durable quorum queue")
    ch = conn.channel()
    ch.queue_declare(dlq, durable=True)
    ch.queue_declare(queue, durable=True, arguments={
        **quorum, "x-delivery-limit": 1,
        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq})
    ch.confirm_delivery()
    ch.basic_publish("", queue, b"poison")
    for returns in (0, 1):
        method, props, body = ch.basic_get(queue, auto_ack=False)
        check(method is not None, "the message is in the quorum queue")
        check_eq((body, (props.headers or {}).get("x-delivery-count")), (b"poison", returns),
                 "body and x-delivery-count")
        check_eq(method.redelivered, returns > 0, "redelivered")
        ch.basic_nack(method.delivery_tag, requeue=True)
    got = []

    def dead():
        method, props, body = ch.basic_get(dlq, auto_ack=True)
        if method is not None:
            got.append((body, props.headers["x-death"][0]["reason"]))
        return got
    wait_until("the dead letter", dead)
    check_eq(got, [(b"poison", "delivery_limit")], "dead letter and x-death reason")
    check_eq(ch.queue_declare(queue, durable=True, arguments=quorum, passive=True).method.message_count,
             0, "messages left in the quorum queue")
    ch.queue_delete(queue)
    ch.queue_delete(dlq)
    conn.close()


def stream_queue(names):
    """A stream (x-queue-type: stream) as RabbitMQ 3.10+ runs it over AMQP 0-9-1: durable only
    (406), confirmed appends, consumers that need a prefetch (406) and start where
    x-stream-offset says (first, last, an offset, an interval), an x-stream-offset header on
    every delivery, acks that remove nothing, and basic.get refused with 540."""
    conn = connect()
    ch = conn.channel()
    queue = names.queue("stream")
    stream = {"x-queue-type": "stream"}
    try:
        ch.queue_declare(queue, arguments=stream)
        raise AssertionError("a non-durable stream was declared")
    except pika.exceptions.ChannelClosedByBroker as e:
        check_eq((e.reply_code, e.reply_text),
                 (406, f"PRECONDITION_FAILED - invalid property 'non-durable' for queue '{queue}' in vhost '/'"),
                 "non-durable stream")
    ch = conn.channel()
    ch.queue_declare(queue, durable=True, arguments={**stream, "x-max-age": "7D"})
    ch.confirm_delivery()
    for i in range(10):
        ch.basic_publish("", queue, f"m{i}".encode(), pika.BasicProperties(headers={"i": i}))
    try:
        ch.basic_consume(queue, lambda *a: None)
        raise AssertionError("a stream consumer without a prefetch was accepted")
    except pika.exceptions.ChannelClosedByBroker as e:
        check_eq((e.reply_code, e.reply_text),
                 (406, f"PRECONDITION_FAILED - consumer prefetch count is not set for 'queue '{queue}' in vhost '/''"),
                 "consumer without prefetch")

    def read(offset):
        ch = conn.channel()
        ch.basic_qos(prefetch_count=4)
        got = []

        def on_message(ch_, method, props, body):
            got.append((props.headers["x-stream-offset"], body.decode()))
            ch_.basic_ack(method.delivery_tag)
        ch.basic_consume(queue, on_message, arguments={"x-stream-offset": offset})
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            conn.process_data_events(0.3)
            if got and len(got) == len(set(got)) and (got[-1][0] == 9):
                break
        ch.close()
        return got
    check_eq(read("first"), [(i, f"m{i}") for i in range(10)], "from first, acked")
    check_eq(read("first")[:1], [(0, "m0")], "acks removed nothing")
    check_eq(read(7), [(i, f"m{i}") for i in range(7, 10)], "from offset 7")
    check_eq(read("last"), [(9, "m9")], "last: the last chunk (one message per confirm)")
    check_eq(len(read("1h")), 10, "an interval")
    ch = conn.channel()
    # (declare-ok's message count: Warren's is exact, RabbitMQ's lags by its stats interval.)
    ch.queue_declare(queue, durable=True, arguments={**stream, "x-max-age": "7D"}, passive=True)
    try:
        ch.basic_get(queue)
        raise AssertionError("basic.get on a stream was answered")
    except pika.exceptions.ConnectionClosedByBroker as e:
        check_eq((e.reply_code, e.reply_text),
                 (540, f"NOT_IMPLEMENTED - basic.get not supported by stream queues queue '{queue}' in vhost '/'"),
                 "basic.get")
    conn = connect()
    conn.channel().queue_delete(queue)
    conn.close()


def tls_params(external):
    """$AMQPS_URL with the server verified against $AMQPS_CACERT; with `external`, the client
    certificate ($AMQPS_CERT, CN=guest) and SASL EXTERNAL instead of the URL's password."""
    url = os.environ.get("AMQPS_URL", "")
    if not url:
        raise Skip("no AMQPS_URL: this broker has no TLS listener here")
    ctx = ssl.create_default_context(cafile=os.environ["AMQPS_CACERT"])
    if external:
        ctx.load_cert_chain(os.environ["AMQPS_CERT"], os.environ["AMQPS_KEY"])
    p = pika.URLParameters(url)
    p.ssl_options = pika.SSLOptions(ctx, "localhost")
    p.connection_attempts = 1
    p.socket_timeout = WAIT
    if external:
        p.credentials = pika.credentials.ExternalCredentials()
    return p


def _tls_round_trip(names, external):
    conn = pika.BlockingConnection(tls_params(external))
    ch = conn.channel()
    queue = names.queue("tls_external" if external else "tls")
    ch.queue_declare(queue)
    ch.basic_publish("", queue, b"over TLS")
    _method, _props, body = next_message(ch, queue)
    check_eq(body, b"over TLS", "body")
    ch.cancel()
    ch.queue_delete(queue)
    conn.close()


def tls(names):
    """AMQPS: the server's certificate verified against the test CA, PLAIN login."""
    _tls_round_trip(names, external=False)


def tls_external(names):
    """Mutual TLS: the client certificate's CN (guest) logs in with SASL EXTERNAL."""
    _tls_round_trip(names, external=True)


SCENARIOS = [(f.__name__, f) for f in (
    hello_world, work_queues, publish_subscribe, routing, topics, rpc, rpc_direct_reply_to,
    confirms_single, confirms_batch, confirms_async, consumer_cancel_on_delete,
    mandatory_return, redeclare_406_channel_only, large_message, headers_roundtrip,
    restart_durable, tune_negotiation, headers_exchange, quorum_queue, work_queues_quorum,
    rpc_quorum, rpc_direct_reply_to_quorum, stream_queue, tls, tls_external)]

if __name__ == "__main__":
    sys.exit(1 if run("pika", SCENARIOS) else 0)
