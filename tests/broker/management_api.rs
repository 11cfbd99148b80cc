//! The management HTTP API against a running broker, over real HTTP/1.1 (a small hand-written
//! client: one request per connection): what AMQP clients do shows in the API, what the API
//! does (declare, publish, get, purge, bind, delete) shows to AMQP clients, with RabbitMQ's
//! status codes and error shapes.

use crate::common::*;
use base64::Engine;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::BasicProperties;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP answer.
pub(crate) struct Answer {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub(crate) struct Api {
    addr: std::net::SocketAddr,
    auth: Option<String>,
}

impl Api {
    pub(crate) fn of(broker: &TestBroker) -> Self {
        Self::as_user(broker, "guest", "guest")
    }

    fn as_user(broker: &TestBroker, user: &str, password: &str) -> Self {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Api {
            addr: broker
                .handle
                .management_addr
                .expect("management API started"),
            auth: Some(format!("Basic {token}")),
        }
    }

    pub(crate) async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        within(&format!("{method} {path}"), self.send(method, path, body)).await
    }

    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        self.send_with(method, path, body, &[]).await
    }

    async fn send_with(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> Answer {
        let mut stream = TcpStream::connect(self.addr).await.expect("connects");
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Content-Length: {}\r\n",
            body.len()
        );
        if !body.is_empty() {
            request.push_str("Content-Type: application/json\r\n");
        }
        if let Some(auth) = &self.auth {
            request.push_str(&format!("Authorization: {auth}\r\n"));
        }
        for (name, value) in extra {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(&body);
        stream.write_all(request.as_bytes()).await.expect("sends");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("reads");
        parse_answer(&raw)
    }

    pub(crate) async fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None).await
    }
}

fn parse_answer(raw: &[u8]) -> Answer {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&data[..line_end])
                .split(';')
                .next()
                .unwrap_or("0")
                .trim(),
            16,
        )
        .expect("chunk size");
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn publish_body(routing_key: &str, payload: &str) -> Value {
    json!({"properties": {"delivery_mode": 1, "headers": {"h": "v"}}, "routing_key": routing_key,
           "payload": payload, "payload_encoding": "string"})
}

#[tokio::test]
async fn overview_and_queues_show_what_amqp_clients_did() {
    let b = TestBroker::start_with_management().await;
    let api = Api::of(&b);
    let (conn, ch) = b.channel().await;
    ch.queue_declare(
        "seen",
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        Default::default(),
    )
    .await
    .expect("declare");
    for body in ["one", "two"] {
        ch.basic_publish(
            "",
            "seen",
            BasicPublishOptions::default(),
            body.as_bytes(),
            BasicProperties::default(),
        )
        .await
        .expect("publish");
    }
    eventually("the queue to hold 2 messages", || async {
        (ready_count(&ch, "seen").await == 2).then_some(())
    })
    .await;

    let overview = api.get("/api/overview").await;
    assert_eq!(overview.status, 200);
    let o = overview.json();
    assert_eq!(o["object_totals"]["queues"], 1, "{o}");
    assert_eq!(o["object_totals"]["connections"], 1, "{o}");
    assert_eq!(o["object_totals"]["channels"], 1, "{o}");
    // The default exchange, amq.direct/fanout/topic/headers/match and amq.rabbitmq.trace.
    assert_eq!(o["object_totals"]["exchanges"], 7, "{o}");
    assert_eq!(o["queue_totals"]["messages"], 2, "{o}");
    assert_eq!(o["queue_totals"]["messages_ready"], 2, "{o}");
    assert_eq!(o["message_stats"]["publish"], 2, "{o}");
    assert!(o["message_stats"]["publish_details"]["rate"].is_number());
    assert!(o["node"].as_str().is_some_and(|n| n.starts_with("warren@")));
    let ports: Vec<u64> = o["listeners"]
        .as_array()
        .expect("listeners")
        .iter()
        .filter_map(|l| l["port"].as_u64())
        .collect();
    assert!(ports.contains(&u64::from(b.addr().port())), "{o}");

    let queues = api.get("/api/queues/%2F").await;
    assert_eq!(queues.status, 200);
    let list = queues.json();
    let q = list
        .as_array()
        .expect("a list")
        .iter()
        .find(|q| q["name"] == "seen")
        .unwrap_or_else(|| panic!("queue 'seen' listed: {list}"));
    assert_eq!(q["vhost"], "/");
    assert_eq!(q["durable"], true);
    assert_eq!(q["messages"], 2);
    assert_eq!(q["messages_ready"], 2);
    assert_eq!(q["messages_unacknowledged"], 0);
    assert_eq!(q["consumers"], 0);
    assert_eq!(q["state"], "running");
    assert!(q["memory"].as_u64().is_some_and(|m| m > 6), "{q}");
    assert_eq!(q["message_stats"]["publish"], 2, "{q}");

    let one = api.get("/api/queues/%2F/seen").await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["messages"], 2);

    let exchanges = api.get("/api/exchanges/%2F").await.json();
    let names: Vec<&str> = exchanges
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|x| x["name"].as_str())
        .collect();
    for name in ["", "amq.direct", "amq.fanout", "amq.topic", "amq.headers"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    let vhosts = api.get("/api/vhosts").await.json();
    assert_eq!(vhosts[0]["name"], "/", "{vhosts}");
    conn.close(200, "bye").await.expect("close");
    b.finish().await;
}

