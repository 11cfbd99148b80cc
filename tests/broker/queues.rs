//! Queues through lapin (and raw frames for server-sent basic.cancel): declare and its flags,
//! equivalence on redeclare, exclusive and auto-delete lifetimes, bind/unbind, purge, delete, and
//! the empty queue name. Expected reply texts were captured with pika against RabbitMQ 3.10.8.

use crate::common::*;
use futures_lite::StreamExt;
use lapin::options::{
    BasicCancelOptions, BasicGetOptions, BasicQosOptions, QueueDeclareOptions, QueueDeleteOptions,
    QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ConsumerState};
use warren_protocol::{basic, queue, FieldValue, Method, ShortStr};

/// RabbitMQ's text for another connection's exclusive queue (and for a changed exclusive flag).
fn locked(name: &str) -> (u16, String) {
    (
        405,
        format!(
            "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{name}' in vhost \
             '/'. It could be originally declared on another connection or the exclusive \
             property value does not match that of the original declaration."
        ),
    )
}

const EXCLUSIVE: QueueDeclareOptions = QueueDeclareOptions {
    passive: false,
    durable: false,
    exclusive: true,
    auto_delete: false,
    nowait: false,
};

const PASSIVE: QueueDeclareOptions = QueueDeclareOptions {
    passive: true,
    durable: false,
    exclusive: false,
    auto_delete: false,
    nowait: false,
};

async fn declare_opts(
    ch: &Channel,
    name: &str,
    options: QueueDeclareOptions,
) -> lapin::Result<lapin::Queue> {
    ch.queue_declare(name, options, FieldTable::default()).await
}

async fn declare_opts_with(
    ch: &Channel,
    name: &str,
    options: QueueDeclareOptions,
    arguments: FieldTable,
) -> lapin::Result<lapin::Queue> {
    ch.queue_declare(name, options, arguments).await
}

/// (ready messages, consumers) as a passive declare reports them.
async fn counts(ch: &Channel, name: &str) -> (u32, u32) {
    let q = declare_opts(ch, name, PASSIVE)
        .await
        .expect("passive declare");
    (q.message_count(), q.consumer_count())
}

async fn get_key(ch: &Channel, queue: &str) -> Option<String> {
    let options = BasicGetOptions { no_ack: true };
    ch.basic_get(queue, options)
        .await
        .expect("basic.get")
        .map(|m| m.delivery.routing_key.to_string())
}

/// Polls until a passive declare of `name` is 404 (the broker frees queues after a close).
async fn wait_until_gone(conn: &lapin::Connection, name: &str) {
    within("the queue to be deleted", async {
        loop {
            let ch = conn.create_channel().await.expect("channel");
            match declare_opts(&ch, name, PASSIVE).await {
                Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
                Err(e) => {
                    let expected = format!("NOT_FOUND - no queue '{name}' in vhost '/'");
                    assert_eq!(amqp_error(&e), Some((404, expected)));
                    return;
                }
            }
        }
    })
    .await
}

#[tokio::test]
async fn server_named_queues_get_distinct_amq_gen_names() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let a = declare_opts(&ch, "", EXCLUSIVE).await.unwrap();
    let b = declare_opts(&ch, "", QueueDeclareOptions::default())
        .await
        .unwrap();
    for name in [a.name().as_str(), b.name().as_str()] {
        assert!(name.starts_with("amq.gen-"), "{name}");
        assert_eq!(name.len(), "amq.gen-".len() + 22, "{name}");
    }
    assert_ne!(a.name(), b.name());
    assert_eq!(counts(&ch, a.name().as_str()).await, (0, 0));
    publish_key(&ch, "", a.name().as_str()).await;
    assert_eq!(
        get_key(&ch, a.name().as_str()).await.as_deref(),
        Some(a.name().as_str())
    );
    broker.finish().await;
}

