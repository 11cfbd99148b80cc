//! The access model through the management HTTP API, with the effect on AMQP clients: users,
//! permissions, topic permissions, vhosts and limits set over HTTP change what a connection or a
//! channel may do, with RabbitMQ's status codes and AMQP replies.

use crate::common::*;
use base64::Engine;
use lapin::options::{BasicPublishOptions, ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ExchangeKind};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP call as `guest` (one request per connection, `Connection: close`).
async fn call(b: &TestBroker, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    call_as(b, ("guest", "guest"), method, path, body).await
}

async fn call_as(
    b: &TestBroker,
    (user, password): (&str, &str),
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let addr = b.handle.management_addr.expect("management API started");
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Authorization: Basic {token}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let raw = within(&format!("{method} {path}"), async {
        let mut stream = TcpStream::connect(addr).await.expect("connects");
        stream.write_all(request.as_bytes()).await.expect("sends");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("reads");
        raw
    })
    .await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").expect("end of headers");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    let value = serde_json::from_str(&body).unwrap_or(Value::Null);
    (status, value)
}

fn dechunk(mut data: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = data.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        data = &rest[size + 2..];
    }
    out
}

fn url(b: &TestBroker, user: &str, password: &str, vhost: &str) -> String {
    format!("amqp://{user}:{password}@{}/{vhost}", b.addr())
}

/// The code and text a refused connection.open (or login) got.
async fn refused_connect(url: &str) -> (u16, String) {
    let e = within("the connection to be refused", connect_url(url))
        .await
        .expect_err("connection refused");
    amqp_error(&e).unwrap_or_else(|| panic!("not an AMQP close: {e:?}"))
}

/// The error lapin reports once the broker closed `conn`.
fn on_connection_close(conn: &Connection) -> tokio::sync::oneshot::Receiver<lapin::Error> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    conn.on_error(move |e| {
        if let Some(tx) = tx.lock().expect("lock").take() {
            let _ = tx.send(e);
        }
    });
    rx
}