#[tokio::test]
async fn put_queue_creates_then_finds_an_equivalent_and_refuses_an_inequivalent_one() {
    let b = TestBroker::start_with_management().await;
    let api = Api::of(&b);
    let path = "/api/queues/%2F/made";
    let body = json!({"durable": true, "auto_delete": false, "arguments": {"x-max-length": 10}});
    assert_eq!(api.call("PUT", path, Some(body.clone())).await.status, 201);
    assert_eq!(api.call("PUT", path, Some(body)).await.status, 204);
    let refused = api
        .call(
            "PUT",
            path,
            Some(json!({"durable": false, "arguments": {"x-max-length": 10}})),
        )
        .await;
    assert_eq!(refused.status, 400);
    assert_eq!(
        refused.json(),
        json!({"error": "bad_request", "reason": "inequivalent arg 'durable' for queue 'made' in \
               vhost '/': received 'false' but current is 'true'"})
    );
    // The queue is real: AMQP clients see it, with its arguments.
    let (conn, ch) = b.channel().await;
    ch.queue_declare(
        "made",
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        Default::default(),
    )
    .await
    .expect("declared over HTTP, seen over AMQP");
    let q = api.get(path).await.json();
    assert_eq!(q["arguments"], json!({"x-max-length": 10}), "{q}");
    // A reserved name gets RabbitMQ's refusal, not a panic.
    let reserved = api
        .call("PUT", "/api/queues/%2F/amq.mine", Some(json!({})))
        .await;
    assert_ne!(reserved.status / 100, 2, "amq.* refused");
    assert_ne!(reserved.status, 500);
    conn.close(200, "bye").await.expect("close");
    b.finish().await;
}