#[tokio::test]
async fn declare_ok_counts_ready_messages_and_consumers() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_opts(&ch, "counted", EXCLUSIVE).await.unwrap();
    for _ in 0..3 {
        publish_key(&ch, "", "counted").await;
    }
    assert_eq!(counts(&ch, "counted").await, (3, 0));
    ch.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let _c1 = consume_with(&ch, "counted", "c1", false, &[])
        .await
        .unwrap();
    let _c2 = consume_with(&ch, "counted", "c2", false, &[])
        .await
        .unwrap();
    // Each consumer holds one unacked delivery; only the third message is still ready.
    let q = declare_opts(&ch, "counted", EXCLUSIVE).await.unwrap();
    assert_eq!((q.message_count(), q.consumer_count()), (1, 2));
    broker.finish().await;
}

#[tokio::test]
async fn passive_declare_of_missing_queue_closes_channel_404() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    assert_eq!(
        refused(declare_opts(&ch, "nowhere", PASSIVE).await),
        (404, "NOT_FOUND - no queue 'nowhere' in vhost '/'".into())
    );
    let ch = conn.create_channel().await.expect("the connection lives");
    declare_opts(&ch, "here", EXCLUSIVE).await.unwrap();
    let q = declare_opts(&ch, "here", PASSIVE)
        .await
        .expect("passive finds it");
    assert_eq!(q.name().as_str(), "here");
    broker.finish().await;
}

#[tokio::test]
async fn redeclare_with_other_durable_or_auto_delete_is_406() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare_opts(&ch, "plain", QueueDeclareOptions::default())
        .await
        .unwrap();
    declare_opts(&ch, "plain", QueueDeclareOptions::default())
        .await
        .expect("the same flags are equivalent");
    for (options, field) in [
        (
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            "durable",
        ),
        (
            QueueDeclareOptions {
                auto_delete: true,
                ..Default::default()
            },
            "auto_delete",
        ),
    ] {
        let ch = conn.create_channel().await.unwrap();
        assert_eq!(
            refused(declare_opts(&ch, "plain", options).await),
            (
                406,
                format!(
                    "PRECONDITION_FAILED - inequivalent arg '{field}' for queue 'plain' in vhost \
                     '/': received 'true' but current is 'false'"
                )
            )
        );
    }
    let ch = conn.create_channel().await.unwrap();
    ch.queue_delete("plain", QueueDeleteOptions::default())
        .await
        .unwrap();
    broker.finish().await;
}

#[tokio::test]
async fn redeclare_with_other_x_arguments_is_406_in_rabbitmqs_words() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let ten = table(&[("x-max-length", AMQPValue::LongInt(10))]);
    declare_opts_with(&ch, "limited", EXCLUSIVE, ten.clone())
        .await
        .unwrap();
    // The same number in another integer width is equivalent, and arguments RabbitMQ does not
    // know may differ freely.
    let mut same = table(&[("x-max-length", AMQPValue::LongLongInt(10))]);
    same.insert("x-custom".into(), AMQPValue::LongString("anything".into()));
    declare_opts_with(&ch, "limited", EXCLUSIVE, same)
        .await
        .expect("equivalent arguments");

    let cases = [
        (
            table(&[("x-max-length", AMQPValue::LongInt(20))]),
            "inequivalent arg 'x-max-length' for queue 'limited' in vhost '/': received '20' \
             but current is '10'",
        ),
        (
            table(&[("x-max-length", AMQPValue::LongString("10".into()))]),
            "inequivalent arg 'x-max-length' for queue 'limited' in vhost '/': received '10' \
             but current is '10'",
        ),
        (
            FieldTable::default(),
            "inequivalent arg 'x-max-length' for queue 'limited' in vhost '/': received none \
             but current is the value '10' of type 'signedint'",
        ),
        (
            {
                let mut t = ten.clone();
                t.insert("x-message-ttl".into(), AMQPValue::LongInt(1000));
                t
            },
            "inequivalent arg 'x-message-ttl' for queue 'limited' in vhost '/': received the \
             value '1000' of type 'signedint' but current is none",
        ),
    ];
    for (args, text) in cases {
        let ch = conn.create_channel().await.unwrap();
        assert_eq!(
            refused(declare_opts_with(&ch, "limited", EXCLUSIVE, args).await),
            (406, format!("PRECONDITION_FAILED - {text}"))
        );
    }
    broker.finish().await;
}

