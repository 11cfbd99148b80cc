"""pika against Warren's AMQPS listener: TLS with the server verified against the test's CA and
PLAIN as guest, then mutual TLS with SASL EXTERNAL as the certificate's CN. Arguments: port,
CA file, client certificate, client key. Prints one line per check; exits non-zero on failure."""

import ssl
import sys

import pika

port, ca, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]


def context(with_client_cert):
    ctx = ssl.create_default_context(cafile=ca)
    if with_client_cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def round_trip(conn, queue):
    ch = conn.channel()
    ch.queue_declare(queue, auto_delete=True)
    ch.basic_publish("", queue, b"over tls")
    for _ in range(50):
        method, _props, body = ch.basic_get(queue, auto_ack=True)
        if method is not None:
            assert body == b"over tls", body
            return
        conn.sleep(0.05)
    raise AssertionError("message not delivered")


params = pika.ConnectionParameters("localhost", port, heartbeat=0,
                                   ssl_options=pika.SSLOptions(context(False), "localhost"))
conn = pika.BlockingConnection(params)
round_trip(conn, "pika.tls")
conn.close()
print("TLS with PLAIN ok")

params = pika.ConnectionParameters("localhost", port, heartbeat=0,
                                   credentials=pika.credentials.ExternalCredentials(),
                                   ssl_options=pika.SSLOptions(context(True), "localhost"))
conn = pika.BlockingConnection(params)
round_trip(conn, "pika.external")
conn.close()
print("mutual TLS with EXTERNAL ok")
print("PIKA TLS OK")
