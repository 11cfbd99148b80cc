//! Policies and operator policies set over the management API, seen by AMQP clients: they apply
//! to queues and exchanges that already exist and to new ones, with RabbitMQ's precedence
//! (highest priority wins, operator policy's lower numeric value wins, queue arguments win or
//! the lower value wins), and stop applying when deleted.

use crate::common::*;
use crate::management_api::Api;
use lapin::ExchangeKind;
use serde_json::{json, Value};
use std::time::Duration;

async fn put(api: &Api, path: &str, body: Value) -> u16 {
    api.call("PUT", path, Some(body)).await.status
}

async fn queue_json(api: &Api, name: &str) -> Value {
    api.get(&format!("/api/queues/%2F/{name}")).await.json()
}

#[tokio::test]
async fn a_max_length_policy_applies_to_an_existing_queue_and_reverts_when_deleted() {
    let broker = TestBroker::start_with_management().await;
    let api = Api::of(&broker);
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q1", &[]).await;
    declare(&ch, "other", &[]).await;
    for i in 0..5 {
        publish(&ch, "q1", i.to_string()).await;
    }
    let body = json!({"pattern": "^q", "definition": {"max-length": 2}, "priority": 1, "apply-to": "queues"});
    assert_eq!(
        put(&api, "/api/policies/%2F/maxlen", body.clone()).await,
        201
    );
    // Applied at once: the oldest are dropped.
    assert_eq!(ready_count(&ch, "q1").await, 2);
    assert_eq!(put(&api, "/api/policies/%2F/maxlen", body).await, 204);
    let q = queue_json(&api, "q1").await;
    assert_eq!(q["policy"], "maxlen");
    assert_eq!(q["operator_policy"], Value::Null);
    assert_eq!(q["effective_policy_definition"], json!({"max-length": 2}));
    assert_eq!(queue_json(&api, "other").await["policy"], Value::Null);
    // And to new publishes.
    publish(&ch, "q1", "new").await;
    assert_eq!(drain(&ch, "q1").await, vec!["4", "new"]);
    let listed = api.get("/api/policies/%2F").await.json();
    assert_eq!(
        listed,
        json!([{"vhost": "/", "name": "maxlen", "pattern": "^q", "apply-to": "queues",
                "priority": 1, "definition": {"max-length": 2}}])
    );
    assert_eq!(
        api.call("DELETE", "/api/policies/%2F/maxlen", None)
            .await
            .status,
        204
    );
    assert_eq!(
        api.call("DELETE", "/api/policies/%2F/maxlen", None)
            .await
            .status,
        404
    );
    for i in 0..5 {
        publish(&ch, "q1", i.to_string()).await;
    }
    assert_eq!(ready_count(&ch, "q1").await, 5);
    let q = queue_json(&api, "q1").await;
    assert_eq!(q["policy"], Value::Null);
    assert_eq!(q["effective_policy_definition"], json!({}));
    broker.finish().await;
}

#[tokio::test]
async fn message_ttl_and_dead_lettering_come_from_a_policy_on_new_queues_too() {
    let broker = TestBroker::start_with_management().await;
    let api = Api::of(&broker);
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "dlq", &[]).await;
    let body = json!({"pattern": "^ttl\\.", "apply-to": "queues",
                      "definition": {"message-ttl": 50, "dead-letter-exchange": "",
                                     "dead-letter-routing-key": "dlq"}});
    assert_eq!(put(&api, "/api/policies/%2F/ttl", body).await, 201);
    declare(&ch, "ttl.q", &[]).await;
    publish(&ch, "ttl.q", "gone").await;
    wait_ready(&ch, "dlq", 1).await;
    assert_eq!(ready_count(&ch, "ttl.q").await, 0);
    let d = get(&ch, "dlq").await.expect("a dead letter");
    assert_eq!(
        field_str(&x_death(&d.delivery.properties)[0], "reason"),
        "expired"
    );
    assert_eq!(
        field_str(&x_death(&d.delivery.properties)[0], "queue"),
        "ttl.q"
    );
    broker.finish().await;
}