/// Quorum- and stream-only arguments (found with amqplib against RabbitMQ 3.10.8, interop/node):
/// a new classic queue naming one is refused, and a redeclare adding one is not compared.
#[tokio::test]
async fn quorum_only_arguments_are_refused_on_new_queues_and_ignored_on_redeclare() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    for (key, value) in [
        ("x-delivery-limit", AMQPValue::LongInt(5)),
        ("x-max-age", AMQPValue::LongString("1D".into())),
    ] {
        let ch = conn.create_channel().await.unwrap();
        let args = table(&[(key, value)]);
        assert_eq!(
            refused(declare_opts_with(&ch, "typed", EXCLUSIVE, args).await),
            (
                406,
                format!(
                    "PRECONDITION_FAILED - invalid arg '{key}' for queue 'typed' in vhost '/' of \
                     queue type rabbit_classic_queue"
                )
            )
        );
    }
    let ch = conn.create_channel().await.unwrap();
    declare_opts(&ch, "typed", EXCLUSIVE).await.unwrap();
    let quorum_args = table(&[
        ("x-delivery-limit", AMQPValue::LongInt(5)),
        (
            "x-dead-letter-strategy",
            AMQPValue::LongString("at-least-once".into()),
        ),
        ("x-max-in-memory-length", AMQPValue::LongInt(5)),
    ]);
    declare_opts_with(&ch, "typed", EXCLUSIVE, quorum_args)
        .await
        .expect("a redeclare does not compare quorum-only arguments");
    broker.finish().await;
}

#[tokio::test]
async fn redeclare_with_another_exclusive_flag_is_405() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare_opts(&ch, "mine", EXCLUSIVE).await.unwrap();
    declare_opts(&ch, "shared", QueueDeclareOptions::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let r = declare_opts(&ch, "mine", QueueDeclareOptions::default()).await;
    assert_eq!(refused(r), locked("mine"));
    let ch = conn.create_channel().await.unwrap();
    assert_eq!(
        refused(declare_opts(&ch, "shared", EXCLUSIVE).await),
        locked("shared")
    );
    let ch = conn.create_channel().await.unwrap();
    ch.queue_delete("shared", QueueDeleteOptions::default())
        .await
        .unwrap();
    broker.finish().await;
}

#[tokio::test]
async fn another_connections_exclusive_queue_is_locked_405() {
    let broker = TestBroker::start().await;
    let (_owner, owner_ch) = broker.channel().await;
    declare_opts(&owner_ch, "private", EXCLUSIVE).await.unwrap();
    try_bind(&owner_ch, "private", "amq.direct", "bound")
        .await
        .unwrap();
    publish_key(&owner_ch, "", "private").await;

    let other = broker.connect().await;
    macro_rules! refused_405 {
        ($what:expr, |$ch:ident| $call:expr) => {{
            let $ch = other.create_channel().await.unwrap();
            assert_eq!(refused($call.await), locked("private"), "{}", $what);
        }};
    }
    refused_405!("declare", |ch| declare_opts(
        &ch,
        "private",
        Default::default()
    ));
    refused_405!("exclusive declare", |ch| declare_opts(
        &ch, "private", EXCLUSIVE
    ));
    refused_405!("passive declare", |ch| declare_opts(
        &ch, "private", PASSIVE
    ));
    refused_405!("consume", |ch| consume_with(&ch, "private", "", false, &[]));
    refused_405!("get", |ch| ch.basic_get("private", Default::default()));
    refused_405!("bind", |ch| try_bind(&ch, "private", "amq.fanout", ""));
    refused_405!("unbind of a binding", |ch| ch.queue_unbind(
        "private",
        "amq.direct",
        "bound",
        FieldTable::default()
    ));
    refused_405!("purge", |ch| ch.queue_purge("private", Default::default()));
    refused_405!("delete", |ch| ch
        .queue_delete("private", Default::default()));

    // Unbinding what is not bound does not look at the queue (RabbitMQ answers unbind-ok).
    let ch = other.create_channel().await.unwrap();
    ch.queue_unbind("private", "amq.direct", "unbound", FieldTable::default())
        .await
        .expect("not bound: unbind-ok");
    assert_eq!(
        counts(&owner_ch, "private").await,
        (1, 0),
        "the owner's queue is untouched"
    );
    broker.finish().await;
}

