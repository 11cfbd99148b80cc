//! Exchanges through lapin: the four types and how they route, the predeclared `amq.*` and
//! default exchanges, declare/delete rules and their reply codes, exchange-to-exchange bindings
//! and auto-delete. Expected reply texts and routing tables were captured with pika against
//! RabbitMQ 3.10.8.

use crate::common::*;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeBindOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, ExchangeUnbindOptions, QueueBindOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};

async fn declare_exchange_opts(
    ch: &Channel,
    name: &str,
    kind: ExchangeKind,
    options: ExchangeDeclareOptions,
) -> lapin::Result<()> {
    ch.exchange_declare(name, kind, options, FieldTable::default())
        .await
}

async fn passive(ch: &Channel, name: &str) -> lapin::Result<()> {
    let options = ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    };
    declare_exchange_opts(ch, name, ExchangeKind::Direct, options).await
}

async fn publish_with(ch: &Channel, exchange: &str, key: &str, properties: BasicProperties) {
    publish_props(ch, exchange, key, key, properties).await;
}

/// Publishes in confirm mode and returns the close the publish caused.
async fn publish_refused(ch: &Channel, exchange: &str, key: &str) -> (u16, String) {
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    let confirm = ch
        .basic_publish(
            exchange,
            key,
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await;
    match confirm {
        Ok(confirm) => refused(within("the publish to be refused", confirm).await),
        Err(e) => refused::<()>(Err(e)),
    }
}

/// The routing keys of the messages in `queue`, in order, taking them off the queue. basic.get
/// is ordered after every earlier publish on the same channel, so no waiting is needed.
async fn drain_keys(ch: &Channel, queue: &str) -> Vec<String> {
    let all = drain_deliveries(ch, queue).await;
    all.iter().map(|d| d.routing_key.to_string()).collect()
}

/// A second channel on `conn`, to show the connection survived a channel close.
async fn still_usable(conn: &Connection) {
    let ch = conn.create_channel().await.expect("another channel opens");
    let q = temp_queue(&ch).await;
    publish_key(&ch, "", &q).await;
    assert_eq!(drain_keys(&ch, &q).await, vec![q.clone()]);
}

#[tokio::test]
async fn each_exchange_type_declares_and_passive_declare_finds_it() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    for (name, kind) in [
        ("x.direct", ExchangeKind::Direct),
        ("x.fanout", ExchangeKind::Fanout),
        ("x.topic", ExchangeKind::Topic),
        ("x.headers", ExchangeKind::Headers),
    ] {
        declare_exchange_opts(&ch, name, kind.clone(), Default::default())
            .await
            .unwrap_or_else(|e| panic!("declare {name}: {e:?}"));
        declare_exchange_opts(&ch, name, kind, Default::default())
            .await
            .unwrap_or_else(|e| panic!("equivalent redeclare of {name}: {e:?}"));
        passive(&ch, name)
            .await
            .unwrap_or_else(|e| panic!("passive {name}: {e:?}"));
    }
    broker.finish().await;
}

#[tokio::test]
async fn direct_exchange_routes_on_the_exact_routing_key() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_exchange_opts(&ch, "d", ExchangeKind::Direct, Default::default())
        .await
        .unwrap();
    let a1 = bound_queue(&ch, "d", "a", FieldTable::default()).await;
    let a2 = bound_queue(&ch, "d", "a", FieldTable::default()).await;
    let b = bound_queue(&ch, "d", "b", FieldTable::default()).await;
    for key in ["a", "b", "c", "A", ""] {
        publish_key(&ch, "d", key).await;
    }
    assert_eq!(drain_keys(&ch, &a1).await, ["a"]);
    assert_eq!(drain_keys(&ch, &a2).await, ["a"]);
    assert_eq!(drain_keys(&ch, &b).await, ["b"]);
    broker.finish().await;
}

#[tokio::test]
async fn binding_the_same_queue_twice_delivers_once() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let q = bound_queue(&ch, "amq.direct", "k", FieldTable::default()).await;
    ch.queue_bind(
        &q,
        "amq.direct",
        "k",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    publish_key(&ch, "amq.direct", "k").await;
    assert_eq!(drain_keys(&ch, &q).await, ["k"]);
    broker.finish().await;
}