#[tokio::test]
async fn the_highest_priority_policy_wins() {
    let broker = TestBroker::start_with_management().await;
    let api = Api::of(&broker);
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "pq", &[]).await;
    let low = json!({"pattern": ".*", "priority": 1, "definition": {"max-length": 1}});
    let high = json!({"pattern": "^pq$", "priority": 10, "definition": {"max-length": 3}});
    assert_eq!(put(&api, "/api/policies/%2F/low", low).await, 201);
    assert_eq!(put(&api, "/api/policies/%2F/high", high).await, 201);
    for i in 0..6 {
        publish(&ch, "pq", i.to_string()).await;
    }
    assert_eq!(ready_count(&ch, "pq").await, 3);
    assert_eq!(queue_json(&api, "pq").await["policy"], "high");
    // Only one policy applies: the lower one's keys are not merged in.
    assert_eq!(
        api.call("DELETE", "/api/policies/%2F/high", None)
            .await
            .status,
        204
    );
    assert_eq!(ready_count(&ch, "pq").await, 1);
    assert_eq!(queue_json(&api, "pq").await["policy"], "low");
    broker.finish().await;
}

#[tokio::test]
async fn an_operator_policy_lower_value_wins_and_queue_arguments_win_over_policies() {
    let broker = TestBroker::start_with_management().await;
    let api = Api::of(&broker);
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "op", &[]).await;
    declare(&ch, "arg", &[("x-max-length", int(1))]).await;
    declare(&ch, "rej", &[("x-overflow", s("drop-head"))]).await;
    let pol = json!({"pattern": ".*", "apply-to": "queues",
                     "definition": {"max-length": 4, "overflow": "reject-publish"}});
    assert_eq!(put(&api, "/api/policies/%2F/p", pol).await, 201);
    let op = json!({"pattern": "^op$", "apply-to": "queues", "definition": {"max-length": 2}});
    assert_eq!(put(&api, "/api/operator-policies/%2F/cap", op).await, 201);
    for q in ["op", "arg", "rej"] {
        for i in 0..6 {
            publish(&ch, q, i.to_string()).await;
        }
    }
    // Operator policy 2 < policy 4; reject-publish from the policy keeps the oldest.
    assert_eq!(drain(&ch, "op").await, vec!["0", "1"]);
    // x-max-length 1 < policy 4 (the lower wins), overflow from the policy.
    assert_eq!(drain(&ch, "arg").await, vec!["0"]);
    // x-overflow drop-head wins over the policy's reject-publish.
    assert_eq!(drain(&ch, "rej").await, vec!["2", "3", "4", "5"]);
    let q = queue_json(&api, "op").await;
    assert_eq!(q["policy"], "p");
    assert_eq!(q["operator_policy"], "cap");
    assert_eq!(
        q["effective_policy_definition"],
        json!({"max-length": 2, "overflow": "reject-publish"})
    );
    let ops = api.get("/api/operator-policies").await.json();
    assert_eq!(ops[0]["name"], "cap");
    assert_eq!(
        api.get("/api/operator-policies/%2F/cap").await.json()["definition"],
        json!({"max-length": 2})
    );
    assert_eq!(
        api.call("DELETE", "/api/operator-policies/%2F/cap", None)
            .await
            .status,
        204
    );
    for i in 0..6 {
        publish(&ch, "op", i.to_string()).await;
    }
    assert_eq!(ready_count(&ch, "op").await, 4);
    broker.finish().await;
}

#[tokio::test]
async fn an_alternate_exchange_policy_routes_unroutable_messages() {
    let broker = TestBroker::start_with_management().await;
    let api = Api::of(&broker);
    let (_conn, ch) = broker.channel().await;
    declare_exchange(&ch, "src", ExchangeKind::Direct).await;
    declare_exchange(&ch, "ae", ExchangeKind::Fanout).await;
    declare(&ch, "caught", &[]).await;
    ch.queue_bind("caught", "ae", "", Default::default(), Default::default())
        .await
        .expect("bind");
    let body = json!({"pattern": "^src$", "apply-to": "exchanges",
                      "definition": {"alternate-exchange": "ae"}});
    assert_eq!(put(&api, "/api/policies/%2F/ae", body).await, 201);
    publish_key(&ch, "src", "nowhere").await;
    wait_ready(&ch, "caught", 1).await;
    assert_eq!(
        api.get("/api/exchanges/%2F/src").await.json()["policy"],
        "ae"
    );
    assert_eq!(
        api.call("DELETE", "/api/policies/%2F/ae", None)
            .await
            .status,
        204
    );
    publish_key(&ch, "src", "nowhere").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ready_count(&ch, "caught").await, 1);
    broker.finish().await;
}