#[tokio::test]
async fn exclusive_queue_is_deleted_when_its_connection_closes() {
    let broker = TestBroker::start().await;
    let (owner, ch) = broker.channel().await;
    declare_opts(&ch, "owned", EXCLUSIVE).await.unwrap();
    publish_key(&ch, "", "owned").await;
    owner.close(200, "bye").await.unwrap();
    let other = broker.connect().await;
    wait_until_gone(&other, "owned").await;
    let ch = other.create_channel().await.unwrap();
    declare_opts(&ch, "owned", EXCLUSIVE)
        .await
        .expect("the name is free for another connection");
    broker.finish().await;
}

#[tokio::test]
async fn auto_delete_queue_stays_until_its_last_consumer_cancels() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let auto = QueueDeclareOptions {
        auto_delete: true,
        ..Default::default()
    };
    declare_opts(&ch, "ad", auto).await.unwrap();
    // Never consumed: it stays, even across other channels and connections coming and going.
    let passer_by = broker.connect().await;
    passer_by.close(200, "bye").await.unwrap();
    let other = conn.create_channel().await.unwrap();
    other.close(200, "bye").await.unwrap();
    assert_eq!(counts(&ch, "ad").await, (0, 0));

    let _c1 = consume_with(&ch, "ad", "c1", false, &[]).await.unwrap();
    let _c2 = consume_with(&ch, "ad", "c2", false, &[]).await.unwrap();
    ch.basic_cancel("c1", BasicCancelOptions::default())
        .await
        .unwrap();
    assert_eq!(counts(&ch, "ad").await, (0, 1), "one consumer left");
    ch.basic_cancel("c2", BasicCancelOptions::default())
        .await
        .unwrap();
    assert_eq!(
        refused(declare_opts(&ch, "ad", PASSIVE).await),
        (404, "NOT_FOUND - no queue 'ad' in vhost '/'".into())
    );
    broker.finish().await;
}

#[tokio::test]
async fn auto_delete_queue_goes_when_its_consumers_channel_closes() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let auto = QueueDeclareOptions {
        auto_delete: true,
        ..Default::default()
    };
    declare_opts(&ch, "ad-close", auto).await.unwrap();
    let consumer_ch = conn.create_channel().await.unwrap();
    let _c = consume_with(&consumer_ch, "ad-close", "c", false, &[])
        .await
        .unwrap();
    consumer_ch.close(200, "bye").await.unwrap();
    wait_until_gone(&conn, "ad-close").await;
    broker.finish().await;
}

#[tokio::test]
async fn bind_routes_until_unbind() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_opts(&ch, "routed", EXCLUSIVE).await.unwrap();
    try_bind(&ch, "routed", "amq.direct", "k").await.unwrap();
    publish_key(&ch, "amq.direct", "k").await;
    publish_key(&ch, "amq.direct", "other").await;
    assert_eq!(counts(&ch, "routed").await, (1, 0));
    ch.queue_unbind("routed", "amq.direct", "k", FieldTable::default())
        .await
        .unwrap();
    publish_key(&ch, "amq.direct", "k").await;
    assert_eq!(counts(&ch, "routed").await, (1, 0), "unbound: not routed");
    broker.finish().await;
}

