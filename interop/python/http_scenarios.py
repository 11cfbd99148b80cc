"""The management HTTP API through Python `requests`, as operators' scripts call it: the endpoints
that the rabbitmqadmin scenarios (interop/rabbitmqadmin) do not cover. Each scenario checks
status codes, JSON shapes and semantics that RabbitMQ 3.10's management plugin answers, so the
same script passes against RabbitMQ and Warren (interop/README.md). Needs MANAGEMENT_URL and
AMQP_URL (a pika connection is the client the API lists and closes)."""

import base64
import os
import sys
import time
import urllib.parse

import pika
import requests

from common import RUN_ID, Skip, check, check_eq, params, run, wait_until

MANAGEMENT_URL = os.environ.get("MANAGEMENT_URL", "").rstrip("/")
GUEST = ("guest", "guest")
# RabbitMQ publishes connection and channel stats on a 5 s timer: lists can lag that long.
STATS_WAIT = 20.0


def url(path):
    return f"{MANAGEMENT_URL}/api/{path}"


def q(name):
    """One path segment, percent-encoded the way clients send names (`/` as %2F)."""
    return urllib.parse.quote(name, safe="")


def api(method, path, body=None, auth=GUEST, **kwargs):
    if not MANAGEMENT_URL:
        raise Skip("MANAGEMENT_URL is not set")
    return requests.request(method, url(path), json=body, auth=auth, timeout=30, **kwargs)


def expect(resp, status, what):
    if resp.status_code != status:
        raise AssertionError(f"{what}: HTTP {resp.status_code} (expected {status}): {resp.text[:300]}")
    return resp.json() if resp.content and status != 204 else None


def error_shape(resp, status, error, what):
    body = expect(resp, status, what)
    check(isinstance(body, dict) and body.get("error") == error and "reason" in body,
          f"{what}: error body {body!r}, expected error {error!r} with a reason")
    return body["reason"]


def overview_nodes_and_whoami(names):
    overview = expect(api("GET", "overview"), 200, "GET /api/overview")
    for key in ("management_version", "rabbitmq_version", "cluster_name", "node",
                "object_totals", "queue_totals", "listeners"):
        check(key in overview, f"overview has {key}: {sorted(overview)}")
    for key in ("connections", "channels", "exchanges", "queues", "consumers"):
        check(isinstance(overview["object_totals"].get(key), int), f"object_totals.{key}")
    check(any(l.get("protocol") == "amqp" for l in overview["listeners"]), "an amqp listener")
    nodes = expect(api("GET", "nodes"), 200, "GET /api/nodes")
    check(len(nodes) >= 1 and nodes[0].get("name") == overview["node"], f"nodes {nodes!r:.200}")
    node = expect(api("GET", f"nodes/{q(overview['node'])}"), 200, "GET /api/nodes/{name}")
    check(node.get("running") is True, "the node is running")
    for key in ("mem_used", "mem_limit", "fd_used", "disk_free", "uptime"):
        check(key in node, f"node has {key}")
    me = expect(api("GET", "whoami"), 200, "GET /api/whoami")
    check_eq(me.get("name"), "guest", "whoami name")
    tags = me.get("tags")
    check("administrator" in (tags if isinstance(tags, list) else str(tags).split(",")),
          f"guest is an administrator: {tags!r}")
    name = expect(api("GET", "cluster-name"), 200, "GET /api/cluster-name")
    check_eq(name.get("name"), overview["cluster_name"], "cluster-name")


