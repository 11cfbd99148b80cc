//! Quorum queues (`x-queue-type: quorum`, single node) as RabbitMQ 3.10–3.13 behave over AMQP
//! 0-9-1: durable only, their own argument set, `x-delivery-count` on redeliveries (and on
//! every basic.get), `x-delivery-limit` dead-lettering with reason `delivery_limit`, returns to
//! the back of the queue, length limits, TTL, single active consumer, consumer priorities.
//! Expected texts and behaviours: shared/RABBITMQ-FACTS.md ("Quorum queues (3.10.8)").

use crate::common::*;
use lapin::options::*;
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Channel};

/// Declares a durable quorum queue with extra arguments.
async fn quorum(ch: &Channel, name: &str, args: &[(&str, AMQPValue)]) {
    try_quorum(ch, name, args, durable())
        .await
        .expect("quorum queue.declare");
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

async fn try_quorum(
    ch: &Channel,
    name: &str,
    args: &[(&str, AMQPValue)],
    options: QueueDeclareOptions,
) -> lapin::Result<lapin::Queue> {
    let mut all = vec![("x-queue-type", s("quorum"))];
    all.extend(args.iter().cloned());
    ch.queue_declare(name, options, table(&all)).await
}

fn delivery_count(props: &BasicProperties) -> Option<i64> {
    match header(props, "x-delivery-count") {
        Some(AMQPValue::LongLongInt(n)) => Some(*n),
        None => None,
        Some(other) => panic!("x-delivery-count of the wrong type: {other:?}"),
    }
}

async fn nack_requeue(d: &lapin::message::Delivery) {
    d.acker
        .nack(BasicNackOptions {
            multiple: false,
            requeue: true,
        })
        .await
        .expect("nack");
}

#[tokio::test]
async fn publish_confirm_consume_and_ack() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming_channel(&broker).await;
    quorum(&ch, "qq", &[]).await;
    // Transient messages too: a quorum queue keeps every message on disk before confirming.
    for body in ["one", "two"] {
        assert!(confirmed(&ch, "qq", body).await, "{body} confirmed");
    }
    assert_eq!(ready_count(&ch, "qq").await, 2);
    let mut consumer = consume(&ch, "qq", "c").await;
    for expected in ["one", "two"] {
        let d = next(&mut consumer).await;
        assert_eq!(text(&d), expected);
        assert!(!d.redelivered);
        assert_eq!(delivery_count(&d.properties), None, "first delivery");
        d.acker.ack(BasicAckOptions::default()).await.expect("ack");
    }
    assert_no_delivery(&mut consumer, &ch, "qq").await;
    assert_eq!(ready_count(&ch, "qq").await, 0);
    broker.finish().await;
}

#[tokio::test]
async fn only_durable_non_exclusive_non_auto_delete_queues_are_declared() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let cases = [
        (
            QueueDeclareOptions::default(),
            "PRECONDITION_FAILED - invalid property 'non-durable' for queue 'qq' in vhost '/'",
        ),
        (
            QueueDeclareOptions {
                exclusive: true,
                ..durable()
            },
            "PRECONDITION_FAILED - invalid property 'exclusive-owner' for queue 'qq' in vhost '/'",
        ),
        (
            QueueDeclareOptions {
                auto_delete: true,
                ..durable()
            },
            "PRECONDITION_FAILED - invalid property 'auto-delete' for queue 'qq' in vhost '/'",
        ),
        // RabbitMQ checks auto-delete first (3.10.8 with pika).
        (
            QueueDeclareOptions {
                auto_delete: true,
                exclusive: true,
                ..Default::default()
            },
            "PRECONDITION_FAILED - invalid property 'auto-delete' for queue 'qq' in vhost '/'",
        ),
    ];
    for (options, text) in cases {
        let ch = conn.create_channel().await.expect("channel");
        let (code, got) = refused(try_quorum(&ch, "qq", &[], options).await);
        assert_eq!((code, got.as_str()), (406, text));
    }
    broker.finish().await;
}