#[tokio::test]
async fn fanout_exchange_routes_to_every_binding_whatever_the_key() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_exchange_opts(&ch, "f", ExchangeKind::Fanout, Default::default())
        .await
        .unwrap();
    let q1 = bound_queue(&ch, "f", "", FieldTable::default()).await;
    let q2 = bound_queue(&ch, "f", "ignored", FieldTable::default()).await;
    publish_key(&ch, "f", "one").await;
    publish_key(&ch, "f", "").await;
    assert_eq!(drain_keys(&ch, &q1).await, ["one", ""]);
    assert_eq!(drain_keys(&ch, &q2).await, ["one", ""]);
    broker.finish().await;
}

/// Binding pattern → the routing keys (of [`TOPIC_KEYS`]) it receives, as RabbitMQ 3.10.8 routed
/// them. An empty routing key has no words at all, so `*` does not match it but `#` does, and
/// empty words between dots are words like any other.
const TOPIC_TABLE: &[(&str, &[&str])] = &[
    ("*", &["a", "b"]),
    ("#", TOPIC_KEYS),
    ("", &[""]),
    ("a", &["a"]),
    ("a.*", &["a.b", "a.c", "a."]),
    (
        "a.#",
        &[
            "a", "a.b", "a.b.c", "a..c", "a.c", "a.", "a.b.b.c", "a.x.y.c",
        ],
    ),
    ("*.b", &["a.b"]),
    ("#.b", &["a.b", "b"]),
    ("a.*.c", &["a.b.c", "a..c"]),
    ("a.#.c", &["a.b.c", "a..c", "a.c", "a.b.b.c", "a.x.y.c"]),
    ("#.#", TOPIC_KEYS),
    ("*.*", &["a.b", "a.c", ".", "a.", ".a"]),
    ("a..c", &["a..c"]),
    ("a.*.*", &["a.b.c", "a..c"]),
    (".", &["."]),
    ("*.", &[".", "a."]),
    (".*", &[".", ".a"]),
    ("#.*", &TOPIC_KEYS_BUT_EMPTY),
    ("*.#", &TOPIC_KEYS_BUT_EMPTY),
    ("a.#.#.c", &["a.b.c", "a..c", "a.c", "a.b.b.c", "a.x.y.c"]),
    (
        "#.a.#",
        &[
            "a", "a.b", "a.b.c", "a..c", "a.c", "a.", ".a", "x.a.y", "a.b.b.c", "a.x.y.c",
        ],
    ),
];

const TOPIC_KEYS: &[&str] = &[
    "", "a", "a.b", "a.b.c", "a..c", "a.c", ".", "a.", ".a", "b", "x.a.y", "a.b.b.c", "a.x.y.c",
];

const TOPIC_KEYS_BUT_EMPTY: [&str; 12] = [
    "a", "a.b", "a.b.c", "a..c", "a.c", ".", "a.", ".a", "b", "x.a.y", "a.b.b.c", "a.x.y.c",
];

#[tokio::test]
async fn topic_exchange_matches_star_hash_and_empty_words_like_rabbitmq() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_exchange_opts(&ch, "t", ExchangeKind::Topic, Default::default())
        .await
        .unwrap();
    let mut queues = Vec::new();
    for (pattern, _) in TOPIC_TABLE {
        queues.push(bound_queue(&ch, "t", pattern, FieldTable::default()).await);
    }
    for key in TOPIC_KEYS {
        publish_key(&ch, "t", key).await;
    }
    for ((pattern, expected), q) in TOPIC_TABLE.iter().zip(&queues) {
        assert_eq!(
            drain_keys(&ch, q).await,
            *expected,
            "binding key {pattern:?}"
        );
    }
    broker.finish().await;
}