def authentication_and_errors(names):
    anonymous = api("GET", "overview", auth=None)
    check_eq(anonymous.status_code, 401, "no credentials")
    check_eq(anonymous.headers.get("www-authenticate"), 'Basic realm="RabbitMQ Management"',
             "www-authenticate")
    # RabbitMQ spells this one with a z (and the missing-tag one with an s).
    reason = error_shape(api("GET", "overview", auth=("guest", "wrong")), 401, "not_authorized",
                         "a wrong password")
    check_eq(reason, "Login failed", "the reason")
    user = f"interop-http-notag-{RUN_ID}"
    expect(api("PUT", f"users/{q(user)}", {"password": "pw", "tags": ""}), 201, "PUT a user")
    try:
        reason = error_shape(api("GET", "overview", auth=(user, "pw")), 401, "not_authorised",
                             "a user without a management tag")
        check_eq(reason, "Not management user", "the reason")
    finally:
        api("DELETE", f"users/{q(user)}")
    queue = names.queue("json")
    bad = requests.put(url(f"queues/%2F/{q(queue)}"), data="{bad", auth=GUEST, timeout=30,
                       headers={"content-type": "application/json"})
    error_shape(bad, 400, "bad_request", "malformed JSON")
    reason = error_shape(api("GET", f"queues/%2F/{q(queue)}"), 404, "Object Not Found",
                         "a missing queue")
    check_eq(reason, "Not Found", "404 reason")
    error_shape(api("GET", "queues/no-such-vhost-" + RUN_ID), 404, "Object Not Found",
                "a missing vhost")


def queue_declare_equivalence(names):
    queue = names.queue("decl")
    path = f"queues/%2F/{q(queue)}"
    expect(api("PUT", path, {"durable": True, "arguments": {"x-max-length": 5}}), 201, "create")
    expect(api("PUT", path, {"durable": True, "arguments": {"x-max-length": 5}}), 204, "again")
    reason = error_shape(api("PUT", path, {"durable": False}), 400, "bad_request",
                         "redeclared non-durable")
    check("inequivalent arg 'durable'" in reason, f"reason: {reason}")
    # Counters come with the first statistics emission (RabbitMQ: up to 5 s).
    wait_until("the queue's counters", lambda: "messages" in api("GET", path).json(),
               timeout=STATS_WAIT, step=0.5)
    info = expect(api("GET", path), 200, "GET the queue")
    check_eq((info["name"], info["vhost"], info["durable"], info["arguments"]),
             (queue, "/", True, {"x-max-length": 5}), "the queue")
    for key in ("messages", "messages_ready", "messages_unacknowledged", "consumers",
                "auto_delete", "exclusive", "state", "node", "type"):
        check(key in info, f"queue has {key}")
    expect(api("DELETE", path), 204, "delete")
    expect(api("GET", path), 404, "gone")


def bindings_with_properties_key(names):
    queue = names.queue("bind")
    expect(api("PUT", f"queues/%2F/{q(queue)}", {"durable": False}), 201, "declare")
    base = f"bindings/%2F/e/amq.direct/q/{q(queue)}"
    created = api("POST", base, {"routing_key": "rk.1", "arguments": {}})
    expect(created, 201, "POST a binding")
    check_eq(created.headers.get("location"), f"{queue}/rk.1", "Location")
    one = expect(api("GET", f"{base}/rk.1"), 200, "GET by properties_key")
    check_eq((one["source"], one["destination"], one["destination_type"], one["routing_key"],
              one["properties_key"]), ("amq.direct", queue, "queue", "rk.1", "rk.1"), "binding")
    listed = expect(api("GET", f"queues/%2F/{q(queue)}/bindings"), 200, "the queue's bindings")
    check_eq(sorted(b["source"] for b in listed), ["", "amq.direct"], "default + amq.direct")
    source = expect(api("GET", "exchanges/%2F/amq.direct/bindings/source"), 200, "source")
    check(any(b["destination"] == queue for b in source), "listed by its source exchange")
    expect(api("DELETE", f"{base}/rk.1"), 204, "DELETE by properties_key")
    expect(api("GET", f"{base}/rk.1"), 404, "gone")