#[tokio::test]
async fn bind_to_a_missing_exchange_or_queue_is_404() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare_opts(&ch, "exists", EXCLUSIVE).await.unwrap();
    assert_eq!(
        refused(try_bind(&ch, "exists", "no-exchange", "k").await),
        (
            404,
            "NOT_FOUND - no exchange 'no-exchange' in vhost '/'".into()
        )
    );
    let ch = conn.create_channel().await.unwrap();
    assert_eq!(
        refused(try_bind(&ch, "no-queue", "amq.direct", "k").await),
        (404, "NOT_FOUND - no queue 'no-queue' in vhost '/'".into())
    );
    // Neither exists: RabbitMQ names the exchange.
    let ch = conn.create_channel().await.unwrap();
    assert_eq!(
        refused(try_bind(&ch, "no-queue", "no-exchange", "k").await),
        (
            404,
            "NOT_FOUND - no exchange 'no-exchange' in vhost '/'".into()
        )
    );
    broker.finish().await;
}

#[tokio::test]
async fn unbind_of_what_is_not_bound_succeeds_even_for_a_missing_queue_or_exchange() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_opts(&ch, "exists", EXCLUSIVE).await.unwrap();
    let none = FieldTable::default;
    ch.queue_unbind("exists", "amq.direct", "k", none())
        .await
        .expect("not bound");
    ch.queue_unbind("exists", "no-exchange", "k", none())
        .await
        .expect("missing exchange");
    ch.queue_unbind("no-queue", "amq.direct", "k", none())
        .await
        .expect("missing queue");
    assert_eq!(counts(&ch, "exists").await, (0, 0), "channel still open");
    broker.finish().await;
}

#[tokio::test]
async fn purge_returns_the_number_of_ready_messages() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare_opts(&ch, "full", EXCLUSIVE).await.unwrap();
    for _ in 0..4 {
        publish_key(&ch, "", "full").await;
    }
    assert_eq!(
        ch.queue_purge("full", QueuePurgeOptions::default())
            .await
            .unwrap(),
        4
    );
    assert_eq!(counts(&ch, "full").await, (0, 0));
    assert_eq!(
        ch.queue_purge("full", QueuePurgeOptions::default())
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        refused(
            ch.queue_purge("nowhere", QueuePurgeOptions::default())
                .await
        ),
        (404, "NOT_FOUND - no queue 'nowhere' in vhost '/'".into())
    );
    broker.finish().await;
}

#[tokio::test]
async fn delete_returns_the_message_count_and_a_missing_queue_deletes_ok() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_opts(&ch, "doomed", EXCLUSIVE).await.unwrap();
    for _ in 0..3 {
        publish_key(&ch, "", "doomed").await;
    }
    let deleted = ch
        .queue_delete("doomed", QueueDeleteOptions::default())
        .await
        .unwrap();
    assert_eq!(deleted, 3);
    assert_eq!(
        ch.queue_delete("doomed", QueueDeleteOptions::default())
            .await
            .expect("RabbitMQ 3.x answers delete-ok for a missing queue"),
        0
    );
    assert_eq!(
        ch.queue_delete("amq.never", QueueDeleteOptions::default())
            .await
            .expect("the amq. prefix is not checked on delete"),
        0
    );
    broker.finish().await;
}

#[tokio::test]
async fn delete_if_unused_of_a_consumed_queue_is_406() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare_opts(&ch, "busy", EXCLUSIVE).await.unwrap();
    let _c = consume_with(&ch, "busy", "c", false, &[]).await.unwrap();
    let if_unused = QueueDeleteOptions {
        if_unused: true,
        ..Default::default()
    };
    let other = conn.create_channel().await.unwrap();
    assert_eq!(
        refused(other.queue_delete("busy", if_unused).await),
        (
            406,
            "PRECONDITION_FAILED - queue 'busy' in vhost '/' in use".into()
        )
    );
    ch.basic_cancel("c", BasicCancelOptions::default())
        .await
        .unwrap();
    assert_eq!(ch.queue_delete("busy", if_unused).await.unwrap(), 0);
    broker.finish().await;
}