#[tokio::test]
async fn headers_exchange_matches_all_any_and_the_with_x_modes() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_exchange_opts(&ch, "h", ExchangeKind::Headers, Default::default())
        .await
        .unwrap();
    let pdf_report = [("format", s("pdf")), ("type", s("report"))];
    let with = |mode: &str, rest: &[(&str, AMQPValue)]| {
        let mut t = table(rest);
        t.insert("x-match".into(), s(mode));
        t
    };
    // (binding arguments, routing keys of the messages it receives) as RabbitMQ routed them.
    let bindings: Vec<(FieldTable, &[&str])> = vec![
        (with("all", &pdf_report), &["both"]),
        (table(&pdf_report), &["both"]),
        (
            with("any", &pdf_report),
            &["both", "pdf", "pdf+xtag", "wrongval"],
        ),
        (
            with("all", &[("format", s("pdf")), ("x-tag", s("a"))]),
            &["both", "pdf", "pdf+xtag"],
        ),
        (with("any", &[("x-tag", s("a"))]), &[]),
        (
            with("all-with-x", &[("format", s("pdf")), ("x-tag", s("a"))]),
            &["pdf+xtag"],
        ),
        (
            with("any-with-x", &[("x-tag", s("a"))]),
            &["pdf+xtag", "xtag"],
        ),
        (
            with("all", &[]),
            &[
                "both", "pdf", "pdf+xtag", "xtag", "wrongval", "none", "n5", "n5str", "k",
            ],
        ),
        (with("any", &[]), &[]),
        (table(&[("n", AMQPValue::LongInt(5))]), &["n5"]),
        (with("all", &[("k", AMQPValue::Void)]), &["k"]),
    ];
    let mut queues = Vec::new();
    for (args, _) in &bindings {
        queues.push(bound_queue(&ch, "h", "", args.clone()).await);
    }
    let messages: Vec<(&str, Option<FieldTable>)> = vec![
        ("both", Some(table(&pdf_report))),
        ("pdf", Some(table(&[("format", s("pdf"))]))),
        (
            "pdf+xtag",
            Some(table(&[("format", s("pdf")), ("x-tag", s("a"))])),
        ),
        ("xtag", Some(table(&[("x-tag", s("a"))]))),
        (
            "wrongval",
            Some(table(&[
                ("format", s("zip")),
                ("type", s("report")),
                ("x-tag", s("b")),
            ])),
        ),
        ("none", None),
        // Integers match by value whatever their width; a string "5" is not the integer 5.
        ("n5", Some(table(&[("n", AMQPValue::LongLongInt(5))]))),
        ("n5str", Some(table(&[("n", s("5"))]))),
        ("k", Some(table(&[("k", s("anything"))]))),
    ];
    for (key, headers) in messages {
        let mut props = BasicProperties::default();
        if let Some(h) = headers {
            props = props.with_headers(h);
        }
        publish_with(&ch, "h", key, props).await;
    }
    for ((args, expected), q) in bindings.iter().zip(&queues) {
        assert_eq!(drain_keys(&ch, q).await, *expected, "binding {args:?}");
    }
    broker.finish().await;
}

/// RabbitMQ 3.10 compares header values with Erlang's `==`, ignoring their types: a number
/// matches any integer, float or timestamp of the same value, a string matches a byte array with
/// the same bytes (pika writes `bytes` as `x`, `str` as `S`); booleans, and values nested in
/// arrays, keep their types. Routing captured with amqplib against RabbitMQ 3.10.8; Warren
/// compared types before (found by interop probes).
#[tokio::test]
async fn headers_exchange_compares_values_across_types_like_rabbitmq() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_exchange_opts(&ch, "h", ExchangeKind::Headers, Default::default())
        .await
        .unwrap();
    let bytes = |b: &[u8]| AMQPValue::ByteArray(b.to_vec().into());
    let nested_int = AMQPValue::FieldArray(vec![AMQPValue::LongInt(1)].into());
    let nested_long = AMQPValue::FieldArray(vec![AMQPValue::LongLongInt(1)].into());
    let bindings: Vec<(AMQPValue, &[&str])> = vec![
        (AMQPValue::LongLongInt(5), &["l5", "d5", "f5", "t5"]),
        (AMQPValue::Double(5.0), &["l5", "d5", "f5", "t5"]),
        (AMQPValue::Timestamp(5), &["l5", "d5", "f5", "t5"]),
        (s("ab"), &["sab", "xab"]),
        (bytes(b"ab"), &["sab", "xab"]),
        (AMQPValue::Boolean(true), &["true"]),
        (AMQPValue::LongInt(1), &["i1"]),
        (nested_int.clone(), &["arr_i"]),
    ];
    let mut queues = Vec::new();
    for (value, _) in &bindings {
        queues.push(bound_queue(&ch, "h", "", table(&[("k", value.clone())])).await);
    }
    let messages: Vec<(&str, AMQPValue)> = vec![
        ("l5", AMQPValue::LongLongInt(5)),
        ("d5", AMQPValue::Double(5.0)),
        ("f5", AMQPValue::Float(5.0)),
        ("t5", AMQPValue::Timestamp(5)),
        ("d55", AMQPValue::Double(5.5)),
        ("sab", s("ab")),
        ("xab", bytes(b"ab")),
        ("true", AMQPValue::Boolean(true)),
        ("i1", AMQPValue::LongInt(1)),
        ("arr_i", nested_int),
        ("arr_l", nested_long),
    ];
    for (key, value) in messages {
        let props = BasicProperties::default().with_headers(table(&[("k", value)]));
        publish_with(&ch, "h", key, props).await;
    }
    for ((value, expected), q) in bindings.iter().zip(&queues) {
        assert_eq!(drain_keys(&ch, q).await, *expected, "binding k = {value:?}");
    }
    broker.finish().await;
}