def publish_and_get_ackmodes(names):
    queue = names.queue("get")
    expect(api("PUT", f"queues/%2F/{q(queue)}", {"durable": False}), 201, "declare")
    publish = "exchanges/%2F/amq.default/publish"
    for payload, encoding in (("one", "string"), (base64.b64encode(b"\x00\xff").decode(), "base64")):
        routed = expect(api("POST", publish, {"properties": {"headers": {"h": 1}}, "routing_key": queue,
                                             "payload": payload, "payload_encoding": encoding}),
                        200, "publish")
        check_eq(routed, {"routed": True}, "routed")
    unrouted = expect(api("POST", publish, {"properties": {}, "routing_key": "no-such-queue-" + RUN_ID,
                                            "payload": "x", "payload_encoding": "string"}), 200,
                      "publish unroutable")
    check_eq(unrouted, {"routed": False}, "not routed")
    get = f"queues/%2F/{q(queue)}/get"
    peek = expect(api("POST", get, {"count": 5, "ackmode": "ack_requeue_true", "encoding": "auto"}),
                  200, "get, requeue")
    check_eq([m["payload"] for m in peek], ["one", base64.b64encode(b"\x00\xff").decode()], "payloads")
    check_eq([m["payload_encoding"] for m in peek], ["string", "base64"], "encodings")
    check_eq([m["message_count"] for m in peek], [1, 0], "message_count")
    first = peek[0]
    check_eq((first["exchange"], first["routing_key"], first["redelivered"], first["payload_bytes"]),
             ("", queue, False, 3), "the first message")
    check_eq(first["properties"].get("headers"), {"h": 1}, "headers")
    taken = expect(api("POST", get, {"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"}),
                   200, "get, ack")
    check_eq((taken[0]["payload"], taken[0]["redelivered"]), ("one", True), "taken, redelivered")
    wait_until("one message left",
               lambda: api("GET", f"queues/%2F/{q(queue)}").json().get("messages") == 1,
               timeout=STATS_WAIT, step=0.5)
    expect(api("DELETE", f"queues/%2F/{q(queue)}/contents"), 204, "purge")
    left = expect(api("POST", get, {"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"}),
                  200, "get from empty")
    check_eq(left, [], "empty after purge")


def connections_channels_consumers(names):
    queue = names.queue("conn")
    name = f"interop-http-{RUN_ID}"
    conn = pika.BlockingConnection(params(client_properties={"connection_name": name}))
    try:
        ch = conn.channel()
        ch.queue_declare(queue, auto_delete=True)
        tag = ch.basic_consume(queue, lambda *a: None, auto_ack=False)

        def mine():
            rows = api("GET", "connections").json()
            return [c for c in rows if c.get("client_properties", {}).get("connection_name") == name]

        wait_until("the connection listed", lambda: len(mine()) == 1, timeout=STATS_WAIT, step=0.5)
        row = mine()[0]
        check_eq((row["user"], row["vhost"], row["protocol"].startswith("AMQP 0-9-1")),
                 ("guest", "/", True), "the connection")
        wait_until("its channel counted", lambda: mine()[0].get("channels") == 1,
                   timeout=STATS_WAIT, step=0.5)
        one = expect(api("GET", f"connections/{q(row['name'])}"), 200, "GET the connection")
        check_eq(one["name"], row["name"], "by name")

        def consumers():
            return [c for c in api("GET", "consumers/%2F").json() if c["queue"]["name"] == queue]

        wait_until("the consumer listed", lambda: len(consumers()) == 1, timeout=STATS_WAIT, step=0.5)
        consumer = consumers()[0]
        check_eq((consumer["consumer_tag"], consumer["ack_required"],
                  consumer["channel_details"]["connection_name"]), (tag, True, row["name"]),
                 "the consumer")
        channels = [c for c in api("GET", "channels").json()
                    if c.get("connection_details", {}).get("name") == row["name"]]
        check_eq(len(channels), 1, "its channel")
        closed = api("DELETE", f"connections/{q(row['name'])}", headers={"X-Reason": "bye from http"})
        expect(closed, 204, "DELETE the connection")
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                conn.process_data_events(time_limit=0.2)
            raise AssertionError("the connection was not closed")
        except pika.exceptions.ConnectionClosedByBroker as e:
            check_eq(e.reply_code, 320, "close code")
            check("bye from http" in e.reply_text, f"close text: {e.reply_text}")
    finally:
        if conn.is_open:
            conn.close()


