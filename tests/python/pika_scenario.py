"""A pika client against Warren: handshake, capabilities, declare, publish with confirms, consume,
ack, a 404 that closes only its channel. Prints one line per check; exits non-zero on failure."""

import sys

import pika

port = int(sys.argv[1])
conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port, heartbeat=0))
caps = conn._impl.server_properties["capabilities"]
for cap in ("publisher_confirms", "basic.nack", "consumer_cancel_notify", "exchange_exchange_bindings",
            "authentication_failure_close", "per_consumer_qos", "direct_reply_to"):
    assert caps.get(cap) is True, f"capability {cap} missing: {caps}"
assert conn._impl.server_properties["product"] == "Warren", conn._impl.server_properties
print("capabilities ok")

ch = conn.channel()
ch.confirm_delivery()
ch.exchange_declare("pika.topic", "topic")
q = ch.queue_declare("", exclusive=True).method.queue
ch.queue_bind(q, "pika.topic", "orders.*")
headers = {"s": "text", "i": 7, "neg": -3, "t": True, "nested": {"a": [1, "two"]}}
for i in range(10):
    ch.basic_publish("pika.topic", "orders.new", b"order-%d" % i,
                     pika.BasicProperties(headers=headers, message_id=str(i), delivery_mode=2), mandatory=True)
print("published with confirms")

got = []
for method, props, body in ch.consume(q, inactivity_timeout=5):
    assert method is not None, "timed out waiting for deliveries"
    assert props.headers == headers, props.headers
    got.append(body)
    ch.basic_ack(method.delivery_tag)
    if len(got) == 10:
        break
ch.cancel()
assert got == [b"order-%d" % i for i in range(10)], got
print("consumed in order")

try:
    ch.queue_declare("does-not-exist", passive=True)
    raise AssertionError("passive declare of a missing queue succeeded")
except pika.exceptions.ChannelClosedByBroker as e:
    assert e.reply_code == 404, e
print("404 closed the channel")

ch2 = conn.channel()
ch2.queue_declare("pika.after", auto_delete=True)
conn.close()
print("PIKA OK")