#[tokio::test]
async fn publish_get_purge_and_delete_over_http() {
    let b = TestBroker::start_with_management().await;
    let api = Api::of(&b);
    assert_eq!(
        api.call(
            "PUT",
            "/api/queues/%2F/work",
            Some(json!({"durable": false}))
        )
        .await
        .status,
        201
    );
    let publish = "/api/exchanges/%2F/amq.default/publish";
    let routed = api
        .call("POST", publish, Some(publish_body("work", "hello")))
        .await;
    assert_eq!(routed.status, 200);
    assert_eq!(routed.json(), json!({"routed": true}));
    let unroutable = api
        .call("POST", publish, Some(publish_body("nowhere", "x")))
        .await;
    assert_eq!(unroutable.json(), json!({"routed": false}));

    let get = "/api/queues/%2F/work/get";
    let requeue = json!({"count": 5, "ackmode": "ack_requeue_true", "encoding": "auto"});
    let first = api.call("POST", get, Some(requeue.clone())).await;
    assert_eq!(first.status, 200);
    let first = first.json();
    assert_eq!(first.as_array().map(Vec::len), Some(1), "{first}");
    assert_eq!(first[0]["payload"], "hello");
    assert_eq!(first[0]["payload_encoding"], "string");
    assert_eq!(first[0]["redelivered"], false);
    assert_eq!(first[0]["routing_key"], "work");
    assert_eq!(first[0]["exchange"], "");
    assert_eq!(first[0]["message_count"], 0);
    assert_eq!(
        first[0]["properties"]["headers"],
        json!({"h": "v"}),
        "{first}"
    );
    let again = api.call("POST", get, Some(requeue)).await.json();
    assert_eq!(again[0]["payload"], "hello", "requeued: {again}");
    assert_eq!(again[0]["redelivered"], true);
    let taken = api
        .call(
            "POST",
            get,
            Some(json!({"count": "1", "ackmode": "ack_requeue_false", "encoding": "auto"})),
        )
        .await
        .json();
    assert_eq!(taken[0]["payload"], "hello", "{taken}");
    let q = api.get("/api/queues/%2F/work").await.json();
    assert_eq!(q["messages"], 0, "acked away: {q}");
    assert_eq!(q["messages_unacknowledged"], 0, "{q}");

    for n in 0..3 {
        let body = publish_body("work", &format!("m{n}"));
        assert_eq!(api.call("POST", publish, Some(body)).await.status, 200);
    }
    assert_eq!(api.get("/api/queues/%2F/work").await.json()["messages"], 3);
    let stats = api.get("/api/overview").await.json()["message_stats"].clone();
    assert_eq!(stats["publish"], 5, "HTTP publishes count: {stats}");
    assert_eq!(stats["drop_unroutable"], 1, "{stats}");
    assert_eq!(stats["get"], 3, "{stats}");
    assert_eq!(stats["deliver_get"], 3, "{stats}");
    let (conn, ch) = b.channel().await;
    assert_eq!(
        ready_count(&ch, "work").await,
        3,
        "HTTP publishes reach AMQP"
    );
    assert_eq!(
        api.call("DELETE", "/api/queues/%2F/work/contents", None)
            .await
            .status,
        204
    );
    assert_eq!(api.get("/api/queues/%2F/work").await.json()["messages"], 0);
    assert_eq!(
        api.call("DELETE", "/api/queues/%2F/work", None)
            .await
            .status,
        204
    );
    let gone = api.get("/api/queues/%2F/work").await;
    assert_eq!(gone.status, 404);
    assert_eq!(
        gone.json(),
        json!({"error": "Object Not Found", "reason": "Not Found"})
    );
    assert!(!queue_exists(&conn, "work").await, "deleted for AMQP too");
    conn.close(200, "bye").await.expect("close");
    b.finish().await;
}