def users_vhosts_permissions_limits(names):
    vhost = f"interop-http-vh-{RUN_ID}"
    user = f"interop-http-user-{RUN_ID}"
    try:
        expect(api("PUT", f"vhosts/{q(vhost)}", {}), 201, "PUT vhost")
        expect(api("PUT", f"users/{q(user)}", {"password": "s3cret", "tags": "management"}), 201,
               "PUT user")
        perms = {"configure": "^own\\.", "write": ".*", "read": ".*"}
        expect(api("PUT", f"permissions/{q(vhost)}/{q(user)}", perms), 201, "PUT permissions")
        got = expect(api("GET", f"permissions/{q(vhost)}/{q(user)}"), 200, "GET permissions")
        check_eq({k: got[k] for k in ("user", "vhost", "configure", "write", "read")},
                 {"user": user, "vhost": vhost, **perms}, "permissions")
        by_vhost = expect(api("GET", f"vhosts/{q(vhost)}/permissions"), 200, "vhost's permissions")
        check(any(p["user"] == user for p in by_vhost), "listed by vhost")
        by_user = expect(api("GET", f"users/{q(user)}/permissions"), 200, "user's permissions")
        check_eq([p["vhost"] for p in by_user], [vhost], "listed by user")
        topic = {"exchange": "amq.topic", "write": "^a", "read": ".*"}
        expect(api("PUT", f"topic-permissions/{q(vhost)}/{q(user)}", topic), 201, "topic perms")
        tp = expect(api("GET", f"topic-permissions/{q(vhost)}/{q(user)}"), 200, "GET topic perms")
        check_eq([(t["exchange"], t["write"]) for t in tp], [("amq.topic", "^a")], "topic perms")
        expect(api("PUT", f"vhost-limits/{q(vhost)}/max-queues", {"value": 1}), 204, "vhost limit")
        limits = expect(api("GET", f"vhost-limits/{q(vhost)}"), 200, "GET vhost limits")
        check_eq([l["value"] for l in limits], [{"max-queues": 1}], "limits")
        # A management user sees its own vhosts only, and may not create users.
        mine = expect(api("GET", "vhosts", auth=(user, "s3cret")), 200, "its vhosts")
        check_eq([v["name"] for v in mine], [vhost], "only its vhost")
        refused = api("PUT", f"users/{q(user)}-other", {"password": "x", "tags": ""},
                      auth=(user, "s3cret"))
        check_eq(refused.status_code, 401, "a management user creating a user")
        # The limit holds over AMQP: a second queue in the vhost is refused.
        conn = pika.BlockingConnection(params(virtual_host=vhost,
                                              credentials=pika.PlainCredentials(user, "s3cret")))
        try:
            ch = conn.channel()
            ch.queue_declare("own.1")
            try:
                ch.queue_declare("own.2")
                raise AssertionError("a second queue was allowed past max-queues 1")
            except pika.exceptions.ChannelClosedByBroker as e:
                check_eq(e.reply_code, 406, "max-queues refusal")
        finally:
            if conn.is_open:
                conn.close()
    finally:
        api("DELETE", f"vhosts/{q(vhost)}")
        api("DELETE", f"users/{q(user)}")
    expect(api("GET", f"vhosts/{q(vhost)}"), 404, "vhost gone")


def policies_apply_live(names):
    queue = names.queue("pol")
    policy = f"interop-http-pol-{RUN_ID}"
    expect(api("PUT", f"queues/%2F/{q(queue)}", {"durable": False}), 201, "declare")
    try:
        body = {"pattern": "^" + queue.replace(".", "\\.") + "$", "definition": {"max-length": 2},
                "priority": 7, "apply-to": "queues"}
        expect(api("PUT", f"policies/%2F/{q(policy)}", body), 201, "PUT policy")
        got = expect(api("GET", f"policies/%2F/{q(policy)}"), 200, "GET policy")
        check_eq((got["name"], got["priority"], got["apply-to"], got["definition"]),
                 (policy, 7, "queues", {"max-length": 2}), "the policy")
        wait_until("the policy applied", lambda: api("GET", f"queues/%2F/{q(queue)}").json()
                   .get("policy") == policy, timeout=STATS_WAIT, step=0.5)
        info = api("GET", f"queues/%2F/{q(queue)}").json()
        check_eq(info.get("effective_policy_definition"), {"max-length": 2}, "effective")
        for i in range(5):
            api("POST", "exchanges/%2F/amq.default/publish",
                {"properties": {}, "routing_key": queue, "payload": str(i),
                 "payload_encoding": "string"})
        got = expect(api("POST", f"queues/%2F/{q(queue)}/get",
                         {"count": 10, "ackmode": "ack_requeue_false", "encoding": "auto"}),
                     200, "get")
        check_eq([m["payload"] for m in got], ["3", "4"], "max-length 2 kept the newest")
        bad = api("PUT", f"policies/%2F/{q(policy)}-bad",
                  {"pattern": ".*", "definition": {"max-length": "many"}})
        error_shape(bad, 400, "bad_request", "an invalid policy")
    finally:
        api("DELETE", f"policies/%2F/{q(policy)}")


