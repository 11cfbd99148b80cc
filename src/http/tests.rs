//! The HTTP layer end to end over the in-memory fake: status codes, headers, JSON shapes against the
//! captured RabbitMQ fixtures, tag rules per endpoint, paging, routing on encoded paths.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use base64::Engine;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::fake::FakeBroker;
use super::Management;

/// A captured RabbitMQ 3.10.8 answer from tests/fixtures/management/.
pub fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/management/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
    raw: Vec<u8>,
}

fn app(fake: &FakeBroker) -> axum::Router {
    super::router(Arc::new(Management::new(fake.clone(), fake.clone())))
}

fn basic(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

async fn send(
    fake: &FakeBroker,
    method: Method,
    path: &str,
    auth: Option<(&str, &str)>,
    body: Option<&str>,
    extra: &[(&str, &str)],
) -> Answer {
    let mut request = Request::builder().method(method).uri(path);
    if let Some((user, password)) = auth {
        request = request.header("authorization", basic(user, password));
    }
    for (k, v) in extra {
        request = request.header(*k, *v);
    }
    let request = request
        .body(Body::from(body.unwrap_or("").to_string()))
        .unwrap();
    let response = app(fake).oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let raw = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
        raw,
    }
}

async fn get(fake: &FakeBroker, path: &str) -> Answer {
    send(fake, Method::GET, path, Some(("guest", "guest")), None, &[]).await
}

async fn get_as(fake: &FakeBroker, user: &str, path: &str) -> Answer {
    let password = format!("{user}pw");
    send(fake, Method::GET, path, Some((user, &password)), None, &[]).await
}

async fn put(fake: &FakeBroker, path: &str, body: &str) -> Answer {
    send(
        fake,
        Method::PUT,
        path,
        Some(("guest", "guest")),
        Some(body),
        &[],
    )
    .await
}

async fn post(fake: &FakeBroker, path: &str, body: &str) -> Answer {
    send(
        fake,
        Method::POST,
        path,
        Some(("guest", "guest")),
        Some(body),
        &[],
    )
    .await
}

async fn delete(fake: &FakeBroker, path: &str) -> Answer {
    send(
        fake,
        Method::DELETE,
        path,
        Some(("guest", "guest")),
        None,
        &[],
    )
    .await
}

/// Asserts our answer has the captured status and, where RabbitMQ sent one, the same error body.
fn assert_like_fixture(answer: &Answer, name: &str) {
    let captured = fixture(name);
    assert_eq!(
        answer.status.as_u16() as u64,
        captured["status"].as_u64().unwrap(),
        "{name}: status"
    );
    if captured["body"].get("error").is_some() {
        assert_eq!(answer.body, captured["body"], "{name}: body");
    }
    if let Some(realm) = captured["www_authenticate"].as_str() {
        assert_eq!(
            answer
                .headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some(realm),
            "{name}"
        );
    } else {
        assert!(
            answer.headers.get("www-authenticate").is_none(),
            "{name}: unexpected www-authenticate"
        );
    }
}

/// Keys that only an Erlang node has (process internals, mnesia, the classic queue's backing queue).
fn erlang_only(key: &str) -> bool {
    const KEYS: &[&str] = &[
        "backing_queue_status",
        "garbage_collection",
        "reductions",
        "reductions_details",
        "context_switches",
        "context_switches_details",
        "metrics_gc_queue_length",
        "ra_open_file_metrics",
        "exchange_types",
        "sample_retention_policies",
        "socket_opts",
        "cowboy_opts",
        "statistics_db_event_queue",
        "persister_stats",
        "mem_calculation_strategy",
    ];
    const PREFIXES: &[&str] = &[
        "io_",
        "mnesia_",
        "msg_store_",
        "queue_index_",
        "gc_",
        "ra_",
        "connection_closed",
        "connection_created",
        "channel_closed",
        "channel_created",
        "queue_created",
        "queue_declared",
        "queue_deleted",
    ];
    KEYS.contains(&key) || PREFIXES.iter().any(|p| key.starts_with(p))
}

/// Maps whose keys are data, not schema: compared as "an object", not key by key.
fn opaque(key: &str) -> bool {
    [
        "arguments",
        "effective_policy_definition",
        "client_properties",
        "cluster_state",
        "properties",
        "limits",
        "definition",
        "message_stats",
        "capabilities",
        "metadata",
    ]
    .contains(&key)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every field RabbitMQ sent is in ours with the same JSON type and nesting (null in RabbitMQ's
/// answer accepts any type; Erlang-only fields are skipped).
fn assert_same_shape(ours: &Value, theirs: &Value, path: &str) {
    match (ours, theirs) {
        (_, Value::Null) => {}
        (Value::Object(o), Value::Object(t)) => {
            for (key, their_value) in t {
                if erlang_only(key) {
                    continue;
                }
                let Some(our_value) = o.get(key) else {
                    panic!("{path}.{key} missing (RabbitMQ has {their_value})");
                };
                if opaque(key) {
                    assert_eq!(kind(our_value), kind(their_value), "{path}.{key}");
                } else {
                    assert_same_shape(our_value, their_value, &format!("{path}.{key}"));
                }
            }
        }
        (Value::Array(o), Value::Array(t)) => {
            if let (Some(o), Some(t)) = (o.first(), t.first()) {
                assert_same_shape(o, t, &format!("{path}[0]"));
            }
        }
        _ => assert_eq!(
            kind(ours),
            kind(theirs),
            "{path}: ours {ours}, RabbitMQ {theirs}"
        ),
    }
}

fn find<'a>(list: &'a Value, key: &str, value: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|r| r[key] == value)
        .unwrap_or_else(|| panic!("no {key}={value} in {list}"))
}