#[tokio::test]
async fn other_queue_types_arguments_are_refused_and_its_own_accepted() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    for key in ["x-max-priority", "x-queue-mode", "x-queue-master-locator"] {
        let value = if key == "x-max-priority" {
            int(5)
        } else if key == "x-queue-mode" {
            s("lazy")
        } else {
            s("min-masters")
        };
        let ch = conn.create_channel().await.expect("channel");
        let (code, text) = refused(try_quorum(&ch, "qq", &[(key, value)], durable()).await);
        assert_eq!(code, 406);
        assert_eq!(
            text,
            format!("PRECONDITION_FAILED - invalid arg '{key}' for queue 'qq' in vhost '/' of queue type rabbit_quorum_queue")
        );
    }
    // Texts of RabbitMQ 3.10.8 (pika).
    for (key, value, reason) in [
        ("x-dead-letter-strategy", s("bogus"), "invalid_dlx_strategy"),
        (
            "x-queue-leader-locator",
            s("bogus"),
            "invalid_queue_locator_arg",
        ),
        ("x-quorum-initial-group-size", int(0), "{value_zero,0}"),
    ] {
        let ch = conn.create_channel().await.expect("channel");
        let (code, text) = refused(try_quorum(&ch, "qq", &[(key, value)], durable()).await);
        assert_eq!(
            (code, text),
            (
                406,
                format!("PRECONDITION_FAILED - invalid arg '{key}' for queue 'qq' in vhost '/': {reason}")
            )
        );
    }
    let ch = conn.create_channel().await.expect("channel");
    quorum(
        &ch,
        "qq",
        &[
            ("x-quorum-initial-group-size", int(3)),
            ("x-queue-leader-locator", s("client-local")),
            ("x-delivery-limit", int(5)),
            ("x-dead-letter-strategy", s("at-most-once")),
            ("x-single-active-consumer", AMQPValue::Boolean(false)),
        ],
    )
    .await;
    broker.finish().await;
}

#[tokio::test]
async fn redeclaring_as_another_type_is_inequivalent() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    quorum(&ch, "qq", &[]).await;
    let (code, text) = refused(
        ch.queue_declare("qq", durable(), table(&[("x-queue-type", s("classic"))]))
            .await,
    );
    assert_eq!(code, 406);
    assert!(
        text.starts_with(
            "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'qq' in vhost '/'"
        ),
        "{text}"
    );
    let ch = conn.create_channel().await.expect("channel");
    let (code, _) = refused(ch.queue_declare("qq", durable(), table(&[])).await);
    assert_eq!(code, 406, "absent x-queue-type means classic");
    // The same declare again is fine, and so is a passive one.
    let ch = conn.create_channel().await.expect("channel");
    quorum(&ch, "qq", &[]).await;
    assert_eq!(ready_count(&ch, "qq").await, 0);
    broker.finish().await;
}

#[tokio::test]
async fn redeliveries_carry_the_count_of_returns_and_go_to_the_back() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    quorum(&ch, "qq", &[]).await;
    publish(&ch, "qq", "a").await;
    publish(&ch, "qq", "b").await;
    ch.basic_qos(1, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = consume(&ch, "qq", "c").await;
    let a = next(&mut consumer).await;
    assert_eq!((text(&a), delivery_count(&a.properties)), ("a", None));
    nack_requeue(&a).await;
    // Returned to the back: b first.
    let b = next(&mut consumer).await;
    assert_eq!((text(&b), b.redelivered), ("b", false));
    b.acker.ack(BasicAckOptions::default()).await.expect("ack");
    let a = next(&mut consumer).await;
    assert_eq!(text(&a), "a");
    assert!(a.redelivered);
    assert_eq!(delivery_count(&a.properties), Some(1));
    a.acker
        .reject(BasicRejectOptions { requeue: true })
        .await
        .expect("reject");
    let a = next(&mut consumer).await;
    assert_eq!(delivery_count(&a.properties), Some(2));
    // A channel closing returns its unacked messages too.
    ch.close(200, "bye").await.expect("close");
    let (_conn2, ch2) = broker.channel().await;
    let got = eventually("a back in qq", || get(&ch2, "qq")).await;
    assert_eq!(delivery_count(&got.delivery.properties), Some(3));
    got.acker
        .ack(BasicAckOptions::default())
        .await
        .expect("ack");
    broker.finish().await;
}