#[tokio::test]
async fn delete_if_empty_of_a_queue_with_messages_is_406() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare_opts(&ch, "loaded", EXCLUSIVE).await.unwrap();
    publish_key(&ch, "", "loaded").await;
    let if_empty = QueueDeleteOptions {
        if_empty: true,
        ..Default::default()
    };
    assert_eq!(
        refused(ch.queue_delete("loaded", if_empty).await),
        (
            406,
            "PRECONDITION_FAILED - queue 'loaded' in vhost '/' not empty".into()
        )
    );
    let ch = conn.create_channel().await.unwrap();
    assert_eq!(counts(&ch, "loaded").await, (1, 0), "still there");
    ch.queue_purge("loaded", Default::default()).await.unwrap();
    assert_eq!(ch.queue_delete("loaded", if_empty).await.unwrap(), 0);
    broker.finish().await;
}

#[tokio::test]
async fn deleting_a_consumed_queue_cancels_the_lapin_consumer() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare_opts(&ch, "vanishing", EXCLUSIVE).await.unwrap();
    let mut consumer = consume_with(&ch, "vanishing", "watcher", false, &[])
        .await
        .unwrap();
    assert!(consumer.state().is_active());
    let other = conn.create_channel().await.unwrap();
    other
        .queue_delete("vanishing", QueueDeleteOptions::default())
        .await
        .unwrap();
    // lapin turns the server's basic.cancel into the end of the consumer stream.
    let next = within("the consumer stream to end", consumer.next()).await;
    assert!(next.is_none(), "stream ended, got {next:?}");
    assert_eq!(consumer.state(), ConsumerState::Canceled);
    assert!(ch.status().connected(), "the channel stays open");
    declare_opts(&ch, "after", EXCLUSIVE).await.unwrap();
    broker.finish().await;
}