#[tokio::test]
async fn bad_policies_get_rabbitmqs_400_reasons() {
    let broker = TestBroker::start_with_management().await;
    let api = Api::of(&broker);
    let cases = [
        (
            json!({"pattern": "(", "definition": {"max-length": 1}}),
            "pattern should be regular expression but is invalid",
        ),
        (
            json!({"pattern": ".*", "definition": {"max-length": -1}}),
            "Validation failed\n\n-1 is not a valid maximum length\n",
        ),
        (
            json!({"pattern": ".*", "definition": {"overflow": "sideways"}}),
            "Validation failed\n\n<<\"sideways\">> is not a valid overflow value\n",
        ),
        (
            json!({"pattern": ".*", "definition": {"bogus": 1}}),
            "Validation failed\n\n[{<<\"bogus\">>,1}] are not recognised policy settings\n",
        ),
        (
            json!({"pattern": ".*", "definition": {}}),
            "Validation failed\n\nno policy provided\n",
        ),
    ];
    for (body, reason) in cases {
        let a = api
            .call("PUT", "/api/policies/%2F/bad", Some(body.clone()))
            .await;
        assert_eq!(a.status, 400, "{body}");
        let got = a.json();
        assert_eq!(got["error"], "bad_request");
        let text = got["reason"].as_str().unwrap_or_default();
        assert!(text.contains(reason), "{body}: {text:?}");
    }
    // Operator policies take only the numeric limits.
    let a = api
        .call(
            "PUT",
            "/api/operator-policies/%2F/bad",
            Some(json!({"pattern": ".*", "definition": {"dead-letter-exchange": "x"}})),
        )
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(api.get("/api/policies").await.json(), json!([]));
    assert_eq!(api.get("/api/operator-policies").await.json(), json!([]));
    broker.finish().await;
}

#[tokio::test]
async fn an_expires_policy_deletes_an_unused_existing_queue() {
    let broker = TestBroker::start_with_management().await;
    let api = Api::of(&broker);
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "idle", &[]).await;
    declare(&ch, "kept", &[]).await;
    let body = json!({"pattern": "^idle$", "definition": {"expires": 100}});
    assert_eq!(put(&api, "/api/policies/%2F/exp", body).await, 201);
    let mut gone = false;
    for _ in 0..100 {
        if api.get("/api/queues/%2F/idle").await.status == 404 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone, "the queue expired");
    assert_eq!(api.get("/api/queues/%2F/kept").await.status, 200);
    broker.finish().await;
}

/// RabbitMQ 3.10.8's export of the vhost `pol`: two policies, an operator policy (a runtime
/// parameter of component `operator_policy`), vhost limits and a queue
/// (tests/fixtures/management/capture_policies.py).
fn rabbitmq_policies_export() -> Value {
    let text = include_str!("../fixtures/management/policies_definitions_vhost.json");
    let doc: Value = serde_json::from_str(text).expect("fixture is JSON");
    doc["body"].clone()
}

fn sorted(list: &Value) -> Vec<Value> {
    let mut items = list.as_array().expect("list").clone();
    items.sort_by_key(|v| v.to_string());
    items
}

/// What importing the export made: the policies, in force on the queue and seen by AMQP.
async fn check_imported_policies(broker: &TestBroker, api: &Api, export: &Value) {
    assert_eq!(
        sorted(&api.get("/api/policies/pol").await.json()),
        sorted(&export["policies"])
    );
    assert_eq!(
        api.get("/api/operator-policies/pol").await.json(),
        json!([{"vhost": "pol", "name": "op", "pattern": ".*", "apply-to": "queues",
                "priority": 0, "definition": {"expires": 3600000}}])
    );
    let q = api.get("/api/queues/pol/orders.eu").await.json();
    assert_eq!(
        (&q["policy"], &q["operator_policy"]),
        (&json!("limit-orders"), &json!("op"))
    );
    let effective = &q["effective_policy_definition"];
    assert_eq!(
        (&effective["max-length"], &effective["expires"]),
        (&json!(2), &json!(3600000))
    );
    // max-length 2 with reject-publish: the third publish is refused.
    let conn = connect_url(&format!("amqp://guest:guest@{}/pol", broker.addr()))
        .await
        .expect("connects to pol");
    let ch = confirm_channel_on(&conn).await;
    let mut acks = Vec::new();
    for i in 0..3 {
        acks.push(confirmed(&ch, "orders.eu", &i.to_string()).await);
    }
    assert_eq!(acks, [true, true, false]);
    assert_eq!(ready_count(&ch, "orders.eu").await, 2);
}