#[tokio::test]
async fn headers_binding_with_an_unknown_x_match_is_406() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let q = temp_queue(&ch).await;
    let args = table(&[("x-match", s("bogus"))]);
    let err = ch
        .queue_bind(&q, "amq.headers", "", QueueBindOptions::default(), args)
        .await;
    assert_eq!(
        refused(err),
        (
            406,
            "PRECONDITION_FAILED - Invalid x-match field value <<\"bogus\">>; expected all, any, \
             all-with-x, or any-with-x"
                .into()
        )
    );
    broker.finish().await;
}

#[tokio::test]
async fn passive_declare_of_missing_exchange_closes_channel_404() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    assert_eq!(
        refused(passive(&ch, "nope").await),
        (404, "NOT_FOUND - no exchange 'nope' in vhost '/'".into())
    );
    still_usable(&conn).await;
    broker.finish().await;
}

#[tokio::test]
async fn redeclare_with_another_type_or_flag_is_406_inequivalent_arg() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let flags = ExchangeDeclareOptions {
        durable: true,
        auto_delete: true,
        internal: true,
        ..Default::default()
    };
    declare_exchange_opts(&ch, "flags", ExchangeKind::Direct, flags)
        .await
        .unwrap();
    declare_exchange_opts(&ch, "flags", ExchangeKind::Direct, flags)
        .await
        .expect("the same flags are equivalent");
    let cases = [
        (ExchangeKind::Fanout, flags, "type", "'fanout'", "'direct'"),
        (
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: false,
                ..flags
            },
            "durable",
            "'false'",
            "'true'",
        ),
        (
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                auto_delete: false,
                ..flags
            },
            "auto_delete",
            "'false'",
            "'true'",
        ),
        (
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                internal: false,
                ..flags
            },
            "internal",
            "'false'",
            "'true'",
        ),
    ];
    for (kind, options, field, received, current) in cases {
        let ch = conn.create_channel().await.unwrap();
        assert_eq!(
            refused(declare_exchange_opts(&ch, "flags", kind, options).await),
            (
                406,
                format!(
                    "PRECONDITION_FAILED - inequivalent arg '{field}' for exchange 'flags' in \
                     vhost '/': received {received} but current is {current}"
                )
            )
        );
    }
    let ch = conn.create_channel().await.unwrap();
    passive(&ch, "flags")
        .await
        .expect("a refused redeclare leaves the exchange as it was");
    broker.finish().await;
}

#[tokio::test]
async fn redeclare_with_another_alternate_exchange_is_406() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let args = table(&[("alternate-exchange", s("foo"))]);
    ch.exchange_declare("ae", ExchangeKind::Direct, Default::default(), args)
        .await
        .unwrap();
    assert_eq!(
        refused(declare_exchange_opts(&ch, "ae", ExchangeKind::Direct, Default::default()).await),
        (
            406,
            "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange 'ae' in \
             vhost '/': received none but current is the value 'foo' of type 'longstr'"
                .into()
        )
    );
    broker.finish().await;
}