/// Consumes from a fresh queue on a raw connection (with or without consumer_cancel_notify),
/// deletes the queue on the same channel and returns the frames up to delete-ok plus the answer
/// to a basic.qos sent afterwards, so a late basic.cancel would show too.
async fn raw_consume_then_delete(broker: &TestBroker, cancel_notify: bool) -> Vec<Method> {
    let mut raw = broker.raw().await;
    let mut caps = warren_protocol::FieldTable::new();
    caps.insert(
        ShortStr::from("consumer_cancel_notify"),
        FieldValue::Bool(cancel_notify),
    );
    raw.handshake_with(caps, 0).await;
    raw.open_channel(1).await;
    raw.send_method(
        1,
        queue::Declare {
            queue: "q".into(),
            exclusive: true,
            ..Default::default()
        },
    )
    .await;
    assert!(matches!(
        raw.expect_method().await,
        (1, Method::QueueDeclareOk(_))
    ));
    raw.send_method(
        1,
        basic::Consume {
            queue: "q".into(),
            consumer_tag: "ct".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(matches!(
        raw.expect_method().await,
        (1, Method::BasicConsumeOk(_))
    ));
    raw.send_method(
        1,
        queue::Delete {
            queue: "q".into(),
            ..Default::default()
        },
    )
    .await;
    raw.send_method(
        1,
        basic::Qos {
            prefetch_count: 1,
            ..Default::default()
        },
    )
    .await;
    let mut seen = Vec::new();
    loop {
        let (channel, m) = raw.expect_method().await;
        assert_eq!(channel, 1);
        let done = matches!(m, Method::BasicQosOk(_));
        seen.push(m);
        if done {
            return seen;
        }
    }
}

#[tokio::test]
async fn deleting_a_consumed_queue_sends_basic_cancel_only_to_clients_that_asked() {
    let broker = TestBroker::start().await;
    let seen = raw_consume_then_delete(&broker, true).await;
    let cancels: Vec<_> = seen
        .iter()
        .filter_map(|m| match m {
            Method::BasicCancel(c) => Some((c.consumer_tag.to_string(), c.no_wait)),
            _ => None,
        })
        .collect();
    assert_eq!(cancels, [("ct".to_string(), true)], "{seen:?}");
    assert!(seen
        .iter()
        .any(|m| matches!(m, Method::QueueDeleteOk(d) if d.message_count == 0)));

    let seen = raw_consume_then_delete(&broker, false).await;
    assert!(
        !seen.iter().any(|m| matches!(m, Method::BasicCancel(_))),
        "no basic.cancel without consumer_cancel_notify: {seen:?}"
    );
    broker.finish().await;
}

#[tokio::test]
async fn empty_queue_name_means_the_last_queue_declared_on_the_channel() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let name = declare_opts(&ch, "", EXCLUSIVE)
        .await
        .unwrap()
        .name()
        .to_string();
    // queue.bind with an empty queue name and routing key binds with the queue's name as key.
    try_bind(&ch, "", "amq.direct", "").await.unwrap();
    publish_key(&ch, "amq.direct", &name).await;
    publish_key(&ch, "amq.direct", "").await;
    publish_key(&ch, "", &name).await;
    assert_eq!(get_key(&ch, "").await.as_deref(), Some(name.as_str()));
    assert_eq!(ch.queue_purge("", Default::default()).await.unwrap(), 1);
    publish_key(&ch, "", &name).await;
    let mut consumer = consume_with(&ch, "", "by-shortcut", false, &[])
        .await
        .unwrap();
    let delivery = within("a delivery", consumer.next())
        .await
        .expect("a delivery")
        .expect("no error");
    assert_eq!(delivery.routing_key.as_str(), name);
    delivery.ack(Default::default()).await.unwrap();
    ch.basic_cancel("by-shortcut", BasicCancelOptions::default())
        .await
        .unwrap();
    publish_key(&ch, "", &name).await;
    assert_eq!(ch.queue_delete("", Default::default()).await.unwrap(), 1);
    assert_eq!(
        refused(declare_opts(&ch, &name, PASSIVE).await).0,
        404,
        "queue.delete \"\" deleted it"
    );

    // A passive declare does not use the shortcut (RabbitMQ looks up the queue named "").
    let ch = conn.create_channel().await.unwrap();
    declare_opts(&ch, "", EXCLUSIVE).await.unwrap();
    assert_eq!(
        refused(declare_opts(&ch, "", PASSIVE).await),
        (404, "NOT_FOUND - no queue '' in vhost '/'".into())
    );
    // A channel that declared nothing has no last queue.
    let ch = conn.create_channel().await.unwrap();
    assert_eq!(
        refused(ch.queue_purge("", Default::default()).await),
        (404, "NOT_FOUND - no previously declared queue".into())
    );
    broker.finish().await;
}

#[tokio::test]
async fn passive_declare_sets_the_last_declared_queue() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_opts(&ch, "first", EXCLUSIVE).await.unwrap();
    declare_opts(&ch, "second", EXCLUSIVE).await.unwrap();
    publish_key(&ch, "", "first").await;
    publish_key(&ch, "", "second").await;
    declare_opts(&ch, "first", PASSIVE).await.unwrap();
    assert_eq!(ch.queue_purge("", Default::default()).await.unwrap(), 1);
    assert_eq!(counts(&ch, "first").await, (0, 0));
    assert_eq!(counts(&ch, "second").await, (1, 0));
    broker.finish().await;
}

#[tokio::test]
async fn amq_prefixed_queue_names_are_refused_403() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.unwrap();
    assert_eq!(
        refused(declare_opts(&ch, "amq.mine", QueueDeclareOptions::default()).await),
        (
            403,
            "ACCESS_REFUSED - queue name 'amq.mine' contains reserved prefix 'amq.*'".into()
        )
    );
    // Even an existing server-named queue cannot be redeclared by name; passive is fine.
    let ch = conn.create_channel().await.unwrap();
    let name = declare_opts(&ch, "", EXCLUSIVE)
        .await
        .unwrap()
        .name()
        .to_string();
    declare_opts(&ch, &name, PASSIVE)
        .await
        .expect("passive declare of amq.gen-");
    assert_eq!(
        refused(declare_opts(&ch, &name, EXCLUSIVE).await),
        (
            403,
            format!("ACCESS_REFUSED - queue name '{name}' contains reserved prefix 'amq.*'")
        )
    );
    broker.finish().await;
}