#[tokio::test]
async fn credentials_and_tags_get_rabbitmqs_401s() {
    let fake = FakeBroker::scene();
    let a = send(&fake, Method::GET, "/api/overview", None, None, &[]).await;
    assert_like_fixture(&a, "no_credentials");
    assert!(a.raw.is_empty());
    assert_like_fixture(
        &send(
            &fake,
            Method::GET,
            "/api/overview",
            Some(("guest", "wrong")),
            None,
            &[],
        )
        .await,
        "bad_credentials",
    );
    assert_like_fixture(
        &send(
            &fake,
            Method::GET,
            "/api/overview",
            Some(("nobody", "x")),
            None,
            &[],
        )
        .await,
        "bad_credentials",
    );
    let garbage = send(
        &fake,
        Method::GET,
        "/api/overview",
        None,
        None,
        &[("authorization", "Basic !!!")],
    )
    .await;
    assert_like_fixture(&garbage, "bad_credentials");
    assert_like_fixture(
        &get_as(&fake, "notag", "/api/overview").await,
        "not_management_user",
    );
    assert_like_fixture(
        &get_as(&fake, "mgmt", "/api/nodes").await,
        "management_nodes",
    );
    assert_like_fixture(
        &get_as(&fake, "mgmt", "/api/users").await,
        "management_users",
    );
    let a = send(
        &fake,
        Method::PUT,
        "/api/queues/test%2Fvh/qx",
        Some(("mon", "monpw")),
        Some("{}"),
        &[],
    )
    .await;
    assert_like_fixture(&a, "monitoring_declare_other_vhost");
}

#[tokio::test]
async fn unknown_paths_methods_and_bad_bodies() {
    let fake = FakeBroker::scene();
    assert_like_fixture(&get(&fake, "/api/nonsense").await, "not_found_path");
    assert_like_fixture(&get(&fake, "/api/queues/missing").await, "not_found_vhost");
    assert_like_fixture(
        &get(&fake, "/api/queues/%2F/missing").await,
        "not_found_queue",
    );
    assert_eq!(
        get(&fake, "/api/queues/%ZZ").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(get(&fake, "/other").await.status, StatusCode::NOT_FOUND);
    let a = post(&fake, "/api/overview", "{}").await;
    assert_like_fixture(&a, "method_not_allowed");
    assert!(a.raw.is_empty());
    assert_eq!(a.headers.get("allow").unwrap(), "HEAD, GET, OPTIONS");
    let a = post(&fake, "/api/queues/%2F/q1", "{}").await;
    assert_eq!(
        a.headers.get("allow").unwrap(),
        "HEAD, GET, PUT, DELETE, OPTIONS"
    );
    assert_like_fixture(
        &put(&fake, "/api/queues/%2F/qbad", "{not json").await,
        "bad_json",
    );
    let a = put(&fake, "/api/queues/%2F/qbad", r#"{"durable":"maybe"}"#).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.body["error"], "bad_request");
    assert!(
        get(&fake, "/api/queues/%2F/qbad").await.status == StatusCode::NOT_FOUND,
        "nothing declared"
    );
}

#[tokio::test]
async fn oversize_bodies_are_refused() {
    let fake = FakeBroker::scene();
    let mut management = Management::new(fake.clone(), fake.clone());
    management.max_body_bytes = 64;
    let app = super::router(Arc::new(management));
    let body = format!(
        r#"{{"durable":true,"arguments":{{"x-pad":"{}"}}}}"#,
        "x".repeat(200)
    );
    let request = Request::builder()
        .method(Method::PUT)
        .uri("/api/queues/%2F/big")
        .header("authorization", basic("guest", "guest"))
        .body(Body::from(body))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(fake.queues(Some("/")).iter().all(|q| q.name != "big"));
}

use super::source::ManagementSource;

#[tokio::test]
async fn encoded_names_route_on_the_raw_path() {
    let fake = FakeBroker::scene();
    assert_eq!(
        put(
            &fake,
            "/api/queues/test%2Fvh/a%2Fb%23c%20d%3Fe",
            r#"{"durable":"true"}"#
        )
        .await
        .status,
        StatusCode::CREATED
    );
    let q = fake
        .queue("test/vh", "a/b#c d?e")
        .expect("declared with the decoded name in the decoded vhost");
    assert!(q.durable);
    let a = get(&fake, "/api/queues/test%2fvh/a%2Fb%23c%20d%3Fe").await;
    assert_eq!(
        (a.body["name"].as_str(), a.body["vhost"].as_str()),
        (Some("a/b#c d?e"), Some("test/vh"))
    );
    let a = get(&fake, "/api/queues/%2F/q%2Fslash%23hash").await;
    assert_eq!(a.body["name"], "q/slash#hash");
    // The default exchange is amq.default in paths and "" in listings.
    let a = get(&fake, "/api/exchanges/%2F/amq.default").await;
    assert_eq!(
        (a.status, a.body["name"].as_str()),
        (StatusCode::OK, Some(""))
    );
    let list = get(&fake, "/api/exchanges/%2F").await.body;
    assert_eq!(list[0]["name"], "");
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["name"] != "amq.default"));
}