#[tokio::test]
async fn unknown_exchange_type_closes_the_connection_503() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let err = declare_exchange_opts(
        &ch,
        "odd",
        ExchangeKind::Custom("x-nosuch".into()),
        Default::default(),
    )
    .await;
    assert_eq!(
        refused(err),
        (
            503,
            "COMMAND_INVALID - unknown exchange type 'x-nosuch'".into()
        )
    );
    assert!(
        conn.create_channel().await.is_err(),
        "the whole connection is closed"
    );
    broker.finish().await;
}

#[tokio::test]
async fn predeclared_amq_exchanges_exist_and_route() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let hv = table(&[("h", s("v"))]);
    for name in [
        "amq.direct",
        "amq.fanout",
        "amq.topic",
        "amq.headers",
        "amq.match",
    ] {
        passive(&ch, name)
            .await
            .unwrap_or_else(|e| panic!("passive {name}: {e:?}"));
        let q = bound_queue(&ch, name, "k", hv.clone()).await;
        let props = BasicProperties::default().with_headers(hv.clone());
        publish_with(&ch, name, "k", props).await;
        assert_eq!(drain_keys(&ch, &q).await, ["k"], "through {name}");
    }
    // They are durable direct/… exchanges: an equivalent redeclare succeeds, another is 406.
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    declare_exchange_opts(&ch, "amq.direct", ExchangeKind::Direct, durable)
        .await
        .expect("equivalent redeclare of amq.direct");
    assert_eq!(
        refused(
            declare_exchange_opts(&ch, "amq.direct", ExchangeKind::Direct, Default::default())
                .await
        ),
        (
            406,
            "PRECONDITION_FAILED - inequivalent arg 'durable' for exchange 'amq.direct' in \
             vhost '/': received 'false' but current is 'true'"
                .into()
        )
    );
    broker.finish().await;
}

#[tokio::test]
async fn default_exchange_routes_by_queue_name() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let q = temp_queue(&ch).await;
    publish_key(&ch, "", &q).await;
    publish_key(&ch, "", "no-such-queue").await;
    assert_eq!(drain_keys(&ch, &q).await, [q]);
    broker.finish().await;
}

#[tokio::test]
async fn declaring_a_new_amq_prefixed_exchange_is_403() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    assert_eq!(
        refused(
            declare_exchange_opts(&ch, "amq.custom", ExchangeKind::Direct, Default::default())
                .await
        ),
        (
            403,
            "ACCESS_REFUSED - exchange name 'amq.custom' contains reserved prefix 'amq.*'".into()
        )
    );
    let ch = conn.create_channel().await.unwrap();
    assert_eq!(
        refused(passive(&ch, "amq.custom").await).0,
        404,
        "nothing was created"
    );
    broker.finish().await;
}

#[tokio::test]
async fn deleting_a_system_amq_exchange_is_403() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    for name in ["amq.direct", "amq.nosuch"] {
        let ch = conn.create_channel().await.unwrap();
        let err = ch
            .exchange_delete(name, ExchangeDeleteOptions::default())
            .await;
        assert_eq!(
            refused(err),
            (
                403,
                format!(
                    "ACCESS_REFUSED - deletion of system exchange '{name}' in vhost '/' not allowed"
                )
            )
        );
    }
    let ch = conn.create_channel().await.unwrap();
    passive(&ch, "amq.direct").await.expect("still there");
    broker.finish().await;
}