#[tokio::test]
async fn policies_and_operator_policies_import_from_a_rabbitmq_export_and_export_back() {
    let broker = TestBroker::start_with_management().await;
    let api = Api::of(&broker);
    let export = rabbitmq_policies_export();
    assert_eq!(put(&api, "/api/vhosts/pol", json!({})).await, 201);
    // The vhost's creator has all permissions on it already (as in RabbitMQ).
    let answer = api
        .call("POST", "/api/definitions/pol", Some(export.clone()))
        .await;
    assert_eq!(answer.status, 204, "{}", answer.json());
    check_imported_policies(&broker, &api, &export).await;

    // Exported as RabbitMQ exports them, per vhost and in the whole document.
    let ours = api.get("/api/definitions/pol").await.json();
    assert_eq!(sorted(&ours["policies"]), sorted(&export["policies"]));
    assert_eq!(sorted(&ours["parameters"]), sorted(&export["parameters"]));
    let whole = api.get("/api/definitions").await.json();
    assert_eq!(sorted(&whole["policies"]), sorted(&export["policies"]));
    assert!(
        whole["parameters"]
            .as_array()
            .expect("list")
            .contains(&export["parameters"][0]),
        "{}",
        whole["parameters"]
    );

    // Bad policies are refused as PUT refuses them, and nothing of the document is applied.
    let before = api.get("/api/definitions").await.json();
    let queue = json!({"name": "fresh", "vhost": "pol", "durable": true, "auto_delete": false,
                       "arguments": {}});
    for bad in [
        json!({"queues": [queue], "policies": [{"vhost": "pol", "name": "p", "pattern": "(",
               "apply-to": "queues", "priority": 0, "definition": {"max-length": 1}}]}),
        json!({"queues": [queue], "policies": [{"vhost": "pol", "name": "p", "pattern": ".*",
               "apply-to": "queues", "priority": 0, "definition": {"no-such-key": 1}}]}),
        json!({"queues": [queue], "policies": [{"vhost": "nowhere", "name": "p", "pattern": ".*",
               "apply-to": "queues", "priority": 0, "definition": {"max-length": 1}}]}),
        // An operator policy may not set what only users' policies set.
        json!({"queues": [queue], "parameters": [{"vhost": "pol", "component": "operator_policy",
               "name": "op2", "value": {"pattern": ".*", "apply-to": "queues", "priority": 0,
               "definition": {"dead-letter-exchange": "x"}}}]}),
    ] {
        let answer = api
            .call("POST", "/api/definitions", Some(bad.clone()))
            .await;
        assert_eq!(answer.status, 400, "{bad}");
        assert_eq!(answer.json()["error"], "bad_request");
        assert_eq!(api.get("/api/definitions").await.json(), before, "{bad}");
    }
    broker.finish().await;
}

#[tokio::test]
async fn load_definitions_at_startup_imports_policies() {
    // The export as a whole-broker document: the vhost, guest's permission, the objects.
    let mut doc = rabbitmq_policies_export();
    doc["vhosts"] = json!([{"name": "pol"}]);
    doc["permissions"] =
        json!([{"user": "guest", "vhost": "pol", "configure": ".*", "write": ".*", "read": ".*"}]);
    doc["queues"][0]["vhost"] = json!("pol");
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("definitions.json");
    std::fs::write(&file, doc.to_string()).expect("written");
    let config = warren::Config {
        load_definitions: Some(file),
        ..warren::Config::default()
    };
    let broker = TestBroker::start_with_management_config(config).await;
    let api = Api::of(&broker);
    check_imported_policies(&broker, &api, &doc).await;
    broker.finish().await;
}

/// Declares a durable quorum queue with extra arguments.
async fn quorum(ch: &lapin::Channel, name: &str, args: &[(&str, lapin::types::AMQPValue)]) {
    let mut all = vec![("x-queue-type", s("quorum"))];
    all.extend(args.iter().cloned());
    let options = lapin::options::QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(name, options, table(&all))
        .await
        .expect("quorum queue.declare");
}

async fn nack_requeue(d: &lapin::message::Delivery) {
    let options = lapin::options::BasicNackOptions {
        requeue: true,
        ..Default::default()
    };
    d.acker.nack(options).await.expect("nack");
}