def list_paging_columns_and_filters(names):
    prefix = f"interop.http.page.{RUN_ID}."
    made = [prefix + str(i) for i in range(5)]
    names.queues.extend(made)
    for name in made:
        expect(api("PUT", f"queues/%2F/{q(name)}", {"durable": False}), 201, "declare")
    page = expect(api("GET", "queues/%2F", params={
        "page": 2, "page_size": 2, "name": prefix, "use_regex": "false", "sort": "name",
        "sort_reverse": "true", "columns": "name,durable"}), 200, "a page")
    for key in ("items", "page", "page_count", "page_size", "filtered_count", "item_count",
                "total_count"):
        check(key in page, f"page has {key}")
    check_eq((page["page"], page["page_count"], page["page_size"], page["filtered_count"],
              page["item_count"]), (2, 3, 2, 5, 2), "paging")
    check_eq([i["name"] for i in page["items"]], [made[2], made[1]], "sorted, reversed")
    check_eq(sorted(page["items"][0]), ["durable", "name"], "columns")
    regex = expect(api("GET", "queues/%2F", params={
        "page": 1, "page_size": 100, "name": prefix.replace(".", "\\.") + "[34]$",
        "use_regex": "true"}), 200, "a regex filter")
    check_eq(sorted(i["name"] for i in regex["items"]), made[3:], "regex")
    nested = expect(api("GET", "overview", params={"columns": "object_totals.queues"}), 200,
                    "a nested column")
    # RabbitMQ 3.10 keeps the whole top-level object of a dotted column.
    check_eq(list(nested), ["object_totals"], "only the column")
    check(isinstance(nested["object_totals"].get("queues"), int), f"nested column: {nested}")


def health_checks(names):
    check_eq(expect(api("GET", "aliveness-test/%2F"), 200, "aliveness"), {"status": "ok"},
             "aliveness")
    check_eq(expect(api("GET", "health/checks/alarms"), 200, "alarms")["status"], "ok", "alarms")
    check_eq(expect(api("GET", "health/checks/local-alarms"), 200, "local alarms")["status"], "ok",
             "local alarms")
    port = urllib.parse.urlparse(os.environ.get("AMQP_URL", "")).port or 5672
    listener = expect(api("GET", f"health/checks/port-listener/{port}"), 200, "port listener")
    check_eq((listener["status"], listener["port"]), ("ok", port), "port listener")
    proto = expect(api("GET", "health/checks/protocol-listener/amqp"), 200, "protocol listener")
    check_eq(proto["status"], "ok", "protocol listener")
    closed = api("GET", "health/checks/port-listener/1")
    check_eq(closed.status_code, 503, "a port nothing listens on")
    check_eq(closed.json().get("status"), "failed", "failed status")