#[tokio::test]
async fn declaring_deleting_or_binding_the_default_exchange_is_403() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let setup = conn.create_channel().await.unwrap();
    declare_exchange_opts(&setup, "other", ExchangeKind::Fanout, Default::default())
        .await
        .unwrap();
    let q = temp_queue(&setup).await;
    let denied = (
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange".to_string(),
    );

    let ch = conn.create_channel().await.unwrap();
    let r = declare_exchange_opts(&ch, "", ExchangeKind::Direct, Default::default()).await;
    assert_eq!(refused(r), denied, "exchange.declare");
    // RabbitMQ refuses even a passive declare of the default exchange.
    let ch = conn.create_channel().await.unwrap();
    assert_eq!(refused(passive(&ch, "").await), denied, "passive declare");
    let ch = conn.create_channel().await.unwrap();
    let r = ch.exchange_delete("", Default::default()).await;
    assert_eq!(refused(r), denied, "exchange.delete");
    let ch = conn.create_channel().await.unwrap();
    let r = ch
        .queue_bind(&q, "", &q, Default::default(), FieldTable::default())
        .await;
    assert_eq!(refused(r), denied, "queue.bind");
    let ch = conn.create_channel().await.unwrap();
    let r = ch.queue_unbind(&q, "", &q, FieldTable::default()).await;
    assert_eq!(refused(r), denied, "queue.unbind");
    let ch = conn.create_channel().await.unwrap();
    let r = ch
        .exchange_bind("other", "", "k", Default::default(), FieldTable::default())
        .await;
    assert_eq!(
        refused(r),
        denied,
        "exchange.bind from the default exchange"
    );
    let ch = conn.create_channel().await.unwrap();
    let r = ch
        .exchange_bind("", "other", "k", Default::default(), FieldTable::default())
        .await;
    assert_eq!(refused(r), denied, "exchange.bind to the default exchange");
    let ch = conn.create_channel().await.unwrap();
    let r = ch
        .exchange_unbind("", "other", "k", Default::default(), FieldTable::default())
        .await;
    assert_eq!(refused(r), denied, "exchange.unbind");

    // Nothing got bound: a message through "other" reaches no queue.
    publish_key(&setup, "other", &q).await;
    assert!(drain_keys(&setup, &q).await.is_empty());
    broker.finish().await;
}

#[tokio::test]
async fn delete_if_unused_of_an_exchange_with_bindings_is_406() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare_exchange_opts(&ch, "used", ExchangeKind::Direct, Default::default())
        .await
        .unwrap();
    let q = bound_queue(&ch, "used", "k", FieldTable::default()).await;
    let if_unused = ExchangeDeleteOptions {
        if_unused: true,
        ..Default::default()
    };
    assert_eq!(
        refused(ch.exchange_delete("used", if_unused).await),
        (
            406,
            "PRECONDITION_FAILED - exchange 'used' in vhost '/' in use".into()
        )
    );
    let ch = conn.create_channel().await.unwrap();
    ch.queue_unbind(&q, "used", "k", FieldTable::default())
        .await
        .unwrap();
    ch.exchange_delete("used", if_unused)
        .await
        .expect("no bindings left");
    assert_eq!(refused(passive(&ch, "used").await).0, 404);
    broker.finish().await;
}

#[tokio::test]
async fn delete_if_unused_ignores_bindings_where_the_exchange_is_the_destination() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_exchange_opts(&ch, "dest", ExchangeKind::Fanout, Default::default())
        .await
        .unwrap();
    ch.exchange_bind(
        "dest",
        "amq.fanout",
        "",
        Default::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let if_unused = ExchangeDeleteOptions {
        if_unused: true,
        ..Default::default()
    };
    ch.exchange_delete("dest", if_unused)
        .await
        .expect("only bindings from an exchange make it used");
    assert_eq!(refused(passive(&ch, "dest").await).0, 404);
    broker.finish().await;
}

#[tokio::test]
async fn delete_of_a_missing_exchange_succeeds() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    ch.exchange_delete("never-declared", ExchangeDeleteOptions::default())
        .await
        .expect("RabbitMQ 3.x answers delete-ok");
    passive(&ch, "amq.direct")
        .await
        .expect("channel still open");
    broker.finish().await;
}

#[tokio::test]
async fn deleting_an_exchange_drops_its_bindings() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_exchange_opts(&ch, "gone", ExchangeKind::Direct, Default::default())
        .await
        .unwrap();
    let q = bound_queue(&ch, "gone", "k", FieldTable::default()).await;
    ch.exchange_delete("gone", ExchangeDeleteOptions::default())
        .await
        .unwrap();
    declare_exchange_opts(&ch, "gone", ExchangeKind::Direct, Default::default())
        .await
        .unwrap();
    publish_key(&ch, "gone", "k").await;
    assert!(
        drain_keys(&ch, &q).await.is_empty(),
        "a new exchange of the same name has no bindings"
    );
    broker.finish().await;
}

