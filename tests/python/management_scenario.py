"""The management HTTP API through Python `requests`, as monitoring scripts use it.

Usage: management_scenario.py PORT  (the API on 127.0.0.1:PORT, guest/guest).
Prints MANAGEMENT OK at the end; any failed check raises.
"""
import sys

import requests

base = "http://127.0.0.1:%s/api" % sys.argv[1]
s = requests.Session()
s.auth = ("guest", "guest")


def check(got, want, what):
    if got != want:
        raise AssertionError("%s: got %r, want %r" % (what, got, want))


o = s.get(base + "/overview")
check(o.status_code, 200, "overview status")
check(o.headers["content-type"].split(";")[0], "application/json", "overview type")
for key in ("rabbitmq_version", "object_totals", "queue_totals", "message_stats", "node"):
    if key not in o.json():
        raise AssertionError("overview lacks %s" % key)

check(s.put(base + "/queues/%2F/py-q", json={"durable": "true"}).status_code, 201, "create")
check(s.put(base + "/queues/%2F/py-q", json={"durable": "true"}).status_code, 204, "again")
r = s.put(base + "/queues/%2F/py-q", json={"durable": "false"})
check(r.status_code, 400, "inequivalent")
check(r.json()["error"], "bad_request", "inequivalent shape")

publish = base + "/exchanges/%2F/amq.default/publish"
body = {"properties": {"delivery_mode": 2}, "routing_key": "py-q",
        "payload": "aGVsbG8=", "payload_encoding": "base64"}
check(s.post(publish, json=body).json(), {"routed": True}, "publish")
check(s.get(base + "/queues/%2F/py-q").json()["messages"], 1, "depth")
got = s.post(base + "/queues/%2F/py-q/get",
             json={"count": "1", "ackmode": "ack_requeue_false", "encoding": "auto"}).json()
check([m["payload"] for m in got], ["hello"], "get")
check(got[0]["properties"].get("delivery_mode"), 2, "properties")
check(s.get(base + "/queues/%2F/py-q").json()["messages"], 0, "acked")

names = [q["name"] for q in s.get(base + "/queues", params={"columns": "name"}).json()]
check(names, ["py-q"], "columns=name")
check(s.delete(base + "/queues/%2F/py-q").status_code, 204, "delete")
check(s.get(base + "/queues/%2F/py-q").status_code, 404, "gone")
check(s.get(base + "/overview", auth=("guest", "nope")).status_code, 401, "bad password")
print("MANAGEMENT OK")