async fn declare_q(conn: &Connection, name: &str, durable: bool) -> lapin::Result<()> {
    let ch = conn.create_channel().await?;
    ch.queue_declare(
        name,
        QueueDeclareOptions {
            durable,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .map(|_| ())
}

#[tokio::test]
async fn users_and_permissions_set_over_http_decide_what_amqp_clients_may_do() {
    let b = TestBroker::start_with_management().await;
    let alice = json!({"password": "pw", "tags": "management"});
    assert_eq!(
        call(&b, "PUT", "/api/users/alice", Some(alice.clone()))
            .await
            .0,
        201
    );
    assert_eq!(
        call(&b, "PUT", "/api/users/alice", Some(alice)).await.0,
        204
    );
    let (status, user) = call(&b, "GET", "/api/users/alice", None).await;
    assert_eq!(status, 200);
    assert_eq!(user["tags"], json!(["management"]), "{user}");
    assert_eq!(user["hashing_algorithm"], "rabbit_password_hashing_sha256");
    // Tags as a list (RabbitMQ 3.13's form) and a wrong password for the login below.
    let (status, _) = call(
        &b,
        "PUT",
        "/api/users/bob",
        Some(json!({"password": "bpw", "tags": ["monitoring", "impersonator"]})),
    )
    .await;
    assert_eq!(status, 201);
    let (_, bob) = call(&b, "GET", "/api/users/bob", None).await;
    assert_eq!(bob["tags"], json!(["monitoring", "impersonator"]), "{bob}");

    // No permission on `/` yet: 530 at connection.open.
    assert_eq!(
        refused_connect(&url(&b, "alice", "pw", "%2f")).await,
        (
            530,
            "NOT_ALLOWED - access to vhost '/' refused for user 'alice'".into()
        )
    );
    assert_eq!(
        call(&b, "GET", "/api/permissions/%2F/alice", None).await.0,
        404
    );
    let bad = json!({"configure": "(", "write": ".*", "read": ".*"});
    let (status, answer) = call(&b, "PUT", "/api/permissions/%2F/alice", Some(bad)).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"], "bad_request");
    let narrow = json!({"configure": "^a\\.", "write": ".*", "read": ".*"});
    assert_eq!(
        call(&b, "PUT", "/api/permissions/%2F/alice", Some(narrow))
            .await
            .0,
        201
    );
    let (_, listed) = call(&b, "GET", "/api/users/alice/permissions", None).await;
    assert_eq!(
        listed,
        json!([{"user": "alice", "vhost": "/", "configure": "^a\\.", "write": ".*", "read": ".*"}])
    );
    let (_, in_vhost) = call(&b, "GET", "/api/vhosts/%2F/permissions", None).await;
    assert!(
        in_vhost.as_array().is_some_and(|a| a.len() == 2),
        "{in_vhost}"
    );

    let conn = connect_url(&url(&b, "alice", "pw", "%2f"))
        .await
        .expect("alice connects");
    declare_q(&conn, "a.ok", false)
        .await
        .expect("configure on a.*");
    let e = declare_q(&conn, "b.refused", false).await.expect_err("403");
    assert_eq!(
        amqp_error(&e),
        Some((
            403,
            "ACCESS_REFUSED - access to queue 'b.refused' in vhost '/' refused for user 'alice'"
                .into()
        ))
    );
    // A wider permission applies to the open connection's new checks at once.
    let wide = json!({"configure": ".*", "write": ".*", "read": ".*"});
    assert_eq!(
        call(&b, "PUT", "/api/permissions/%2F/alice", Some(wide))
            .await
            .0,
        204
    );
    declare_q(&conn, "b.refused", false)
        .await
        .expect("allowed after the change");

    // Deleting the user closes its connections with 320, as RabbitMQ does.
    let closed = on_connection_close(&conn);
    assert_eq!(call(&b, "DELETE", "/api/users/alice", None).await.0, 204);
    let e = within("alice's connection to close", closed)
        .await
        .expect("error reported");
    assert_eq!(
        amqp_error(&e),
        Some((320, "CONNECTION_FORCED - user 'alice' is deleted".into()))
    );
    assert_eq!(call(&b, "GET", "/api/users/alice", None).await.0, 404);
    assert_eq!(call(&b, "DELETE", "/api/users/alice", None).await.0, 404);
    assert_eq!(
        refused_connect(&url(&b, "alice", "pw", "%2f")).await.0,
        403,
        "a deleted user cannot log in"
    );

    // A password hash as RabbitMQ exports it logs in with its password.
    let hash = json!({"password_hash": "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR",
                      "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ""});
    assert_eq!(
        call(&b, "PUT", "/api/users/hashed", Some(hash)).await.0,
        201
    );
    let bad_hash = json!({"password_hash": "not base64!", "tags": ""});
    assert_eq!(
        call(&b, "PUT", "/api/users/broken", Some(bad_hash)).await.0,
        400
    );
    let (_, without) = call(&b, "GET", "/api/users/without-permissions", None).await;
    let names: Vec<&str> = without
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    assert_eq!(names, ["bob", "hashed"], "{without}");
    // users/bulk-delete skips names that do not exist.
    let bulk = json!({"users": ["bob", "hashed", "nobody"]});
    assert_eq!(
        call(&b, "POST", "/api/users/bulk-delete", Some(bulk))
            .await
            .0,
        204
    );
    let (_, users) = call(&b, "GET", "/api/users", None).await;
    let names: Vec<&str> = users
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    assert_eq!(names, ["guest"]);
    // Only administrators manage users.
    call(
        &b,
        "PUT",
        "/api/users/mon",
        Some(json!({"password": "m", "tags": "monitoring"})),
    )
    .await;
    let (status, answer) = call_as(&b, ("mon", "m"), "GET", "/api/users", None).await;
    assert_eq!(status, 401, "{answer}");
    drop(conn);
    b.finish().await;
}

#[tokio::test]
async fn topic_permissions_over_http_restrict_routing_keys() {
    let b = TestBroker::start_with_management().await;
    call(
        &b,
        "PUT",
        "/api/users/t",
        Some(json!({"password": "t", "tags": ""})),
    )
    .await;
    let all = json!({"configure": ".*", "write": ".*", "read": ".*"});
    call(&b, "PUT", "/api/permissions/%2F/t", Some(all)).await;
    let topic = json!({"exchange": "amq.topic", "write": "^ok\\.", "read": ".*"});
    assert_eq!(
        call(
            &b,
            "PUT",
            "/api/topic-permissions/%2F/t",
            Some(topic.clone())
        )
        .await
        .0,
        201
    );
    assert_eq!(
        call(&b, "PUT", "/api/topic-permissions/%2F/t", Some(topic))
            .await
            .0,
        204
    );
    let expected = json!([{"user": "t", "vhost": "/", "exchange": "amq.topic",
                           "write": "^ok\\.", "read": ".*"}]);
    assert_eq!(
        call(&b, "GET", "/api/topic-permissions", None).await.1,
        expected
    );
    assert_eq!(
        call(&b, "GET", "/api/topic-permissions/%2F/t", None)
            .await
            .1,
        expected
    );
    assert_eq!(
        call(&b, "GET", "/api/users/t/topic-permissions", None)
            .await
            .1,
        expected
    );
    assert_eq!(
        call(&b, "GET", "/api/vhosts/%2F/topic-permissions", None)
            .await
            .1,
        expected
    );
    let no_exchange = json!({"write": ".*", "read": ".*"});
    assert_eq!(
        call(&b, "PUT", "/api/topic-permissions/%2F/t", Some(no_exchange))
            .await
            .0,
        400
    );
    let bad_regex = json!({"exchange": "amq.topic", "write": "[", "read": ".*"});
    assert_eq!(
        call(&b, "PUT", "/api/topic-permissions/%2F/t", Some(bad_regex))
            .await
            .0,
        400
    );

    let conn = connect_url(&url(&b, "t", "t", "%2f"))
        .await
        .expect("t connects");
    let ch = conn.create_channel().await.expect("channel");
    let closed = on_channel_close(&ch);
    let publish = |key: &'static str| {
        let ch = ch.clone();
        async move {
            ch.basic_publish(
                "amq.topic",
                key,
                BasicPublishOptions::default(),
                b"x",
                BasicProperties::default(),
            )
            .await
        }
    };
    publish("ok.fine").await.expect("publish");
    let _ = publish("not.ok").await;
    assert_eq!(
        closed_with(closed).await,
        (
            403,
            "ACCESS_REFUSED - access to topic 'not.ok' in exchange exchange 'amq.topic' in vhost '/' refused for user 't'".into()
        )
    );
    assert_eq!(
        call(&b, "DELETE", "/api/topic-permissions/%2F/t", None)
            .await
            .0,
        204
    );
    assert_eq!(
        call(&b, "GET", "/api/topic-permissions", None).await.1,
        json!([])
    );
    let ch = conn.create_channel().await.expect("channel");
    ch.basic_publish(
        "amq.topic",
        "not.ok",
        BasicPublishOptions::default(),
        b"x",
        BasicProperties::default(),
    )
    .await
    .expect("allowed once cleared");
    ch.exchange_declare(
        "probe",
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("the channel is still open");
    conn.close(200, "bye").await.expect("close");
    b.finish().await;
}

#[tokio::test]
async fn deleting_a_vhost_closes_its_connections_and_removes_its_queues() {
    let b = TestBroker::start_with_management().await;
    assert_eq!(
        call(
            &b,
            "PUT",
            "/api/vhosts/v1",
            Some(json!({"description": "first"}))
        )
        .await
        .0,
        201
    );
    assert_eq!(call(&b, "PUT", "/api/vhosts/v1", None).await.0, 204);
    let (_, exchanges) = call(&b, "GET", "/api/exchanges/v1", None).await;
    let mut names: Vec<&str> = exchanges
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|x| x["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "",
            "amq.direct",
            "amq.fanout",
            "amq.headers",
            "amq.match",
            "amq.rabbitmq.trace",
            "amq.topic"
        ]
    );
    // The creator (guest) got full permissions on it.
    let conn = connect_url(&url(&b, "guest", "guest", "v1"))
        .await
        .expect("guest connects to v1");
    declare_q(&conn, "kept-in-v1", true).await.expect("declare");
    let ch = conn.create_channel().await.expect("channel");
    ch.basic_publish(
        "",
        "kept-in-v1",
        BasicPublishOptions::default(),
        b"persistent",
        BasicProperties::default().with_delivery_mode(2),
    )
    .await
    .expect("publish");
    eventually("the message to be queued", || async {
        let (_, q) = call(&b, "GET", "/api/queues/v1/kept-in-v1", None).await;
        (q["messages"] == 1).then_some(())
    })
    .await;
    // Same queue name in `/`: untouched by the deletion of v1.
    let (root_conn, _root_ch) = b.channel().await;
    declare_q(&root_conn, "kept-in-v1", true)
        .await
        .expect("declare in /");

    let closed = on_connection_close(&conn);
    assert_eq!(call(&b, "DELETE", "/api/vhosts/v1", None).await.0, 204);
    let e = within("v1's connection to close", closed)
        .await
        .expect("error reported");
    assert_eq!(
        amqp_error(&e),
        Some((320, "CONNECTION_FORCED - vhost 'v1' is deleted".into()))
    );
    assert_eq!(call(&b, "GET", "/api/vhosts/v1", None).await.0, 404);
    assert_eq!(call(&b, "DELETE", "/api/vhosts/v1", None).await.0, 404);
    assert_eq!(
        refused_connect(&url(&b, "guest", "guest", "v1")).await,
        (530, "NOT_ALLOWED - vhost v1 not found".into())
    );
    let (_, queues) = call(&b, "GET", "/api/queues", None).await;
    let vhosts: Vec<&str> = queues
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|q| q["vhost"].as_str())
        .collect();
    assert_eq!(vhosts, ["/"], "{queues}");
    // Created again, it is empty.
    assert_eq!(call(&b, "PUT", "/api/vhosts/v1", None).await.0, 201);
    assert_eq!(
        call(&b, "GET", "/api/queues/v1/kept-in-v1", None).await.0,
        404
    );
    drop(root_conn);
    b.finish().await;
}

#[tokio::test]
async fn vhost_and_user_limits_refuse_with_rabbitmqs_replies() {
    let b = TestBroker::start_with_management().await;
    call(
        &b,
        "PUT",
        "/api/users/lim",
        Some(json!({"password": "l", "tags": ""})),
    )
    .await;
    let all = json!({"configure": ".*", "write": ".*", "read": ".*"});
    call(&b, "PUT", "/api/permissions/%2F/lim", Some(all)).await;
    let set = |path: &'static str, value: Value| {
        let b = &b;
        async move {
            call(b, "PUT", path, Some(json!({ "value": value })))
                .await
                .0
        }
    };
    assert_eq!(set("/api/vhost-limits/%2F/max-queues", json!(1)).await, 204);
    assert_eq!(
        set("/api/user-limits/lim/max-channels", json!("1")).await,
        204
    );
    assert_eq!(
        set("/api/user-limits/lim/max-connections", json!(2)).await,
        204
    );
    assert_eq!(set("/api/vhost-limits/%2F/max-bogus", json!(1)).await, 400);
    assert_eq!(
        set("/api/vhost-limits/%2F/max-queues", json!("x")).await,
        400
    );
    assert_eq!(
        set("/api/user-limits/nobody/max-channels", json!(1)).await,
        404
    );
    assert_eq!(
        call(&b, "GET", "/api/vhost-limits", None).await.1,
        json!([{"vhost": "/", "value": {"max-queues": 1}}])
    );
    assert_eq!(
        call(&b, "GET", "/api/user-limits/lim", None).await.1,
        json!([{"user": "lim", "value": {"max-channels": 1, "max-connections": 2}}])
    );

    let lim = url(&b, "lim", "l", "%2f");
    let conn = connect_url(&lim).await.expect("connects");
    let ch = conn.create_channel().await.expect("first channel");
    ch.queue_declare(
        "only",
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("first queue");
    let closed = on_channel_close(&ch);
    let _ = ch
        .queue_declare(
            "second",
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await;
    assert_eq!(
        closed_with(closed).await,
        (
            406,
            "PRECONDITION_FAILED - cannot declare queue 'second': queue limit in vhost '/' (1) is reached".into()
        )
    );
    // max-channels 1: the first channel was closed by the error, so one more opens, then no more.
    let ch = conn.create_channel().await.expect("one channel again");
    let e = conn.create_channel().await.expect_err("second channel");
    assert_eq!(
        amqp_error(&e),
        Some((
            530,
            "NOT_ALLOWED - number of channels opened for user 'lim' has reached the maximum allowed user limit of (1)".into()
        ))
    );
    // That is a connection error in RabbitMQ: the connection is gone, so two more may open.
    drop(ch);
    let second = connect_url(&lim).await.expect("second connection");
    let third = connect_url(&lim).await.expect("third connection");
    assert_eq!(
        refused_connect(&lim).await,
        (
            530,
            "NOT_ALLOWED - connection refused for user 'lim': user connection limit (2) is reached"
                .into()
        )
    );
    // A vhost limit of 1 with two open: guest is refused too.
    assert_eq!(
        set("/api/vhost-limits/%2F/max-connections", json!(1)).await,
        204
    );
    assert_eq!(
        refused_connect(&url(&b, "guest", "guest", "%2f")).await,
        (
            530,
            "NOT_ALLOWED - access to vhost '/' refused for user 'guest': connection limit (1) is reached".into()
        )
    );
    assert_eq!(
        call(&b, "DELETE", "/api/vhost-limits/%2F/max-connections", None)
            .await
            .0,
        204
    );
    let (guest, _) = b.channel().await;
    drop((guest, second, third, conn));
    b.finish().await;
}

/// The RabbitMQ 3.10.8 export captured by tests/fixtures/management/capture_access.py.
fn rabbitmq_export() -> Value {
    let text = include_str!("../fixtures/management/access_definitions_export.json");
    let doc: Value = serde_json::from_str(text).expect("fixture is JSON");
    doc["body"].clone()
}

/// What an import of the captured export must have made, seen by AMQP clients.
async fn check_imported_export(b: &TestBroker) {
    // Passwords hashed by RabbitMQ work; alice may configure only orders.* in shop.
    let alice = connect_url(&url(b, "alice", "alice-pw", "shop"))
        .await
        .expect("alice logs in with her RabbitMQ password");
    let e = declare_q(&alice, "other", false).await.expect_err("403");
    assert_eq!(amqp_error(&e).map(|e| e.0), Some(403));
    // The binding orders -> orders.eu (eu.#) routes; the topic permission refuses other keys.
    let ch = alice.create_channel().await.expect("channel");
    ch.basic_publish(
        "orders",
        "eu.1",
        BasicPublishOptions::default(),
        b"order",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    eventually("the order to be routed", || async {
        let (_, q) = call(b, "GET", "/api/queues/shop/orders.eu", None).await;
        (q["messages"] == 1).then_some(())
    })
    .await;
    let closed = on_channel_close(&ch);
    let _ = ch
        .basic_publish(
            "amq.topic",
            "refunds.1",
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await;
    assert_eq!(closed_with(closed).await.0, 403, "alice's topic permission");
    assert_eq!(
        refused_connect(&url(b, "bob", "wrong", "shop")).await.0,
        403,
        "a wrong password is still refused"
    );
    let bob = connect_url(&url(b, "bob", "bob-pw", "shop"))
        .await
        .expect("bob logs in");
    drop((alice, bob));
    let (_, limits) = call(b, "GET", "/api/user-limits/alice", None).await;
    assert_eq!(
        limits,
        json!([{"user": "alice", "value": {"max-channels": 20, "max-connections": 10}}])
    );
    let (_, limits) = call(b, "GET", "/api/vhost-limits/shop", None).await;
    assert_eq!(
        limits,
        json!([{"vhost": "shop", "value": {"max-connections": 50, "max-queues": 100}}])
    );
}

#[tokio::test]
async fn a_rabbitmq_export_imports_with_working_passwords_and_exports_back() {
    let b = TestBroker::start_with_management().await;
    let export = rabbitmq_export();
    let (status, answer) = call(&b, "POST", "/api/definitions", Some(export.clone())).await;
    assert_eq!(status, 204, "{answer}");
    check_imported_export(&b).await;

    let (status, ours) = call(&b, "GET", "/api/definitions", None).await;
    assert_eq!(status, 200);
    for key in [
        "users",
        "permissions",
        "topic_permissions",
        "exchanges",
        "bindings",
    ] {
        let mut theirs = export[key].as_array().expect("list").clone();
        let mut mine = ours[key].as_array().expect("list").clone();
        let by_text = |a: &Value, b: &Value| a.to_string().cmp(&b.to_string());
        theirs.sort_by(by_text);
        mine.sort_by(by_text);
        assert_eq!(mine, theirs, "{key} differ after a round trip");
    }
    assert_eq!(
        ours["parameters"],
        json!([{"value": {"max-connections": 50, "max-queues": 100}, "vhost": "shop",
                "component": "vhost-limits", "name": "limits"}])
    );
    let names = |doc: &Value, key: &str| {
        let mut n: Vec<String> = doc[key]
            .as_array()
            .expect("list")
            .iter()
            .map(|x| format!("{}/{}", x["vhost"], x["name"]))
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(&ours, "queues"), names(&export, "queues"));
    // One vhost's definitions carry no vhost keys and import into another vhost.
    let (status, shop) = call(&b, "GET", "/api/definitions/shop", None).await;
    assert_eq!(status, 200);
    assert!(shop.get("users").is_none(), "{shop}");
    assert!(shop["queues"][0].get("vhost").is_none(), "{shop}");
    assert_eq!(call(&b, "PUT", "/api/vhosts/copy", None).await.0, 201);
    let (status, answer) = call(&b, "POST", "/api/definitions/copy", Some(shop)).await;
    assert_eq!(status, 204, "{answer}");
    assert_eq!(
        call(&b, "GET", "/api/queues/copy/orders.eu", None).await.0,
        200
    );
    let (_, copied) = call(&b, "GET", "/api/bindings/copy", None).await;
    assert!(
        copied
            .as_array()
            .expect("list")
            .iter()
            .any(|x| x["source"] == "orders" && x["destination"] == "audit"),
        "{copied}"
    );
    // Importing the same document again changes nothing and succeeds.
    assert_eq!(
        call(&b, "POST", "/api/definitions", Some(export)).await.0,
        204
    );
    b.finish().await;
}

#[tokio::test]
async fn a_bad_definitions_document_changes_nothing() {
    let b = TestBroker::start_with_management().await;
    let before = call(&b, "GET", "/api/definitions", None).await.1;
    let good_user = json!({"name": "new", "password_hash": "", "tags": []});
    let good_queue = json!({"name": "fresh", "vhost": "/", "durable": true,
                            "auto_delete": false, "arguments": {}});
    let bad_docs = [
        // A binding to a queue that exists nowhere.
        json!({"users": [good_user], "queues": [good_queue],
               "bindings": [{"source": "amq.direct", "vhost": "/", "destination": "ghost",
                             "destination_type": "queue", "routing_key": "k", "arguments": {}}]}),
        // A permission that does not compile.
        json!({"users": [good_user], "queues": [good_queue],
               "permissions": [{"user": "new", "vhost": "/", "configure": "(",
                                "write": "", "read": ""}]}),
        // A permission for a vhost that is neither there nor in the document.
        json!({"vhosts": [{"name": "fine"}], "users": [good_user],
               "permissions": [{"user": "new", "vhost": "nowhere", "configure": ".*",
                                "write": ".*", "read": ".*"}]}),
        // A password hash that is not one, and an unknown exchange type.
        json!({"users": [{"name": "new", "password_hash": "%%%"}], "queues": [good_queue]}),
        json!({"vhosts": [{"name": "fine"}], "exchanges": [{"name": "x", "vhost": "fine",
               "type": "nonsense", "durable": true, "auto_delete": false, "internal": false,
               "arguments": {}}]}),
        // A policy with a key RabbitMQ does not know; federation upstreams, which this
        // version cannot apply.
        json!({"users": [good_user], "policies": [{"vhost": "/", "name": "p", "pattern": ".*",
               "apply-to": "queues", "priority": 0, "definition": {"max-lenth": 1}}]}),
        json!({"users": [good_user], "parameters": [{"vhost": "/", "component": "federation-upstream",
               "name": "up", "value": {"uri": "amqp://elsewhere"}}]}),
        // A queue argument RabbitMQ refuses.
        json!({"queues": [{"name": "fresh", "vhost": "/", "durable": true, "auto_delete": false,
                           "arguments": {"x-max-length": "many"}}]}),
    ];
    for doc in bad_docs {
        let (status, answer) = call(&b, "POST", "/api/definitions", Some(doc.clone())).await;
        assert_eq!(status, 400, "{doc} -> {answer}");
        assert_eq!(answer["error"], "bad_request", "{answer}");
        assert!(
            answer["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{answer}"
        );
        assert_eq!(
            call(&b, "GET", "/api/definitions", None).await.1,
            before,
            "{doc} changed something"
        );
    }
    b.finish().await;
}

#[tokio::test]
async fn load_definitions_at_startup_imports_a_rabbitmq_export() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("definitions.json");
    std::fs::write(&file, rabbitmq_export().to_string()).expect("written");
    let config = warren::Config {
        load_definitions: Some(file),
        ..warren::Config::default()
    };
    let b = TestBroker::start_with_management_config(config).await;
    check_imported_export(&b).await;
    b.finish().await;

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"queues": [{"name": "q", "vhost": "nowhere"}]}"#).expect("written");
    let data = tempfile::tempdir().expect("tmp");
    let config = warren::Config {
        data_dir: data.path().to_path_buf(),
        load_definitions: Some(bad.clone()),
        ..warren::Config::default()
    };
    let Err(e) = warren::BrokerHandle::start(config, "127.0.0.1:0").await else {
        panic!("a bad definitions file must stop the start");
    };
    let text = e.to_string();
    assert!(
        text.contains(&bad.display().to_string()) && text.contains("nowhere"),
        "{text}"
    );
}