#[tokio::test]
async fn exchanges_and_bindings_over_http_route_real_messages() {
    let b = TestBroker::start_with_management().await;
    let api = Api::of(&b);
    let x = "/api/exchanges/%2F/events";
    assert_eq!(
        api.call("PUT", x, Some(json!({"type": "topic", "durable": true})))
            .await
            .status,
        201
    );
    assert_eq!(
        api.call("PUT", x, Some(json!({"type": "topic", "durable": true})))
            .await
            .status,
        204
    );
    let refused = api
        .call("PUT", x, Some(json!({"type": "direct", "durable": true})))
        .await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.json()["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("inequivalent arg 'type' for exchange 'events'")),
        "{}",
        refused.json()
    );
    assert_eq!(
        api.call("PUT", "/api/queues/%2F/sink", Some(json!({})))
            .await
            .status,
        201
    );
    let bound = api
        .call(
            "POST",
            "/api/bindings/%2F/e/events/q/sink",
            Some(json!({"routing_key": "a.b", "arguments": {}})),
        )
        .await;
    assert_eq!(bound.status, 201);
    assert_eq!(bound.header("location"), Some("sink/a.b"));
    let binding = api.get("/api/bindings/%2F/e/events/q/sink/a.b").await;
    assert_eq!(binding.status, 200);
    assert_eq!(binding.json()["source"], "events");
    let of_queue = api.get("/api/queues/%2F/sink/bindings").await.json();
    let sources: Vec<&str> = of_queue
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|b| b["source"].as_str())
        .collect();
    assert_eq!(sources, ["", "events"], "default binding first: {of_queue}");

    let publish = "/api/exchanges/%2F/events/publish";
    let routed = api
        .call("POST", publish, Some(publish_body("a.b", "e1")))
        .await;
    assert_eq!(routed.json(), json!({"routed": true}));
    let (conn, ch) = b.channel().await;
    assert_eq!(get_body(&ch, "sink").await.as_deref(), Some("e1"));

    assert_eq!(
        api.call("DELETE", "/api/bindings/%2F/e/events/q/sink/a.b", None)
            .await
            .status,
        204
    );
    let unrouted = api
        .call("POST", publish, Some(publish_body("a.b", "e2")))
        .await;
    assert_eq!(unrouted.json(), json!({"routed": false}));
    assert_eq!(api.call("DELETE", x, None).await.status, 204);
    assert_eq!(api.get(x).await.status, 404);
    let missing = api
        .call(
            "POST",
            "/api/exchanges/%2F/nosuch/publish",
            Some(publish_body("k", "p")),
        )
        .await;
    assert_ne!(
        missing.status / 100,
        2,
        "publish to a missing exchange refused"
    );
    conn.close(200, "bye").await.expect("close");
    b.finish().await;
}

#[tokio::test]
async fn credentials_and_missing_objects_get_rabbitmqs_answers() {
    let b = TestBroker::start_with_management().await;
    let wrong = Api::as_user(&b, "guest", "wrong")
        .get("/api/overview")
        .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(
        wrong.json(),
        json!({"error": "not_authorized", "reason": "Login failed"})
    );
    assert!(wrong
        .header("www-authenticate")
        .is_some_and(|h| h.contains("RabbitMQ Management")));
    let nobody = Api::as_user(&b, "nobody", "guest").get("/api/queues").await;
    assert_eq!(nobody.status, 401);
    let anonymous = Api {
        auth: None,
        ..Api::of(&b)
    };
    assert_eq!(anonymous.get("/api/overview").await.status, 401);

    let api = Api::of(&b);
    let whoami = api.get("/api/whoami").await.json();
    assert_eq!(whoami["name"], "guest");
    assert!(
        whoami["tags"].to_string().contains("administrator"),
        "guest is an administrator as in RabbitMQ: {whoami}"
    );
    for path in [
        "/api/queues/%2F/nosuch",
        "/api/exchanges/%2F/nosuch",
        "/api/queues/nosuch",
        "/api/nosuch",
    ] {
        let answer = api.get(path).await;
        assert_eq!(answer.status, 404, "{path}");
    }
    let answer = api.get("/api/queues/%2F/nosuch").await;
    assert_eq!(
        answer.json(),
        json!({"error": "Object Not Found", "reason": "Not Found"})
    );
    let users = api.get("/api/users").await.json();
    assert_eq!(users[0]["name"], "guest", "{users}");
    let permissions = api.get("/api/permissions").await.json();
    assert_eq!(
        permissions[0],
        json!({"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"})
    );
    b.finish().await;
}

/// Python `requests`, as monitoring scripts call the API (tests/python/management_scenario.py;
/// provisioned like pika, see `pika_client.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_requests_scenario_passes() {
    let python = tokio::task::spawn_blocking(crate::pika_client::python_with_pika)
        .await
        .expect("provisioning python");
    let b = TestBroker::start_with_management().await;
    let port = b
        .handle
        .management_addr
        .expect("management API")
        .port()
        .to_string();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/management_scenario.py"
    );
    let mut command = tokio::process::Command::new(&python.program);
    if let Some(path) = &python.pythonpath {
        command.env("PYTHONPATH", path);
    }
    let output = command
        .args([script, &port])
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "management scenario failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("MANAGEMENT OK"), "{stdout}");
    b.finish().await;
}