#[tokio::test]
async fn basic_get_always_carries_the_delivery_count() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    quorum(&ch, "qq", &[]).await;
    publish(&ch, "qq", "m").await;
    let first = get_one(&ch, "qq").await;
    assert_eq!(delivery_count(&first.delivery.properties), Some(0));
    assert_eq!(first.message_count, 0);
    nack_requeue(&first.delivery).await;
    let second = get_one(&ch, "qq").await;
    assert_eq!(delivery_count(&second.delivery.properties), Some(1));
    assert!(second.delivery.redelivered);
    second
        .delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .expect("ack");
    assert!(get(&ch, "qq").await.is_none());
    broker.finish().await;
}

#[tokio::test]
async fn the_return_past_the_delivery_limit_dead_letters_with_reason_delivery_limit() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "dlq", &[]).await;
    quorum(
        &ch,
        "qq",
        &[
            ("x-delivery-limit", int(2)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("dlq")),
        ],
    )
    .await;
    publish(&ch, "qq", "poison").await;
    for returns in 0..3 {
        let m = get_one(&ch, "qq").await;
        assert_eq!(delivery_count(&m.delivery.properties), Some(returns));
        nack_requeue(&m.delivery).await;
    }
    assert_eq!(
        ready_count(&ch, "qq").await,
        0,
        "the third return dead-lettered it"
    );
    let dead = get_one(&ch, "dlq").await;
    assert_eq!(std::str::from_utf8(&dead.delivery.data), Ok("poison"));
    let deaths = x_death(&dead.delivery.properties);
    assert_eq!(field_str(&deaths[0], "reason"), "delivery_limit");
    assert_eq!(field_str(&deaths[0], "queue"), "qq");
    assert_eq!(
        header_str(&dead.delivery.properties, "x-first-death-reason").as_deref(),
        Some("delivery_limit")
    );
    dead.delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .expect("ack");
    broker.finish().await;
}

#[tokio::test]
async fn without_a_dead_letter_exchange_the_delivery_limit_drops() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    // -1 is accepted and acts as 0 (RabbitMQ 3.10.8, pika).
    for (queue, limit) in [("qq", 0), ("qq.negative", -1)] {
        quorum(&ch, queue, &[("x-delivery-limit", int(limit))]).await;
        publish(&ch, queue, "m").await;
        let m = get_one(&ch, queue).await;
        nack_requeue(&m.delivery).await;
        assert!(
            get(&ch, queue).await.is_none(),
            "limit {limit}: the first return drops it"
        );
    }
    broker.finish().await;
}

#[tokio::test]
async fn reject_without_requeue_dead_letters_with_reason_rejected() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "dlq", &[]).await;
    quorum(
        &ch,
        "qq",
        &[
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("dlq")),
        ],
    )
    .await;
    publish(&ch, "qq", "m").await;
    let m = get_one(&ch, "qq").await;
    m.delivery
        .acker
        .reject(BasicRejectOptions { requeue: false })
        .await
        .expect("reject");
    let dead = eventually("the dead letter", || get(&ch, "dlq")).await;
    assert_eq!(
        field_str(&x_death(&dead.delivery.properties)[0], "reason"),
        "rejected"
    );
    dead.delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .expect("ack");
    broker.finish().await;
}

#[tokio::test]
async fn max_length_drop_head_dead_letters_the_oldest() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "dlq", &[]).await;
    quorum(
        &ch,
        "qq",
        &[
            ("x-max-length", int(2)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("dlq")),
        ],
    )
    .await;
    for body in ["1", "2", "3"] {
        publish(&ch, "qq", body).await;
    }
    assert_eq!(drain(&ch, "qq").await, ["2", "3"]);
    let dead = drain_deliveries(&ch, "dlq").await;
    assert_eq!(dead.len(), 1);
    assert_eq!(text(&dead[0]), "1");
    assert_eq!(
        field_str(&x_death(&dead[0].properties)[0], "reason"),
        "maxlen"
    );
    broker.finish().await;
}

#[tokio::test]
async fn max_length_bytes_drops_by_body_size() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    quorum(&ch, "qq", &[("x-max-length-bytes", int(10))]).await;
    for body in ["aaaa", "bbbb", "cccc"] {
        publish(&ch, "qq", body).await;
    }
    assert_eq!(drain(&ch, "qq").await, ["bbbb", "cccc"]);
    broker.finish().await;
}