#[tokio::test]
async fn binding_from_or_to_a_missing_exchange_is_404() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let q = temp_queue(&ch).await;
    let r = ch
        .queue_bind(
            &q,
            "missing",
            "k",
            Default::default(),
            FieldTable::default(),
        )
        .await;
    assert_eq!(
        refused(r),
        (404, "NOT_FOUND - no exchange 'missing' in vhost '/'".into())
    );
    let ch = conn.create_channel().await.unwrap();
    let r = ch
        .exchange_bind(
            "amq.fanout",
            "missing",
            "k",
            Default::default(),
            FieldTable::default(),
        )
        .await;
    assert_eq!(
        refused(r),
        (404, "NOT_FOUND - no exchange 'missing' in vhost '/'".into())
    );
    let ch = conn.create_channel().await.unwrap();
    let r = ch
        .exchange_bind(
            "missing",
            "amq.fanout",
            "k",
            Default::default(),
            FieldTable::default(),
        )
        .await;
    assert_eq!(
        refused(r),
        (404, "NOT_FOUND - no exchange 'missing' in vhost '/'".into())
    );
    broker.finish().await;
}

#[tokio::test]
async fn exchange_unbind_of_what_is_not_bound_succeeds_even_for_missing_exchanges() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let none = FieldTable::default;
    let opts = ExchangeUnbindOptions::default;
    ch.exchange_unbind("amq.fanout", "amq.direct", "k", opts(), none())
        .await
        .expect("both exist, not bound");
    ch.exchange_unbind("missing", "amq.direct", "k", opts(), none())
        .await
        .expect("missing destination");
    ch.exchange_unbind("amq.direct", "missing", "k", opts(), none())
        .await
        .expect("missing source");
    passive(&ch, "amq.direct")
        .await
        .expect("channel still open");
    broker.finish().await;
}

#[tokio::test]
async fn exchange_to_exchange_binding_routes_until_unbound() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_exchange_opts(&ch, "src", ExchangeKind::Topic, Default::default())
        .await
        .unwrap();
    declare_exchange_opts(&ch, "dst", ExchangeKind::Direct, Default::default())
        .await
        .unwrap();
    ch.exchange_bind(
        "dst",
        "src",
        "orders.*",
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let q = bound_queue(&ch, "dst", "orders.new", FieldTable::default()).await;
    publish_key(&ch, "src", "orders.new").await; // src matches, dst matches: routed
    publish_key(&ch, "src", "orders.old").await; // src matches, dst does not
    publish_key(&ch, "src", "stock.new").await; // src does not match
    assert_eq!(drain_keys(&ch, &q).await, ["orders.new"]);
    ch.exchange_unbind(
        "dst",
        "src",
        "orders.*",
        Default::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    publish_key(&ch, "src", "orders.new").await;
    assert!(drain_keys(&ch, &q).await.is_empty());
    broker.finish().await;
}

#[tokio::test]
async fn exchange_binding_loop_delivers_exactly_once() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    for name in ["a", "b"] {
        declare_exchange_opts(&ch, name, ExchangeKind::Fanout, Default::default())
            .await
            .unwrap();
    }
    ch.exchange_bind("b", "a", "", Default::default(), FieldTable::default())
        .await
        .unwrap();
    ch.exchange_bind("a", "b", "", Default::default(), FieldTable::default())
        .await
        .unwrap();
    let q = bound_queue(&ch, "a", "", FieldTable::default()).await;
    ch.queue_bind(&q, "b", "", Default::default(), FieldTable::default())
        .await
        .unwrap();
    publish_key(&ch, "a", "via-a").await;
    publish_key(&ch, "b", "via-b").await;
    assert_eq!(drain_keys(&ch, &q).await, ["via-a", "via-b"]);
    broker.finish().await;
}

#[tokio::test]
async fn auto_delete_exchange_goes_when_its_last_binding_is_removed() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let auto = ExchangeDeclareOptions {
        auto_delete: true,
        ..Default::default()
    };
    declare_exchange_opts(&ch, "ad", ExchangeKind::Direct, auto)
        .await
        .unwrap();
    let q = bound_queue(&ch, "ad", "a", FieldTable::default()).await;
    ch.queue_bind(&q, "ad", "b", Default::default(), FieldTable::default())
        .await
        .unwrap();
    ch.queue_unbind(&q, "ad", "a", FieldTable::default())
        .await
        .unwrap();
    passive(&ch, "ad").await.expect("one binding left");
    ch.queue_unbind(&q, "ad", "b", FieldTable::default())
        .await
        .unwrap();
    assert_eq!(
        refused(passive(&ch, "ad").await),
        (404, "NOT_FOUND - no exchange 'ad' in vhost '/'".into())
    );
    broker.finish().await;
}