/// Percent-encodes a name for a path segment (connection names hold spaces, `:` and `>`).
fn segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Fails unless `object` has every key of the first object of a captured RabbitMQ answer, except
/// the Erlang VM's (`garbage_collection`, `reductions`) and `idle_since` (only on idle channels).
fn has_fixture_keys(object: &Value, fixture: &str) {
    let path = format!(
        "{}/tests/fixtures/management/{fixture}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let captured: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("JSON");
    let expected = captured["body"][0].as_object().expect("a captured object");
    let missing: Vec<&String> = expected
        .keys()
        .filter(|k| {
            !matches!(
                k.as_str(),
                "garbage_collection" | "reductions" | "reductions_details" | "idle_since"
            )
        })
        .filter(|k| object.get(k.as_str()).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "{fixture}: missing {missing:?} in {object}"
    );
}

/// Polls `path` until `done` holds for its JSON (the sampler and closes are asynchronous).
async fn wait_for(api: &Api, path: &str, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let value = api.get(path).await.json();
        if done(&value) {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never got there: {value}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn connections_channels_and_consumers_are_listed_and_a_connection_can_be_closed() {
    use lapin::options::{BasicConsumeOptions, BasicQosOptions};
    let b = TestBroker::start_with_management().await;
    let api = Api::of(&b);
    let conn = lapin::Connection::connect(
        &b.url(),
        lapin_properties().with_connection_name("ui-test".into()),
    )
    .await
    .expect("connects");
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
    let closed_tx = std::sync::Mutex::new(Some(closed_tx));
    conn.on_error(move |e| {
        if let Some(tx) = closed_tx.lock().expect("lock").take() {
            let _ = tx.send(e);
        }
    });
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(Default::default())
        .await
        .expect("confirm mode");
    ch.queue_declare("listed", QueueDeclareOptions::default(), Default::default())
        .await
        .expect("declare");
    ch.basic_qos(7, BasicQosOptions::default())
        .await
        .expect("qos");
    let _consumer = ch
        .basic_consume(
            "listed",
            "c1",
            BasicConsumeOptions::default(),
            Default::default(),
        )
        .await
        .expect("consume");

    let connections = api.get("/api/connections").await.json();
    let list = connections.as_array().expect("list");
    assert_eq!(list.len(), 1, "{connections}");
    let c = &list[0];
    let name = c["name"].as_str().expect("name").to_owned();
    let amqp_port = b.addr().port();
    assert!(
        name.starts_with("127.0.0.1:") && name.ends_with(&format!(" -> 127.0.0.1:{amqp_port}")),
        "RabbitMQ's naming: {name}"
    );
    assert_eq!(c["user"], "guest");
    assert_eq!(c["vhost"], "/");
    assert_eq!(c["user_provided_name"], "ui-test");
    assert_eq!(c["client_properties"]["connection_name"], "ui-test");
    assert_eq!(c["channels"], 1);
    assert_eq!(c["port"], amqp_port);
    assert_eq!(c["peer_host"], "127.0.0.1");
    assert_eq!(c["auth_mechanism"], "PLAIN");
    assert_eq!(c["protocol"], "AMQP 0-9-1");
    assert_eq!(c["state"], "running");
    let path = format!("/api/connections/{}", segment(&name));
    let one = api.get(&path).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["name"], name);
    assert_eq!(
        api.get("/api/vhosts/%2F/connections").await.json()[0]["name"],
        name
    );

    let channels = api.get(&format!("{path}/channels")).await.json();
    assert_eq!(channels.as_array().map(Vec::len), Some(1), "{channels}");
    let channel_name = format!("{name} (1)");
    assert_eq!(channels[0]["name"], channel_name);
    assert_eq!(channels[0]["number"], 1);
    assert_eq!(channels[0]["consumer_count"], 1);
    assert_eq!(channels[0]["prefetch_count"], 7);
    assert_eq!(channels[0]["confirm"], true);
    assert_eq!(channels[0]["transactional"], false);
    assert_eq!(channels[0]["connection_details"]["name"], name);
    assert_eq!(api.get("/api/channels").await.json(), channels);
    assert_eq!(api.get("/api/vhosts/%2F/channels").await.json(), channels);
    let channel = api
        .get(&format!("/api/channels/{}", segment(&channel_name)))
        .await;
    assert_eq!(channel.status, 200);
    assert_eq!(channel.json()["user"], "guest");

    let consumers = api.get("/api/consumers").await.json();
    assert_eq!(consumers.as_array().map(Vec::len), Some(1), "{consumers}");
    // Every field RabbitMQ 3.10.8 sends (but the Erlang VM's own) is there.
    has_fixture_keys(&connections[0], "connections");
    has_fixture_keys(&channels[0], "channels");
    has_fixture_keys(&consumers[0], "consumers");
    let consumer = &consumers[0];
    assert_eq!(consumer["consumer_tag"], "c1");
    assert_eq!(consumer["queue"], json!({"name": "listed", "vhost": "/"}));
    assert_eq!(consumer["ack_required"], true);
    assert_eq!(consumer["prefetch_count"], 7);
    assert_eq!(consumer["channel_details"]["name"], channel_name);
    assert_eq!(api.get("/api/consumers/%2F").await.json(), consumers);
    let queue = api.get("/api/queues/%2F/listed").await.json();
    assert_eq!(queue["consumer_details"][0]["consumer_tag"], "c1");

    // Closed from the API: 320 with the X-Reason text, as RabbitMQ sends it.
    let close = api
        .send_with("DELETE", &path, None, &[("X-Reason", "bye now")])
        .await;
    assert_eq!(close.status, 204);
    let error = within("the connection to be closed", closed_rx)
        .await
        .expect("error handler");
    let (code, text) = amqp_error(&error).unwrap_or_else(|| panic!("not a close: {error:?}"));
    assert_eq!(code, 320);
    assert_eq!(text, "CONNECTION_FORCED - bye now");
    wait_for(&api, "/api/connections", 5, |v| v == &json!([])).await;
    assert_eq!(api.get("/api/channels").await.json(), json!([]));
    assert_eq!(api.get("/api/consumers").await.json(), json!([]));
    assert_eq!(api.get(&path).await.status, 404);
    assert_eq!(api.call("DELETE", &path, None).await.status, 404);
    b.finish().await;
}

#[tokio::test]
async fn message_rates_come_from_the_five_second_sampler() {
    let b = TestBroker::start_with_management().await;
    let api = Api::of(&b);
    let (_conn, ch) = b.channel().await;
    ch.queue_declare("rated", QueueDeclareOptions::default(), Default::default())
        .await
        .expect("declare");
    for _ in 0..50 {
        ch.basic_publish(
            "",
            "rated",
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await
        .expect("publish");
    }
    let queue_path = "/api/queues/%2F/rated";
    wait_for(&api, queue_path, 5, |q| q["messages"] == 50).await;
    // 50 publishes within one 5 s sample interval: about 10/s once the next sample is taken.
    let rate = |v: &Value, path: &[&str]| -> f64 {
        let mut v = v;
        for key in path {
            v = &v[*key];
        }
        v.as_f64().unwrap_or(0.0)
    };
    let publish = ["message_stats", "publish_details", "rate"];
    let overview = wait_for(&api, "/api/overview", 12, |o| rate(o, &publish) > 0.0).await;
    let expected = 50.0 / 5.0;
    let close = |r: f64| (r - expected).abs() < expected * 0.25;
    assert!(close(rate(&overview, &publish)), "{overview}");
    let queue = api.get(queue_path).await.json();
    assert!(close(rate(&queue, &publish)), "{queue}");
    assert!(
        close(rate(&queue, &["messages_ready_details", "rate"])),
        "{queue}"
    );
    let vhost = api.get("/api/vhosts").await.json();
    assert!(close(rate(&vhost[0], &publish)), "{vhost}");
    let channels = api.get("/api/channels").await.json();
    assert!(close(rate(&channels[0], &publish)), "{channels}");
    // The default exchange took the 50 and routed each to one queue (RabbitMQ's `""` row).
    let default_x = api.get("/api/exchanges/%2F/amq.default").await.json();
    let stats = &default_x["message_stats"];
    assert_eq!(
        (&stats["publish_in"], &stats["publish_out"]),
        (&json!(50), &json!(50))
    );
    assert!(close(rate(
        &default_x,
        &["message_stats", "publish_in_details", "rate"]
    )));
    assert!(close(rate(
        &default_x,
        &["message_stats", "publish_out_details", "rate"]
    )));
    // The connection's socket counters, as RabbitMQ shapes them.
    let connections = api.get("/api/connections").await.json();
    let c = &connections[0];
    for key in ["recv_oct", "send_oct", "recv_cnt", "send_cnt"] {
        assert!(c[key].as_u64().is_some_and(|n| n > 0), "{key}: {c}");
    }
    assert!(rate(c, &["recv_oct_details", "rate"]) > 0.0, "{c}");
    assert!(c["send_oct_details"]["rate"].is_number(), "{c}");
    assert!(c.get("recv_cnt_details").is_none(), "{c}");
    b.finish().await;
}

#[tokio::test]
async fn exchanges_count_messages_in_and_copies_out() {
    let b = TestBroker::start_with_management().await;
    let api = Api::of(&b);
    let (_conn, ch) = b.channel().await;
    declare_exchange(&ch, "fan", lapin::ExchangeKind::Fanout).await;
    declare_exchange(&ch, "lonely", lapin::ExchangeKind::Fanout).await;
    for q in ["f1", "f2"] {
        declare(&ch, q, &[]).await;
        bind(&ch, q, "fan", "").await;
    }
    for (exchange, n) in [("fan", 3), ("lonely", 2)] {
        for _ in 0..n {
            ch.basic_publish(
                exchange,
                "",
                BasicPublishOptions::default(),
                b"x",
                BasicProperties::default(),
            )
            .await
            .expect("publish");
        }
    }
    let fan = wait_for(&api, "/api/exchanges/%2F/fan", 5, |x| {
        x["message_stats"]["publish_in"] == 3
    })
    .await;
    assert_eq!(fan["message_stats"]["publish_out"], 6, "{fan}");
    assert!(fan["message_stats"]["publish_in_details"]["rate"].is_number());
    let lonely = wait_for(&api, "/api/exchanges/%2F/lonely", 5, |x| {
        x["message_stats"]["publish_in"] == 2
    })
    .await;
    assert_eq!(lonely["message_stats"]["publish_out"], 0, "{lonely}");
    // An exchange nothing was published to has no message_stats, as in RabbitMQ.
    let listed = api
        .get("/api/exchanges/%2F?columns=name,message_stats")
        .await
        .json();
    let direct = listed
        .as_array()
        .expect("list")
        .iter()
        .find(|x| x["name"] == "amq.direct")
        .expect("amq.direct listed")
        .clone();
    assert_eq!(direct, json!({"name": "amq.direct"}));
    b.finish().await;
}

/// Runtime parameters as RabbitMQ without plugins has them: global parameters (the cluster
/// name among them, an `internal_cluster_id` made at start), `vhost-limits` parameters that
/// are the vhost's limits (AMQP then enforces them), other components refused; and the
/// discovery endpoints the web UI and tools call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_parameters_global_parameters_and_discovery() {
    let b = TestBroker::start_with_management().await;
    let api = Api::of(&b);
    let globals = api.get("/api/global-parameters").await.json();
    let id = globals
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == "internal_cluster_id"))
        .unwrap_or_else(|| panic!("{globals}"));
    assert!(id["value"]
        .as_str()
        .is_some_and(|v| v.starts_with("rabbitmq-cluster-id-")));

    let put = |path: &'static str, body: Value| {
        let api = &api;
        async move { api.call("PUT", path, Some(body)).await }
    };
    assert_eq!(
        put("/api/global-parameters/k", json!({"value": {"a": 1}}))
            .await
            .status,
        201
    );
    assert_eq!(
        put("/api/global-parameters/k", json!({"value": 2}))
            .await
            .status,
        204
    );
    assert_eq!(
        api.get("/api/global-parameters/k").await.json(),
        json!({"name": "k", "value": 2})
    );
    let missing = put("/api/global-parameters/k", json!({"name": "k"})).await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.json()["reason"], "[{key_missing,value}]");
    assert_eq!(
        put("/api/cluster-name", json!({"name": "east"}))
            .await
            .status,
        204
    );
    let globals = api.get("/api/global-parameters").await.json();
    assert!(
        globals
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == &json!({"name": "cluster_name", "value": "east"})),
        "{globals}"
    );
    assert_eq!(
        api.get("/api/overview").await.json()["cluster_name"],
        "east"
    );
    let exported = api.get("/api/definitions").await.json();
    assert!(
        exported["global_parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "k"),
        "{exported}"
    );
    assert_eq!(
        api.call("DELETE", "/api/global-parameters/k", None)
            .await
            .status,
        204
    );
    assert_eq!(api.get("/api/global-parameters/k").await.status, 404);

    // vhost-limits parameters are the vhost's limits.
    let unknown = put(
        "/api/parameters/federation-upstream/%2F/up",
        json!({"value": {"uri": "amqp://elsewhere"}}),
    )
    .await;
    assert_eq!(unknown.status, 400);
    assert_eq!(
        unknown.json()["reason"],
        "Validation failed\n\ncomponent federation-upstream not found\n"
    );
    assert_eq!(
        put(
            "/api/parameters/vhost-limits/%2F/limits",
            json!({"value": {"max-queues": 1}})
        )
        .await
        .status,
        201
    );
    assert_eq!(
        api.get("/api/parameters").await.json(),
        json!([{"component": "vhost-limits", "name": "limits", "value": {"max-queues": 1}, "vhost": "/"}])
    );
    assert_eq!(
        api.get("/api/vhost-limits/%2F").await.json(),
        json!([{"vhost": "/", "value": {"max-queues": 1}}])
    );
    let ch = b.connect().await.create_channel().await.expect("channel");
    ch.queue_declare("one", QueueDeclareOptions::default(), Default::default())
        .await
        .expect("the first queue");
    let second = ch
        .queue_declare("two", QueueDeclareOptions::default(), Default::default())
        .await;
    assert_eq!(refused(second).0, 406, "max-queues 1 from the parameter");
    assert_eq!(
        api.call("DELETE", "/api/parameters/vhost-limits/%2F/limits", None)
            .await
            .status,
        204
    );
    assert_eq!(api.get("/api/vhost-limits").await.json(), json!([]));

    // Discovery: /api/auth answers without credentials; a plain node has no extensions.
    let anonymous = Api {
        auth: None,
        ..Api::of(&b)
    };
    let auth = anonymous.get("/api/auth").await;
    assert_eq!(auth.status, 200);
    assert_eq!(auth.json()["enable_uaa"], false);
    assert_eq!(api.get("/api/extensions").await.json(), json!([]));
    let flags = api.get("/api/feature-flags").await.json();
    assert!(
        flags
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "quorum_queue" && f["state"] == "enabled"),
        "{flags}"
    );
    let sync = api
        .get("/api/health/checks/node-is-mirror-sync-critical")
        .await;
    assert_eq!(sync.json()["status"], "ok");
    b.finish().await;
}