#[tokio::test]
async fn reject_publish_nacks_past_the_limit_until_below_80_percent() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming_channel(&broker).await;
    quorum(
        &ch,
        "qq",
        &[
            ("x-max-length", int(2)),
            ("x-overflow", s("reject-publish")),
        ],
    )
    .await;
    // RabbitMQ's quorum queues take the publish that goes over the limit, then refuse.
    for (body, acked) in [("1", true), ("2", true), ("3", true), ("4", false)] {
        assert_eq!(confirmed(&ch, "qq", body).await, acked, "publish {body}");
    }
    assert_eq!(ready_count(&ch, "qq").await, 3);
    // Below 80% of 2 means empty.
    let taken: Vec<_> = drain(&ch, "qq").await;
    assert_eq!(taken, ["1", "2", "3"]);
    assert!(
        confirmed(&ch, "qq", "5").await,
        "accepted again once drained"
    );
    broker.finish().await;
}

#[tokio::test]
async fn message_ttl_expires_at_the_head_and_dead_letters_without_a_consumer() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "dlq", &[]).await;
    quorum(
        &ch,
        "qq",
        &[
            ("x-message-ttl", int(50)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("dlq")),
        ],
    )
    .await;
    publish(&ch, "qq", "old").await;
    let dead = eventually("the expired message in dlq", || get(&ch, "dlq")).await;
    assert_eq!(
        field_str(&x_death(&dead.delivery.properties)[0], "reason"),
        "expired"
    );
    dead.delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .expect("ack");
    assert_eq!(ready_count(&ch, "qq").await, 0);
    // A per-message expiration works the same way.
    publish_expiring(&ch, "qq", "short", "10").await;
    wait_ready(&ch, "dlq", 1).await;
    broker.finish().await;
}

#[tokio::test]
async fn single_active_consumer_hands_over_when_the_active_one_leaves() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    quorum(
        &ch,
        "qq",
        &[("x-single-active-consumer", AMQPValue::Boolean(true))],
    )
    .await;
    let (_c1, ch1) = broker.channel().await;
    let (_c2, ch2) = broker.channel().await;
    let mut first = consume_with(&ch1, "qq", "first", true, &[])
        .await
        .expect("consume");
    let mut second = consume_with(&ch2, "qq", "second", true, &[])
        .await
        .expect("consume");
    for body in ["1", "2"] {
        publish(&ch, "qq", body).await;
    }
    assert_eq!(text(&next(&mut first).await), "1");
    assert_eq!(text(&next(&mut first).await), "2");
    assert_no_delivery(&mut second, &ch2, "qq").await;
    ch1.basic_cancel("first", BasicCancelOptions::default())
        .await
        .expect("cancel");
    publish(&ch, "qq", "3").await;
    assert_eq!(text(&next(&mut second).await), "3");
    broker.finish().await;
}

#[tokio::test]
async fn higher_priority_consumers_get_the_messages() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    quorum(&ch, "qq", &[]).await;
    let (_c1, low_ch) = broker.channel().await;
    let (_c2, high_ch) = broker.channel().await;
    let mut low = consume_with(&low_ch, "qq", "low", true, &[])
        .await
        .expect("consume");
    let mut high = consume_with(&high_ch, "qq", "high", true, &[("x-priority", int(10))])
        .await
        .expect("consume");
    for body in ["1", "2", "3"] {
        publish(&ch, "qq", body).await;
    }
    for expected in ["1", "2", "3"] {
        assert_eq!(text(&next(&mut high).await), expected);
    }
    assert_no_delivery(&mut low, &low_ch, "qq").await;
    broker.finish().await;
}

#[tokio::test]
async fn purge_and_delete_report_the_ready_messages() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    quorum(&ch, "qq", &[]).await;
    for body in ["1", "2", "3"] {
        publish(&ch, "qq", body).await;
    }
    let purged = ch
        .queue_purge("qq", QueuePurgeOptions::default())
        .await
        .expect("purge");
    assert_eq!(purged, 3);
    publish(&ch, "qq", "4").await;
    let deleted = ch
        .queue_delete("qq", QueueDeleteOptions::default())
        .await
        .expect("delete");
    assert_eq!(deleted, 1);
    broker.finish().await;
}

