"""Scenarios for the Python clients that showed issue 11's differences from RabbitMQ: amqpstorm
and rabbitpy (body frames whose payload is frame_max bytes, i.e. frames of frame_max + 8),
aio-pika/aiormq (explicit channel numbers up to 65535), and all three for a crossing
channel.close (publish to a missing exchange, close the channel at once: the connection and its
other channels must live on). Run by interop/python/run.sh; prints one summary line per library:
`amqpstorm: …`, `rabbitpy: …`, `aio-pika: …`."""

import asyncio
import sys
import time

import aio_pika
import aiormq.exceptions
import amqpstorm
import rabbitpy

from common import AMQP_URL, WAIT, check, check_eq, pattern, run

# Bodies larger than one frame at the default frame_max (128 KiB), one of exactly one full
# payload of frame_max bytes (a single frame of frame_max + 8 from these clients), and several
# MiB over many frames.
SIZES = [131072, 131072 + 1, 300_000, 6 * 1024 * 1024 + 13]


# ---------------------------------------------------------------------------------------------
# amqpstorm


def storm_connect():
    return amqpstorm.UriConnection(AMQP_URL)


def storm_large_message(names):
    q = names.queue("large")
    conn = storm_connect()
    try:
        ch = conn.channel()
        ch.queue.declare(q)
        for i, size in enumerate(SIZES):
            body = pattern(size, i)
            ch.basic.publish(body, q)
            got = None
            deadline = time.monotonic() + WAIT
            while got is None and time.monotonic() < deadline:
                got = ch.basic.get(q, no_ack=True, auto_decode=False)
                if got is None:
                    time.sleep(0.02)
            check(got is not None, f"message of {size} bytes arrived")
            check_eq(len(got.body), size, "body length")
            check(got.body == body, f"body of {size} bytes intact")
        ch.queue.delete(q)
    finally:
        conn.close()


def storm_crossing_close(names):
    q = names.queue("crossing")
    conn = storm_connect()
    try:
        other = conn.channel()
        other.queue.declare(q)
        ch = conn.channel()
        ch.basic.publish(b"x", "rk", exchange=names.exchange("missing"))
        try:
            ch.close()
        except amqpstorm.AMQPError:
            pass  # the broker's 404 may be reported here; either way the channel is gone
        check(conn.is_open, "connection still open")
        other.basic.publish(b"after", q)
        got = None
        deadline = time.monotonic() + WAIT
        while got is None and time.monotonic() < deadline:
            got = other.basic.get(q, no_ack=True, auto_decode=False)
        check(got is not None and got.body == b"after", "the other channel goes on")
        conn.channel().queue.declare(names.queue("new-channel"))
        other.queue.delete(q)
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# rabbitpy


def rabbitpy_get(ch, q):
    queue = rabbitpy.Queue(ch, q)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        msg = queue.get(acknowledge=False)
        if msg is not None:
            return msg
        time.sleep(0.02)
    raise AssertionError(f"nothing arrived on {q}")


def rabbitpy_large_message(names):
    q = names.queue("large")
    with rabbitpy.Connection(AMQP_URL) as conn:
        with conn.channel() as ch:
            rabbitpy.Queue(ch, q).declare()
            for i, size in enumerate(SIZES):
                body = pattern(size, i)
                rabbitpy.Message(ch, body, opinionated=False).publish("", q)
                got = rabbitpy_get(ch, q)
                check_eq(len(got.body), size, "body length")
                check(got.body == body, f"body of {size} bytes intact")
            rabbitpy.Queue(ch, q).delete()


def rabbitpy_crossing_close(names):
    q = names.queue("crossing")
    with rabbitpy.Connection(AMQP_URL) as conn:
        other = conn.channel()
        rabbitpy.Queue(other, q).declare()
        ch = conn.channel()
        rabbitpy.Message(ch, b"x", opinionated=False).publish(names.exchange("missing"), "rk")
        try:
            ch.close()
        except rabbitpy.exceptions.AMQPException:
            pass
        rabbitpy.Message(other, b"after", opinionated=False).publish("", q)
        got = rabbitpy_get(other, q)
        check_eq(got.body, b"after", "the other channel goes on")
        with conn.channel() as again:
            rabbitpy.Queue(again, names.queue("new-channel")).declare()
        rabbitpy.Queue(other, q).delete()
        other.close()


# ---------------------------------------------------------------------------------------------
# aio-pika (aiormq underneath)


def aio(coro_fn):
    def scenario(names):
        asyncio.run(asyncio.wait_for(coro_fn(names), 60))

    scenario.__name__ = coro_fn.__name__
    return scenario


async def aio_get(queue):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        msg = await queue.get(no_ack=True, fail=False)
        if msg is not None:
            return msg
        await asyncio.sleep(0.02)
    raise AssertionError(f"nothing arrived on {queue.name}")


@aio
async def aio_large_message(names):
    q = names.queue("large")
    conn = await aio_pika.connect(AMQP_URL)
    try:
        ch = await conn.channel()
        queue = await ch.declare_queue(q)
        for i, size in enumerate(SIZES):
            body = pattern(size, i)
            await ch.default_exchange.publish(aio_pika.Message(body), routing_key=q)
            got = await aio_get(queue)
            check_eq(len(got.body), size, "body length")
            check(got.body == body, f"body of {size} bytes intact")
        await queue.delete()
    finally:
        await conn.close()


@aio
async def aio_channel_numbers(names):
    conn = await aio_pika.connect(AMQP_URL)
    try:
        q = names.queue("numbers")
        for number in (65535, 40000, 2048, 7):
            ch = await conn.channel(channel_number=number)
            queue = await ch.declare_queue(q)
            await ch.default_exchange.publish(aio_pika.Message(str(number).encode()), routing_key=q)
            got = await aio_get(queue)
            check_eq(got.body, str(number).encode(), f"message through channel {number}")
            await ch.close()
        ch = await conn.channel()
        await ch.queue_delete(q)
    finally:
        await conn.close()


@aio
async def aio_crossing_close(names):
    conn = await aio_pika.connect(AMQP_URL)
    try:
        q = names.queue("crossing")
        other = await conn.channel()
        queue = await other.declare_queue(q)
        ch = await conn.channel(publisher_confirms=False)
        missing = await ch.get_exchange(names.exchange("missing"), ensure=False)
        await missing.publish(aio_pika.Message(b"x"), routing_key="rk")
        try:
            await ch.close()
        except (aiormq.exceptions.AMQPError, aio_pika.exceptions.AMQPException):
            pass
        check(not conn.is_closed, "connection still open")
        await other.default_exchange.publish(aio_pika.Message(b"after"), routing_key=q)
        got = await aio_get(queue)
        check_eq(got.body, b"after", "the other channel goes on")
        again = await conn.channel()
        await again.declare_queue(names.queue("new-channel"))
        await queue.delete()
    finally:
        await conn.close()


LIBRARIES = [
    ("amqpstorm", [("large_message", storm_large_message),
                   ("crossing_close", storm_crossing_close)]),
    ("rabbitpy", [("large_message", rabbitpy_large_message),
                  ("crossing_close", rabbitpy_crossing_close)]),
    ("aio-pika", [("large_message", aio_large_message),
                  ("channel_numbers", aio_channel_numbers),
                  ("crossing_close", aio_crossing_close)]),
]

if __name__ == "__main__":
    failed = 0
    for client, scenarios in LIBRARIES:
        failed += run(client, scenarios)
    sys.exit(1 if failed else 0)