#[tokio::test]
async fn auto_delete_exchange_goes_when_its_last_bound_queue_is_deleted() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let auto = ExchangeDeclareOptions {
        auto_delete: true,
        ..Default::default()
    };
    declare_exchange_opts(&ch, "ad", ExchangeKind::Fanout, auto)
        .await
        .unwrap();
    passive(&ch, "ad")
        .await
        .expect("never bound: an auto-delete exchange stays");
    let q = bound_queue(&ch, "ad", "", FieldTable::default()).await;
    ch.queue_delete(&q, QueueDeleteOptions::default())
        .await
        .unwrap();
    assert_eq!(refused(passive(&ch, "ad").await).0, 404);
    broker.finish().await;
}

#[tokio::test]
async fn auto_delete_exchange_stays_when_it_only_loses_a_binding_to_it() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let auto = ExchangeDeclareOptions {
        auto_delete: true,
        ..Default::default()
    };
    declare_exchange_opts(&ch, "ad-dest", ExchangeKind::Fanout, auto)
        .await
        .unwrap();
    ch.exchange_bind(
        "ad-dest",
        "amq.fanout",
        "",
        Default::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.exchange_unbind(
        "ad-dest",
        "amq.fanout",
        "",
        Default::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    passive(&ch, "ad-dest")
        .await
        .expect("auto-delete counts bindings from the exchange only");
    broker.finish().await;
}

#[tokio::test]
async fn publishing_to_an_internal_exchange_is_403_but_exchange_bindings_reach_it() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let internal = ExchangeDeclareOptions {
        internal: true,
        ..Default::default()
    };
    declare_exchange_opts(&ch, "inner", ExchangeKind::Fanout, internal)
        .await
        .unwrap();
    ch.exchange_bind(
        "inner",
        "amq.fanout",
        "",
        Default::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let q = bound_queue(&ch, "inner", "", FieldTable::default()).await;
    publish_key(&ch, "amq.fanout", "through").await;
    assert_eq!(drain_keys(&ch, &q).await, ["through"]);

    let ch = conn.create_channel().await.unwrap();
    assert_eq!(
        publish_refused(&ch, "inner", "direct").await,
        (
            403,
            "ACCESS_REFUSED - cannot publish to internal exchange 'inner' in vhost '/'".into()
        )
    );
    still_usable(&conn).await;
    broker.finish().await;
}

#[tokio::test]
async fn publishing_to_a_missing_exchange_closes_the_channel_404_and_the_connection_lives() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    assert_eq!(
        publish_refused(&ch, "missing", "k").await,
        (404, "NOT_FOUND - no exchange 'missing' in vhost '/'".into())
    );
    assert!(
        !ch.status().connected(),
        "the channel is closed after the 404"
    );
    assert!(conn.status().connected());
    still_usable(&conn).await;
    broker.finish().await;
}

#[tokio::test]
async fn raw_publish_to_a_missing_exchange_gets_channel_close_naming_basic_publish() {
    use warren_protocol::{basic, Method, ReplyCode};
    let broker = TestBroker::start().await;
    let mut raw = broker.raw().await;
    raw.handshake().await;
    raw.open_channel(1).await;
    raw.send_method(
        1,
        basic::Publish {
            exchange: "missing".into(),
            routing_key: "k".into(),
            ..Default::default()
        },
    )
    .await;
    raw.send(warren_protocol::Frame::Header {
        channel: 1,
        header: warren_protocol::ContentHeader {
            class_id: 60,
            weight: 0,
            body_size: 0,
            properties: Default::default(),
        },
    })
    .await;
    let (channel, method) = raw.expect_method().await;
    let Method::ChannelClose(close) = method else {
        panic!("expected channel.close, got {method:?}")
    };
    assert_eq!(channel, 1);
    assert_eq!(close.reply_code, ReplyCode::NotFound.code());
    assert_eq!(
        close.reply_text.as_str(),
        "NOT_FOUND - no exchange 'missing' in vhost '/'"
    );
    assert_eq!((close.class_id, close.method_id), (60, 40));
    raw.send_method(1, warren_protocol::channel::CloseOk {})
        .await;
    raw.open_channel(2).await;
    drop(raw);
    broker.finish().await;
}