#[tokio::test]
async fn conditional_delete_is_not_implemented_for_quorum_queues() {
    let broker = TestBroker::start().await;
    for (options, flag) in [
        (
            QueueDeleteOptions {
                if_unused: true,
                if_empty: true,
                ..Default::default()
            },
            "if-unused",
        ),
        (
            QueueDeleteOptions {
                if_empty: true,
                ..Default::default()
            },
            "if-empty",
        ),
    ] {
        let (_conn, ch) = broker.channel().await;
        quorum(&ch, "qq", &[]).await;
        let (code, text) = refused(ch.queue_delete("qq", options).await);
        assert_eq!(code, 540, "a connection error");
        assert_eq!(
            text,
            format!(
                "NOT_IMPLEMENTED - cannot delete queue 'qq' in vhost '/'. queue.delete operations \
                 with {flag} flag set are not supported by quorum queues"
            )
        );
    }
    let (_conn, ch) = broker.channel().await;
    assert_eq!(
        ch.queue_delete("qq", QueueDeleteOptions::default())
            .await
            .expect("a plain delete works"),
        0
    );
    broker.finish().await;
}

#[tokio::test]
async fn basic_get_on_a_single_active_consumer_quorum_queue_is_refused_405() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    quorum(
        &ch,
        "qq",
        &[("x-single-active-consumer", AMQPValue::Boolean(true))],
    )
    .await;
    let (code, text) = refused(ch.basic_get("qq", BasicGetOptions::default()).await);
    assert_eq!(
        (code, text.as_str()),
        (
            405,
            "RESOURCE_LOCKED - cannot obtain access to locked queue 'qq' in vhost '/'. basic.get \
             operations are not supported by quorum queues with single active consumer"
        )
    );
    broker.finish().await;
}

/// At-least-once (with reject-publish, as RabbitMQ requires): a dead letter that no queue takes
/// stays held in the source (not ready, not lost) and is published again until one does; at
/// most once, the same dead letter is gone for good.
#[tokio::test]
async fn at_least_once_dead_letters_wait_for_a_route_at_most_once_ones_do_not() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    for (queue, strategy) in [("qq.alo", "at-least-once"), ("qq.amo", "at-most-once")] {
        quorum(
            &ch,
            queue,
            &[
                ("x-overflow", s("reject-publish")),
                ("x-dead-letter-exchange", s("dlx")),
                ("x-dead-letter-strategy", s(strategy)),
            ],
        )
        .await;
        publish(&ch, queue, strategy).await;
        let m = get_one(&ch, queue).await;
        m.delivery
            .acker
            .reject(BasicRejectOptions { requeue: false })
            .await
            .expect("reject");
        assert_eq!(ready_count(&ch, queue).await, 0, "{queue}: not ready");
    }
    // The dead-letter exchange did not exist when they died; now it routes to dead.q.
    declare_exchange(&ch, "dlx", lapin::ExchangeKind::Fanout).await;
    declare(&ch, "dead.q", &[]).await;
    bind(&ch, "dead.q", "dlx", "").await;
    wait_ready(&ch, "dead.q", 1).await;
    let dead = drain(&ch, "dead.q").await;
    assert_eq!(dead, ["at-least-once"], "the at-most-once one is lost");
    // Taken once: not published again.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(ready_count(&ch, "dead.q").await, 0);
    broker.finish().await;
}

#[tokio::test]
async fn an_unused_quorum_queue_expires_one_with_a_consumer_does_not() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    quorum(&ch, "qq.idle", &[("x-expires", int(200))]).await;
    quorum(&ch, "qq.used", &[("x-expires", int(200))]).await;
    let _consumer = consume(&ch, "qq.used", "c").await;
    // Not polled: a passive declare counts as a use (RabbitMQ 3.10.8, see queue_expiry.rs).
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert!(!queue_exists(&conn, "qq.idle").await, "unused for 200 ms");
    assert!(queue_exists(&conn, "qq.used").await, "it has a consumer");
    broker.finish().await;
}