#[tokio::test]
async fn declares_answer_201_204_400_like_rabbitmq() {
    let fake = FakeBroker::scene();
    assert_like_fixture(
        &put(&fake, "/api/queues/%2F/qnew", r#"{"durable":"true"}"#).await,
        "queue_declare_created",
    );
    assert_like_fixture(
        &put(&fake, "/api/queues/%2F/qnew", r#"{"durable":"true"}"#).await,
        "queue_declare_existing",
    );
    assert_like_fixture(
        &put(&fake, "/api/queues/%2F/qnew", r#"{"durable":"false"}"#).await,
        "queue_declare_inequivalent",
    );
    assert_like_fixture(
        &put(&fake, "/api/exchanges/%2F/exnew", "{}").await,
        "exchange_declare_no_type",
    );
    assert_eq!(fake.exchange("/", "exnew").unwrap().kind, "direct");
    assert_like_fixture(
        &put(&fake, "/api/exchanges/%2F/exbad", r#"{"type":"nonsense"}"#).await,
        "exchange_declare_bad_type",
    );
    assert_like_fixture(
        &delete(&fake, "/api/queues/%2F/qnew/contents").await,
        "purge",
    );
    assert_like_fixture(&delete(&fake, "/api/queues/%2F/qnew").await, "queue_delete");
    assert_eq!(
        delete(&fake, "/api/queues/%2F/qnew").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        put(&fake, "/api/queues/nope/q", "{}").await.status,
        StatusCode::NOT_FOUND
    );
    let a = send(
        &fake,
        Method::DELETE,
        "/api/queues/%2F/q1?if-empty=true",
        Some(("guest", "guest")),
        None,
        &[],
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "q1 has messages");
    assert_eq!(
        delete(&fake, "/api/exchanges/%2F/exnew").await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn bindings_create_read_delete_by_properties_key() {
    let fake = FakeBroker::scene();
    let a = post(
        &fake,
        "/api/bindings/%2F/e/ex1/q/q1",
        r#"{"routing_key":"b.*"}"#,
    )
    .await;
    assert_like_fixture(&a, "binding_create");
    assert_eq!(
        a.headers.get("location").unwrap(),
        fixture("binding_create")["location"].as_str().unwrap()
    );
    let a = post(&fake, "/api/bindings/%2F/e/amq.direct/q/q1", "{}").await;
    assert_eq!(
        a.headers.get("location").unwrap(),
        fixture("binding_create_empty_key")["location"]
            .as_str()
            .unwrap()
    );
    let a = get(&fake, "/api/bindings/%2F/e/ex1/q/q1/b.%2A").await;
    assert_eq!(
        (a.status, a.body["routing_key"].as_str()),
        (StatusCode::OK, Some("b.*"))
    );
    assert_same_shape(&a.body, &fixture("binding_get")["body"], "binding");
    let pair = get(&fake, "/api/bindings/%2F/e/ex1/q/q1").await.body;
    assert_eq!(pair.as_array().unwrap().len(), 3);
    let with_args = find(&pair, "routing_key", "");
    let key = with_args["properties_key"].as_str().unwrap();
    assert!(key.starts_with('~') && key.len() > 1, "{key}");
    let path = format!(
        "/api/bindings/%2F/e/ex1/q/q1/{}",
        super::path::percent_encode(key)
    );
    assert_eq!(get(&fake, &path).await.status, StatusCode::OK);
    assert_eq!(delete(&fake, &path).await.status, StatusCode::NO_CONTENT);
    assert_eq!(get(&fake, &path).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        get(&fake, "/api/bindings/%2F/e/ex1/q/missing").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        post(&fake, "/api/bindings/%2F/e/nope/q/q1", "{}")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Queue and exchange views of the same bindings, with RabbitMQ's shapes.
    let qb = get(&fake, "/api/queues/%2F/q1/bindings").await.body;
    assert_same_shape(&qb, &fixture("queue_bindings")["body"], "queue bindings");
    assert_eq!(find(&qb, "source", "")["properties_key"], "q1");
    assert_eq!(find(&qb, "routing_key", "a.#")["properties_key"], "a.%23");
    let source = get(&fake, "/api/exchanges/%2F/ex1/bindings/source")
        .await
        .body;
    assert!(source
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["source"] == "ex1"));
}

#[tokio::test]
async fn publish_get_and_purge() {
    let fake = FakeBroker::scene();
    let a = post(
        &fake,
        "/api/queues/%2F/q1/get",
        r#"{"count":"2","ackmode":"ack_requeue_true","encoding":"auto","truncate":50000}"#,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_same_shape(&a.body, &fixture("queue_get")["body"], "get");
    assert_eq!(
        a.body,
        fixture("queue_get")["body"],
        "same messages, same JSON as RabbitMQ"
    );
    let again = post(
        &fake,
        "/api/queues/%2F/q1/get",
        r#"{"count":1,"ackmode":"ack_requeue_false","encoding":"base64"}"#,
    )
    .await;
    assert_eq!(
        (
            again.body[0]["redelivered"].as_bool(),
            again.body[0]["payload"].as_str()
        ),
        (Some(true), Some("bTA="))
    );
    assert_eq!(
        fake.queue("/", "q1").unwrap().depth.ready.count,
        2,
        "ack_requeue_false removed one"
    );
    let a = post(
        &fake,
        "/api/exchanges/%2F/amq.default/publish",
        r#"{"routing_key":"q1","payload":"aGk=","payload_encoding":"base64","properties":{}}"#,
    )
    .await;
    assert_like_fixture(&a, "publish_routed");
    assert_eq!(a.body, json!({"routed": true}));
    let a = post(
        &fake,
        "/api/exchanges/%2F/amq.default/publish",
        r#"{"routing_key":"nope","payload":"x","payload_encoding":"string","properties":{}}"#,
    )
    .await;
    assert_eq!(a.body, fixture("publish_unroutable")["body"]);
    let a = post(
        &fake,
        "/api/exchanges/%2F/nope/publish",
        r#"{"routing_key":"q1","payload":"x","payload_encoding":"string","properties":{}}"#,
    )
    .await;
    assert_like_fixture(&a, "publish_missing_exchange");
    let a = post(
        &fake,
        "/api/exchanges/%2F/ex1/publish",
        r#"{"routing_key":"a.b.c","payload":"t","payload_encoding":"string","properties":{}}"#,
    )
    .await;
    assert_eq!(a.body, json!({"routed": true}), "topic a.# matches");
    assert_eq!(fake.queue("/", "q1").unwrap().depth.ready.count, 4);
    let a = post(
        &fake,
        "/api/queues/%2F/q1/get",
        r#"{"count":1,"ackmode":"bogus","encoding":"auto"}"#,
    )
    .await;
    assert_eq!(
        (a.status, a.body["reason"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid ackmode"))
    );
    let a = post(
        &fake,
        "/api/exchanges/%2F/amq.default/publish",
        r#"{"routing_key":"q1","payload":"!!","payload_encoding":"base64"}"#,
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        delete(&fake, "/api/queues/%2F/q1/contents").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(fake.queue("/", "q1").unwrap().depth.ready.count, 0);
    assert_eq!(
        post(
            &fake,
            "/api/queues/%2F/q1/get",
            r#"{"count":5,"ackmode":"ack_requeue_true","encoding":"auto"}"#
        )
        .await
        .body,
        json!([])
    );
}

#[tokio::test]
async fn object_shapes_match_rabbitmq() {
    let fake = FakeBroker::scene();
    let cases: &[(&str, &str)] = &[
        ("/api/overview", "overview"),
        ("/api/cluster-name", "cluster_name"),
        ("/api/nodes", "nodes"),
        ("/api/nodes/warren@test", "node"),
        ("/api/whoami", "whoami"),
        ("/api/vhosts", "vhosts"),
        ("/api/vhosts/%2F", "vhost"),
        ("/api/exchanges/%2F", "exchanges"),
        ("/api/exchanges/%2F/amq.default", "exchange_default"),
        ("/api/exchanges/%2F/ex1", "exchange"),
        ("/api/queues", "queues"),
        ("/api/queues/%2F/q1", "queue"),
        ("/api/bindings/%2F", "bindings"),
        ("/api/connections", "connections"),
        ("/api/channels", "channels"),
        ("/api/consumers", "consumers"),
        ("/api/users", "users"),
        ("/api/users/mon", "user"),
        ("/api/users/mon/permissions", "user_permissions"),
        ("/api/permissions", "permissions"),
        ("/api/permissions/%2F/mon", "permission"),
        ("/api/vhosts/%2F/permissions", "vhost_permissions"),
        ("/api/policies", "policies"),
        ("/api/definitions", "definitions"),
        ("/api/definitions/%2F", "definitions_vhost"),
        ("/api/health/checks/alarms", "health_alarms"),
        ("/api/health/checks/local-alarms", "health_local_alarms"),
        ("/api/aliveness-test/%2F", "aliveness"),
    ];
    for (path, name) in cases {
        let a = get(&fake, path).await;
        let captured = fixture(name);
        assert_eq!(
            a.status.as_u16() as u64,
            captured["status"].as_u64().unwrap(),
            "{path}"
        );
        assert_same_shape(&a.body, &captured["body"], path);
    }
    let connection = &get(&fake, "/api/connections").await.body[0];
    let name = super::path::percent_encode(connection["name"].as_str().unwrap());
    let a = get(&fake, &format!("/api/connections/{name}")).await;
    assert_same_shape(&a.body, &fixture("connection")["body"], "connection");
    let a = get(&fake, &format!("/api/connections/{name}/channels")).await;
    assert_same_shape(
        &a.body,
        &fixture("connection_channels")["body"],
        "connection channels",
    );
    let a = get(
        &fake,
        "/api/queues?columns=name,message_stats.publish_details.rate",
    )
    .await;
    assert_same_shape(&a.body, &fixture("queues_columns")["body"], "columns");
}

/// The fields the Rust `rabbitmq_http_client` crate's response structs require (no `Option`, no
/// `#[serde(default)]`): a missing one fails its whole call.
#[tokio::test]
async fn fields_strict_clients_require_are_present() {
    let fake = FakeBroker::scene();
    let required: &[(&str, &[&str])] = &[
        (
            "/api/nodes/warren@test",
            &[
                "name",
                "uptime",
                "run_queue",
                "processors",
                "os_pid",
                "fd_total",
                "proc_total",
                "mem_limit",
                "mem_alarm",
                "disk_free_limit",
                "disk_free_alarm",
                "rates_mode",
                "enabled_plugins",
                "being_drained",
            ],
        ),
        (
            "/api/queues/%2F/q1",
            &[
                "name",
                "vhost",
                "type",
                "durable",
                "auto_delete",
                "exclusive",
                "arguments",
            ],
        ),
        (
            "/api/exchanges/%2F/ex1",
            &[
                "name",
                "vhost",
                "type",
                "durable",
                "auto_delete",
                "arguments",
            ],
        ),
        ("/api/users/mon", &["name", "tags", "password_hash"]),
        ("/api/vhosts/%2F", &["name"]),
        (
            "/api/permissions/%2F/mon",
            &["user", "vhost", "configure", "read", "write"],
        ),
        ("/api/whoami", &["name", "tags"]),
        ("/api/cluster-name", &["name"]),
    ];
    for (path, fields) in required {
        let a = get(&fake, path).await;
        for field in *fields {
            assert!(
                a.body.get(*field).is_some_and(|v| !v.is_null()),
                "{path} lacks {field}: {}",
                a.body
            );
        }
    }
    let channel = &get(&fake, "/api/channels").await.body[0];
    for field in [
        "number",
        "name",
        "vhost",
        "state",
        "consumer_count",
        "confirm",
        "prefetch_count",
        "messages_unacknowledged",
        "messages_unconfirmed",
    ] {
        assert!(channel.get(field).is_some(), "channel lacks {field}");
    }
    for field in ["name", "peer_host", "peer_port"] {
        assert!(
            channel["connection_details"].get(field).is_some(),
            "connection_details lacks {field}"
        );
    }
    let connection = &get(&fake, "/api/connections").await.body[0];
    for field in [
        "name",
        "node",
        "protocol",
        "user",
        "connected_at",
        "client_properties",
    ] {
        assert!(connection.get(field).is_some(), "connection lacks {field}");
    }
    let consumer = &get(&fake, "/api/consumers").await.body[0];
    for field in [
        "consumer_tag",
        "active",
        "ack_required",
        "prefetch_count",
        "exclusive",
        "arguments",
        "consumer_timeout",
        "queue",
        "channel_details",
    ] {
        assert!(consumer.get(field).is_some(), "consumer lacks {field}");
    }
    for field in [
        "name",
        "connection_name",
        "node",
        "number",
        "peer_host",
        "peer_port",
        "user",
    ] {
        assert!(
            consumer["channel_details"].get(field).is_some(),
            "channel_details lacks {field}"
        );
    }
    let binding = &get(&fake, "/api/bindings").await.body[0];
    for field in [
        "vhost",
        "source",
        "destination",
        "destination_type",
        "routing_key",
        "arguments",
        "properties_key",
    ] {
        assert!(binding.get(field).is_some(), "binding lacks {field}");
    }
    // os_pid is a string in RabbitMQ; the client parses it.
    assert!(get(&fake, "/api/nodes").await.body[0]["os_pid"].is_string());
}

#[tokio::test]
async fn lists_page_sort_filter_and_select() {
    let fake = FakeBroker::scene();
    let a = get(
        &fake,
        "/api/queues?page=1&page_size=2&name=q&sort=name&sort_reverse=true",
    )
    .await;
    let captured = fixture("queues_paged")["body"].clone();
    for key in [
        "filtered_count",
        "item_count",
        "page",
        "page_count",
        "page_size",
        "total_count",
    ] {
        assert_eq!(a.body[key], captured[key], "{key}");
    }
    let names = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&a.body["items"]), names(&captured["items"]));
    let a = get(
        &fake,
        "/api/queues?page=1&page_size=10&name=%5Eq%5B0-9%5D&use_regex=true",
    )
    .await;
    assert_eq!(names(&a.body["items"]), ["q1"]);
    assert_like_fixture(
        &get(&fake, "/api/queues?page=9&page_size=2").await,
        "queues_page_out_of_range",
    );
    assert_like_fixture(&get(&fake, "/api/queues?page=0").await, "queues_page_zero");
    let a = get(&fake, "/api/queues").await;
    assert_eq!(
        names(&a.body),
        names(&fixture("queues")["body"]),
        "default order: vhost, then name"
    );
    let a = get(&fake, "/api/exchanges?columns=name,type&sort=type").await;
    assert!(a
        .body
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x.as_object().unwrap().len() == 2));
    // A single object is cut to its columns too (RabbitMQ 3.10: /api/overview?columns=…).
    let a = get(&fake, "/api/overview?columns=node,object_totals.queues").await;
    let keys: Vec<&String> = a.body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["node", "object_totals"], "{}", a.body);
    assert!(a.body["object_totals"]["queues"].is_number(), "{}", a.body);
    let a = get(&fake, "/api/queues/%2F/q1?columns=name").await;
    assert_eq!(a.body, json!({"name": "q1"}));
}

#[tokio::test]
async fn visibility_follows_rabbitmqs_tag_rules() {
    let fake = FakeBroker::scene();
    // Monitoring sees every vhost but only its own vhosts' queues (tests/fixtures: monitoring_*).
    let vhosts = get_as(&fake, "mon", "/api/vhosts").await.body;
    assert_eq!(vhosts.as_array().unwrap().len(), 2);
    let queues = get_as(&fake, "mon", "/api/queues").await.body;
    assert!(queues.as_array().unwrap().iter().all(|q| q["vhost"] == "/"));
    // RabbitMQ's list also has the aliveness-test queue its capture script created first.
    let captured = fixture("monitoring_queues")["body"].clone();
    let theirs: Vec<&Value> = captured
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| q["name"] != "aliveness-test")
        .collect();
    assert!(theirs.iter().all(|q| q["vhost"] == "/"));
    assert_eq!(queues.as_array().unwrap().len(), theirs.len());
    assert_eq!(
        get_as(&fake, "mon", "/api/connections")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Management users see their own vhosts and connections only.
    assert_eq!(
        get_as(&fake, "mgmt", "/api/vhosts")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let own = get_as(&fake, "mgmt", "/api/connections").await.body;
    assert_eq!(own.as_array().unwrap().len(), 1);
    assert_eq!(own[0]["user"], "mgmt");
    assert_eq!(get_as(&fake, "mgmt", "/api/channels").await.body, json!([]));
    assert_eq!(
        get_as(&fake, "mgmt", "/api/queues/test%2Fvh").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get_as(&fake, "mgmt", "/api/definitions").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get_as(&fake, "mgmt", "/api/whoami").await.body,
        json!({"name": "mgmt", "tags": ["management"]})
    );
    // Policies: readable by management users, writable by policymakers and administrators.
    assert_eq!(
        get_as(&fake, "mgmt", "/api/policies")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let policy =
        r#"{"pattern":"^x","definition":{"max-length":1},"apply-to":"queues","priority":"1"}"#;
    let as_mgmt = send(
        &fake,
        Method::PUT,
        "/api/policies/%2F/p",
        Some(("mgmt", "mgmtpw")),
        Some(policy),
        &[],
    )
    .await;
    assert_eq!(as_mgmt.status, StatusCode::UNAUTHORIZED);
    let as_pm = send(
        &fake,
        Method::PUT,
        "/api/policies/%2F/p",
        Some(("pm", "pmpw")),
        Some(policy),
        &[],
    )
    .await;
    assert_eq!(as_pm.status, StatusCode::CREATED);
    assert_eq!(
        fake.policies(Some("/"))
            .iter()
            .find(|p| p.name == "p")
            .unwrap()
            .priority,
        1
    );
    let bad = send(
        &fake,
        Method::PUT,
        "/api/policies/%2F/p2",
        Some(("pm", "pmpw")),
        Some(r#"{"pattern":"(","definition":{}}"#),
        &[],
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    // Connections: the owner or an administrator may close one, a monitor may not.
    let mgmt_conn = super::path::percent_encode("127.0.0.1:40000 -> 127.0.0.1:5672");
    let path = format!("/api/connections/{mgmt_conn}");
    assert_eq!(
        send(
            &fake,
            Method::DELETE,
            &path,
            Some(("mon", "monpw")),
            None,
            &[]
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    let closed = send(
        &fake,
        Method::DELETE,
        &path,
        Some(("mgmt", "mgmtpw")),
        None,
        &[("x-reason", "bye")],
    )
    .await;
    assert_eq!(closed.status, StatusCode::NO_CONTENT);
    assert_eq!(
        fake.lock().closed,
        vec![(
            "127.0.0.1:40000 -> 127.0.0.1:5672".to_string(),
            "bye".to_string()
        )]
    );
}

#[tokio::test]
async fn users_vhosts_permissions_and_definitions() {
    let fake = FakeBroker::scene();
    assert_eq!(
        put(
            &fake,
            "/api/users/alice",
            r#"{"password":"s3cret","tags":"monitoring"}"#
        )
        .await
        .status,
        StatusCode::CREATED
    );
    assert_eq!(
        put(
            &fake,
            "/api/users/alice",
            r#"{"password":"s3cret","tags":["administrator"]}"#
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        put(&fake, "/api/vhosts/new%2Fvh", r#"{"description":"d"}"#)
            .await
            .status,
        StatusCode::CREATED
    );
    assert!(
        fake.permissions()
            .iter()
            .any(|p| p.user == "guest" && p.vhost == "new/vh"),
        "creator gets permissions"
    );
    let a = put(
        &fake,
        "/api/permissions/new%2Fvh/alice",
        r#"{"configure":".*","write":".*","read":".*"}"#,
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = put(
        &fake,
        "/api/permissions/new%2Fvh/alice",
        r#"{"configure":"(","write":".*","read":".*"}"#,
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = send(
        &fake,
        Method::GET,
        "/api/queues/new%2Fvh",
        Some(("alice", "s3cret")),
        None,
        &[],
    )
    .await;
    assert_eq!((a.status, a.body.clone()), (StatusCode::OK, json!([])));
    assert_eq!(
        delete(&fake, "/api/permissions/new%2Fvh/alice")
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        delete(&fake, "/api/users/alice").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        get(&fake, "/api/users/alice").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        delete(&fake, "/api/vhosts/new%2Fvh").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        put(&fake, "/api/cluster-name", r#"{"name":"renamed"}"#)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        get(&fake, "/api/cluster-name").await.body,
        json!({"name": "renamed"})
    );

    // Export excludes the default and amq.* exchanges and the default exchange's bindings.
    let export = get(&fake, "/api/definitions").await.body;
    assert!(export["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["name"] == "ex1"));
    assert!(export["bindings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["source"] != ""));
    let vhost_export = get(&fake, "/api/definitions/%2F").await.body;
    assert!(
        vhost_export.get("users").is_none() && vhost_export["queues"][0].get("vhost").is_none()
    );

    // Import of RabbitMQ's own export: parsed (strings for booleans accepted) and handed over whole.
    let document = serde_json::to_string(&fixture("definitions")["body"]).unwrap();
    assert_eq!(
        post(&fake, "/api/definitions", &document).await.status,
        StatusCode::NO_CONTENT
    );
    let imported = fake.lock().imported.clone().unwrap();
    assert_eq!(
        imported
            .users
            .iter()
            .find(|u| u.name == "mon")
            .unwrap()
            .password_hash,
        find(&fixture("definitions")["body"]["users"], "name", "mon")["password_hash"]
            .as_str()
            .unwrap()
    );
    assert!(imported
        .queues
        .iter()
        .any(|q| q.name == "q1" && q.vhost == "/" && q.durable));
    let per_vhost = serde_json::to_string(&fixture("definitions_vhost")["body"]).unwrap();
    assert_eq!(
        post(&fake, "/api/definitions/test%2Fvh", &per_vhost)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let imported = fake.lock().imported.clone().unwrap();
    assert!(imported.queues.iter().all(|q| q.vhost == "test/vh") && !imported.queues.is_empty());
    let bad = post(
        &fake,
        "/api/definitions",
        r#"{"exchanges":[{"name":"x","vhost":"/","type":"nonsense"}]}"#,
    )
    .await;
    assert_eq!(
        (bad.status, bad.body["reason"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some("unknown exchange type 'nonsense'")
        )
    );
    assert_eq!(
        post(&fake, "/api/definitions", "[]").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn alarms_fail_the_health_check() {
    let fake = FakeBroker::scene();
    fake.lock().alarms.push("memory".into());
    let a = get(&fake, "/api/health/checks/alarms").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        a.body["alarms"],
        json!([{"node": super::fake::NODE, "resource": "memory"}])
    );
}

/// Over a real socket: `serve` answers, a panicking handler answers 500 and the server keeps serving,
/// and shutdown ends it.
#[tokio::test]
async fn serve_survives_a_panicking_handler_and_shuts_down() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fake = FakeBroker::scene();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let state = Arc::new(Management::new(fake.clone(), fake.clone()));
    let server = tokio::spawn(super::serve(listener, state, async {
        let _ = stopped.await;
    }));
    let request = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\nconnection: close\r\n\r\n",
            basic("guest", "guest")
        )
    };
    async fn exchange(address: std::net::SocketAddr, request: String) -> String {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }
    fake.lock().panic_on_overview = true;
    let answer = exchange(address, request("/api/overview")).await;
    assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");
    assert!(
        answer.contains(r#""error":"internal_server_error""#),
        "{answer}"
    );
    fake.lock().panic_on_overview = false;
    let answer = exchange(address, request("/api/overview")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = exchange(address, request("/api/queues/%2F/q%2Fslash%23hash")).await;
    assert!(answer.contains(r#""name":"q/slash#hash""#), "{answer}");
    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn error_answers_match_rabbitmqs() {
    let fake = FakeBroker::scene();
    let a = post(&fake, "/api/bindings/%2F/e/nope/q/q1", "{}").await;
    assert_like_fixture(&a, "binding_missing_source");
    assert_like_fixture(
        &post(&fake, "/api/bindings/%2F/e/ex1/q/nope", "{}").await,
        "binding_missing_destination",
    );
    post(
        &fake,
        "/api/bindings/%2F/e/ex1/q/q1",
        r#"{"routing_key":"b.*"}"#,
    )
    .await;
    assert_like_fixture(
        &delete(&fake, "/api/bindings/%2F/e/ex1/q/q1/b.%2A").await,
        "binding_delete",
    );
    assert_like_fixture(
        &put(&fake, "/api/users/nopw", r#"{"tags":""}"#).await,
        "user_create_no_password",
    );
    assert_like_fixture(
        &put(&fake, "/api/users/nopw", r#"{"password":"x","tags":""}"#).await,
        "user_update",
    );
    assert_like_fixture(
        &delete(&fake, "/api/users/ghost").await,
        "user_delete_missing",
    );
    let perms = r#"{"configure":".*","write":".*","read":".*"}"#;
    assert_like_fixture(
        &put(&fake, "/api/permissions/%2F/ghost", perms).await,
        "permission_missing_user",
    );
    let a = send(
        &fake,
        Method::DELETE,
        "/api/queues/%2F/q1?if-empty=true",
        Some(("guest", "guest")),
        None,
        &[],
    )
    .await;
    assert_like_fixture(&a, "queue_delete_if_empty");
    let a = post(
        &fake,
        "/api/exchanges/%2F/amq.default/publish",
        r#"{"routing_key":"q1","payload":"x","payload_encoding":"string"}"#,
    )
    .await;
    assert_like_fixture(&a, "publish_missing_properties");
    let a = post(
        &fake,
        "/api/queues/%2F/q1/get",
        r#"{"ackmode":"ack_requeue_true","encoding":"auto"}"#,
    )
    .await;
    assert_like_fixture(&a, "get_missing_count");
    let a = put(
        &fake,
        "/api/policies/%2F/pp",
        r#"{"pattern":"x","definition":{"max-length":1},"apply-to":"zzz"}"#,
    )
    .await;
    assert_like_fixture(&a, "policy_bad_apply_to");
    assert_like_fixture(
        &get_as(&fake, "mgmt", "/api/vhosts/%2F").await,
        "vhost_as_management",
    );
    assert_like_fixture(
        &put(&fake, "/api/vhosts/created", r#"{"description":"d"}"#).await,
        "vhost_create",
    );
    assert_like_fixture(
        &put(&fake, "/api/vhosts/created", r#"{"description":"d"}"#).await,
        "vhost_create_existing",
    );
    let a = get(&fake, "/api/vhosts/created/permissions").await;
    assert_eq!(
        a.body,
        fixture("vhost_created_permissions")["body"],
        "the creator gets full permissions"
    );
    let import = r#"{"queues":[{"name":"imported","vhost":"/","durable":true,"auto_delete":false,"arguments":{}}]}"#;
    assert_like_fixture(
        &post(&fake, "/api/definitions", import).await,
        "definitions_import",
    );
    let a = post(
        &fake,
        "/api/definitions",
        r#"{"exchanges":[{"name":"x","vhost":"/","type":"nonsense"}]}"#,
    )
    .await;
    assert_eq!(
        a.status.as_u16() as u64,
        fixture("definitions_import_bad")["status"]
            .as_u64()
            .unwrap()
    );
}

#[tokio::test]
async fn overview_is_filtered_for_non_monitors() {
    let fake = FakeBroker::scene();
    let ours = get_as(&fake, "mgmt", "/api/overview").await.body;
    let theirs = fixture("overview_as_management")["body"].clone();
    assert_same_shape(&ours, &theirs, "overview as management");
    let keys = |v: &Value| {
        v.as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(keys(&ours["object_totals"]), keys(&theirs["object_totals"]));
    for key in ["node", "listeners", "contexts"] {
        assert_eq!(ours.get(key).is_some(), theirs.get(key).is_some(), "{key}");
    }
    assert_eq!(
        ours["object_totals"]["queues"], 3,
        "only the vhost / queues"
    );
    assert_eq!(
        ours["object_totals"]["connections"], 1,
        "only its own connection"
    );
    let monitor = get_as(&fake, "mon", "/api/overview").await.body;
    assert_same_shape(
        &monitor,
        &fixture("overview_as_monitoring")["body"],
        "overview as monitoring",
    );
    assert_eq!(monitor["object_totals"]["queues"], 4);
}

#[tokio::test]
async fn listener_and_cluster_health_checks() {
    let fake = FakeBroker::scene();
    // The fake node listens for http on 15672 only.
    let a = get(&fake, "/api/health/checks/port-listener/15672").await;
    assert_eq!(
        (a.status, a.body.clone()),
        (StatusCode::OK, json!({"status": "ok", "port": 15672}))
    );
    assert_same_shape(
        &a.body,
        &fixture("health_port_listener")["body"],
        "port-listener",
    );
    let a = get(&fake, "/api/health/checks/port-listener/1234").await;
    assert_like_fixture(&a, "health_port_listener_missing");
    assert_same_shape(
        &a.body,
        &fixture("health_port_listener_missing")["body"],
        "port-listener missing",
    );
    assert_eq!(a.body["missing"], 1234);
    assert_eq!(
        get(&fake, "/api/health/checks/port-listener/x")
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    let a = get(&fake, "/api/health/checks/protocol-listener/http").await;
    assert_eq!(
        (a.status, a.body["protocol"].as_str()),
        (StatusCode::OK, Some("http"))
    );
    let a = get(&fake, "/api/health/checks/protocol-listener/amqp091").await;
    assert_eq!(
        a.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the fake has no amqp listener"
    );
    assert_eq!(a.body["missing"], "amqp", "amqp091 is an alias of amqp");
    assert_same_shape(
        &a.body,
        &fixture("health_protocol_listener_missing")["body"],
        "protocol-listener",
    );
    for (path, name) in [
        (
            "/api/health/checks/node-is-quorum-critical",
            "health_quorum_critical",
        ),
        ("/api/health/checks/virtual-hosts", "health_virtual_hosts"),
    ] {
        let a = get(&fake, path).await;
        assert_like_fixture(&a, name);
        assert_eq!(a.body, fixture(name)["body"], "{path}");
    }
}