#[tokio::test]
async fn a_policy_change_applies_at_once_to_an_existing_quorum_queue() {
    let broker = TestBroker::start_with_management().await;
    let api = Api::of(&broker);
    let (_conn, ch) = broker.channel().await;
    quorum(&ch, "qq", &[]).await;
    for i in 0..5 {
        publish(&ch, "qq", i.to_string()).await;
    }
    let body = json!({"pattern": "^qq$", "definition": {"max-length": 2},
                      "apply-to": "quorum_queues"});
    assert_eq!(put(&api, "/api/policies/%2F/qq-cap", body).await, 201);
    // drop-head at once, as a classic queue does.
    assert_eq!(ready_count(&ch, "qq").await, 2);
    assert_eq!(queue_json(&api, "qq").await["policy"], "qq-cap");
    // A policy for classic queues only does not apply to it.
    let classic = json!({"pattern": ".*", "definition": {"max-length": 1},
                         "apply-to": "classic_queues", "priority": 9});
    assert_eq!(put(&api, "/api/policies/%2F/classic", classic).await, 201);
    assert_eq!(ready_count(&ch, "qq").await, 2);
    assert_eq!(
        api.call("DELETE", "/api/policies/%2F/qq-cap", None)
            .await
            .status,
        204
    );
    for i in 5..10 {
        publish(&ch, "qq", i.to_string()).await;
    }
    assert_eq!(
        drain(&ch, "qq").await,
        vec!["3", "4", "5", "6", "7", "8", "9"]
    );
    broker.finish().await;
}

#[tokio::test]
async fn a_delivery_limit_policy_dead_letters_from_a_quorum_queue() {
    let broker = TestBroker::start_with_management().await;
    let api = Api::of(&broker);
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "dlq", &[]).await;
    let dlx = [
        ("x-dead-letter-exchange", s("")),
        ("x-dead-letter-routing-key", s("dlq")),
    ];
    quorum(&ch, "qq.poison", &dlx).await;
    // The argument and the policy: the lower limit wins.
    let mut with_arg = dlx.to_vec();
    with_arg.push(("x-delivery-limit", int(5)));
    quorum(&ch, "qq.arg", &with_arg).await;
    publish(&ch, "qq.poison", "poison").await;
    publish(&ch, "qq.arg", "arg").await;
    let body = json!({"pattern": "^qq\\.", "definition": {"delivery-limit": 1},
                      "apply-to": "quorum_queues"});
    assert_eq!(put(&api, "/api/policies/%2F/limit", body).await, 201);
    for queue in ["qq.poison", "qq.arg"] {
        for _ in 0..2 {
            nack_requeue(&get_one(&ch, queue).await.delivery).await;
        }
        assert_eq!(ready_count(&ch, queue).await, 0, "{queue}: second return");
    }
    let mut dead = Vec::new();
    for _ in 0..2 {
        let m = get_one(&ch, "dlq").await;
        let deaths = x_death(&m.delivery.properties);
        assert_eq!(field_str(&deaths[0], "reason"), "delivery_limit");
        dead.push(String::from_utf8_lossy(&m.delivery.data).into_owned());
    }
    assert_eq!(dead, ["poison", "arg"]);
    // Without the policy, returns do not dead-letter a message of qq.poison.
    assert_eq!(
        api.call("DELETE", "/api/policies/%2F/limit", None)
            .await
            .status,
        204
    );
    publish(&ch, "qq.poison", "again").await;
    for _ in 0..3 {
        nack_requeue(&get_one(&ch, "qq.poison").await.delivery).await;
    }
    assert_eq!(ready_count(&ch, "qq.poison").await, 1);
    broker.finish().await;
}

#[tokio::test]
async fn a_consumer_timeout_policy_closes_channels_of_classic_and_quorum_consumers() {
    let broker = TestBroker::start_with_management().await;
    let api = Api::of(&broker);
    let body = json!({"pattern": "^ct\\.", "definition": {"consumer-timeout": 300},
                      "apply-to": "queues"});
    assert_eq!(put(&api, "/api/policies/%2F/ct", body).await, 201);
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "ct.classic", &[]).await;
    quorum(&ch, "ct.quorum", &[]).await;
    for queue in ["ct.classic", "ct.quorum"] {
        publish(&ch, queue, "held").await;
        let (_c, consumer_ch) = broker.channel().await;
        let closed = on_channel_close(&consumer_ch);
        let mut consumer = consume_with(&consumer_ch, queue, "c", false, &[])
            .await
            .expect("consume");
        assert_eq!(text(&next(&mut consumer).await), "held");
        let e = tokio::time::timeout(Duration::from_secs(3), closed)
            .await
            .unwrap_or_else(|_| panic!("{queue}: the channel is closed within 3 s"))
            .expect("an error");
        let (code, reply) = amqp_error(&e).expect("an AMQP close");
        assert_eq!(code, 406, "{queue}");
        assert!(reply.contains("Timeout value used: 300 ms"), "{reply}");
        let again = get_one(&ch, queue).await;
        assert!(again.delivery.redelivered, "{queue}");
        // Settled at once: this channel's own get would time out too.
        again
            .delivery
            .acker
            .ack(lapin::options::BasicAckOptions::default())
            .await
            .expect("ack");
    }
    broker.finish().await;
}