def definitions_round_trip_per_vhost(names):
    vhost = f"interop-http-defs-{RUN_ID}"
    try:
        expect(api("PUT", f"vhosts/{q(vhost)}", {}), 201, "PUT vhost")
        expect(api("PUT", f"exchanges/{q(vhost)}/x1", {"type": "topic", "durable": True}), 201, "x1")
        expect(api("PUT", f"queues/{q(vhost)}/q1", {"durable": True,
                                                   "arguments": {"x-message-ttl": 60000}}), 201, "q1")
        expect(api("POST", f"bindings/{q(vhost)}/e/x1/q/q1", {"routing_key": "a.#"}), 201, "bind")
        exported = expect(api("GET", f"definitions/{q(vhost)}"), 200, "export")
        check_eq([x["name"] for x in exported["exchanges"]], ["x1"], "exported exchanges")
        check_eq([(qq["name"], qq["arguments"]) for qq in exported["queues"]],
                 [("q1", {"x-message-ttl": 60000})], "exported queues")
        expect(api("DELETE", f"queues/{q(vhost)}/q1"), 204, "delete q1")
        expect(api("DELETE", f"exchanges/{q(vhost)}/x1"), 204, "delete x1")
        imported = api("POST", f"definitions/{q(vhost)}", exported)
        check(imported.status_code in (201, 204), f"import: HTTP {imported.status_code}")
        info = expect(api("GET", f"queues/{q(vhost)}/q1"), 200, "q1 back")
        check_eq(info["arguments"], {"x-message-ttl": 60000}, "q1's arguments")
        back = expect(api("GET", f"exchanges/{q(vhost)}/x1/bindings/source"), 200, "bindings back")
        check_eq([(b["destination"], b["routing_key"]) for b in back], [("q1", "a.#")], "binding")
    finally:
        api("DELETE", f"vhosts/{q(vhost)}")


def runtime_parameters(names):
    key = f"interop-http-param-{RUN_ID}"
    try:
        expect(api("PUT", f"global-parameters/{q(key)}", {"value": {"a": 1}}), 201, "PUT global")
        expect(api("PUT", f"global-parameters/{q(key)}", {"value": 2}), 204, "PUT again")
        check_eq(expect(api("GET", f"global-parameters/{q(key)}"), 200, "GET global"),
                 {"name": key, "value": 2}, "the parameter")
        listed = expect(api("GET", "global-parameters"), 200, "list globals")
        check(any(p["name"] == "internal_cluster_id" for p in listed), f"cluster id: {listed}")
        reason = error_shape(api("PUT", f"global-parameters/{q(key)}", {"name": key}), 400,
                             "bad_request", "no value")
        check_eq(reason, "[{key_missing,value}]", "the reason")
        expect(api("DELETE", f"global-parameters/{q(key)}"), 204, "DELETE global")
        expect(api("GET", f"global-parameters/{q(key)}"), 404, "gone")
    finally:
        api("DELETE", f"global-parameters/{q(key)}")
    reason = error_shape(api("PUT", "parameters/federation-upstream/%2F/up",
                             {"value": {"uri": "amqp://elsewhere"}}), 400, "bad_request",
                         "a component without its plugin")
    check("component federation-upstream not found" in reason, f"reason: {reason}")
    check_eq(expect(api("GET", "parameters/federation-upstream"), 200, "no upstreams"), [],
             "an unknown component lists nothing")
    vhost = f"interop-http-pv-{RUN_ID}"
    try:
        expect(api("PUT", f"vhosts/{q(vhost)}", {}), 201, "PUT vhost")
        path = f"parameters/vhost-limits/{q(vhost)}/limits"
        status = api("PUT", path, {"value": {"max-connections": 5}}).status_code
        check(status in (201, 204), f"PUT vhost-limits: HTTP {status}")
        got = expect(api("GET", path), 200, "GET vhost-limits")
        check_eq((got["component"], got["vhost"], got["name"], got["value"]),
                 ("vhost-limits", vhost, "limits", {"max-connections": 5}), "the parameter")
        limits = expect(api("GET", f"vhost-limits/{q(vhost)}"), 200, "the vhost's limits")
        check_eq([l["value"] for l in limits], [{"max-connections": 5}], "limits")
    finally:
        api("DELETE", f"vhosts/{q(vhost)}")


SCENARIOS = [(f.__name__, f) for f in (
    overview_nodes_and_whoami, authentication_and_errors, queue_declare_equivalence,
    bindings_with_properties_key, publish_and_get_ackmodes, connections_channels_consumers,
    users_vhosts_permissions_limits, policies_apply_live, list_paging_columns_and_filters,
    health_checks, definitions_round_trip_per_vhost, runtime_parameters,
)]

if __name__ == "__main__":
    sys.exit(1 if run("requests", SCENARIOS) else 0)
