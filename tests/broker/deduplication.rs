//! Message deduplication, the interface of the rabbitmq-message-deduplication plugin (and
//! LavinMQ): the `x-message-deduplication` exchange type and queue argument, the
//! `x-deduplication-header` id, `x-cache-size` and `x-cache-ttl` windows.

use crate::common::*;
use lapin::options::{BasicPublishOptions, ExchangeDeclareOptions};
use lapin::types::AMQPValue;
use lapin::{BasicProperties, ExchangeKind};
use std::time::Duration;

fn dedup_kind() -> ExchangeKind {
    ExchangeKind::Custom("x-message-deduplication".into())
}

fn with_id(id: &str) -> BasicProperties {
    BasicProperties::default().with_headers(table(&[("x-deduplication-header", s(id))]))
}

fn with_id_and_ttl(id: &str, ttl_ms: i64) -> BasicProperties {
    BasicProperties::default().with_headers(table(&[
        ("x-deduplication-header", s(id)),
        ("x-cache-ttl", long(ttl_ms)),
    ]))
}

#[tokio::test]
async fn the_exchange_routes_each_id_once_within_its_window_as_fanout() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_exchange_args(
        &ch,
        "dedup",
        dedup_kind(),
        table(&[("x-cache-size", long(100)), ("x-cache-ttl", long(300))]),
    )
    .await;
    declare(&ch, "q1", &[]).await;
    declare(&ch, "q2", &[]).await;
    bind(&ch, "q1", "dedup", "any").await;
    bind(&ch, "q2", "dedup", "other").await;
    publish_props(&ch, "dedup", "x", "first", with_id("a")).await;
    publish_props(&ch, "dedup", "x", "again", with_id("a")).await;
    publish_props(&ch, "dedup", "x", "b", with_id("b")).await;
    publish_props(&ch, "dedup", "x", "no-id", BasicProperties::default()).await;
    publish_props(&ch, "dedup", "x", "no-id", BasicProperties::default()).await;
    // A per-message TTL overrides the exchange's.
    publish_props(&ch, "dedup", "x", "short", with_id_and_ttl("c", 50)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    publish_props(&ch, "dedup", "x", "short-again", with_id("c")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish_props(&ch, "dedup", "x", "after-ttl", with_id("a")).await;
    let expected = [
        "first",
        "b",
        "no-id",
        "no-id",
        "short",
        "short-again",
        "after-ttl",
    ];
    for q in ["q1", "q2"] {
        wait_ready(&ch, q, expected.len() as u32).await;
        assert_eq!(drain(&ch, q).await, expected, "queue {q}");
    }
    broker.finish().await;
}

#[tokio::test]
async fn the_exchange_cache_forgets_the_oldest_id_when_full() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_exchange_args(
        &ch,
        "dedup",
        dedup_kind(),
        table(&[("x-cache-size", long(2))]),
    )
    .await;
    declare(&ch, "q", &[]).await;
    bind(&ch, "q", "dedup", "").await;
    for id in ["a", "b", "a", "c", "a", "c"] {
        publish_props(&ch, "dedup", "", id, with_id(id)).await;
    }
    wait_ready(&ch, "q", 4).await;
    assert_eq!(drain(&ch, "q").await, ["a", "b", "c", "a"]);
    broker.finish().await;
}

#[tokio::test]
async fn a_duplicate_is_unroutable_for_a_mandatory_publisher() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming_channel(&broker).await;
    declare_exchange_args(
        &ch,
        "dedup",
        dedup_kind(),
        table(&[("x-cache-size", long(10))]),
    )
    .await;
    declare(&ch, "q", &[]).await;
    bind(&ch, "q", "dedup", "").await;
    let mut returned = Vec::new();
    for _ in 0..2 {
        let confirm = ch
            .basic_publish(
                "dedup",
                "",
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                b"m",
                with_id("same"),
            )
            .await
            .expect("publish");
        let confirmation = within("a confirm", confirm).await.expect("confirm");
        assert!(confirmation.is_ack());
        returned.push(confirmation.take_message().is_some());
    }
    assert_eq!(
        returned,
        [false, true],
        "the duplicate comes back with basic.return"
    );
    assert_eq!(ready_count(&ch, "q").await, 1);
    broker.finish().await;
}

#[tokio::test]
async fn a_deduplicating_queue_drops_duplicates_and_still_acks_them() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming_channel(&broker).await;
    declare(
        &ch,
        "q",
        &[
            ("x-message-deduplication", AMQPValue::Boolean(true)),
            ("x-cache-size", long(10)),
        ],
    )
    .await;
    declare(&ch, "plain", &[]).await;
    declare_exchange(&ch, "fan", ExchangeKind::Fanout).await;
    bind(&ch, "q", "fan", "").await;
    bind(&ch, "plain", "fan", "").await;
    for body in ["one", "two"] {
        let confirm = ch
            .basic_publish(
                "fan",
                "",
                BasicPublishOptions::default(),
                body.as_bytes(),
                with_id("id-1"),
            )
            .await
            .expect("publish");
        assert!(within("a confirm", confirm)
            .await
            .expect("confirm")
            .is_ack());
    }
    wait_ready(&ch, "plain", 2).await;
    assert_eq!(
        drain(&ch, "q").await,
        ["one"],
        "the queue dropped the duplicate"
    );
    assert_eq!(
        drain(&ch, "plain").await,
        ["one", "two"],
        "other queues are not affected"
    );
    broker.finish().await;
}

#[tokio::test]
async fn bad_arguments_get_the_plugin_texts() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    for (args, text) in [
        (table(&[]), "PRECONDITION_FAILED - Missing or invalid argument, 'x-cache-size' must be an integer greater than 0"),
        (table(&[("x-cache-size", long(0))]), "PRECONDITION_FAILED - Missing or invalid argument, 'x-cache-size' must be an integer greater than 0"),
        (table(&[("x-cache-size", long(5)), ("x-cache-ttl", s("soon"))]), "PRECONDITION_FAILED - Invalid argument, 'x-cache-ttl' must be an integer greater than 0"),
        (table(&[("x-cache-size", long(5)), ("x-cache-persistence", s("tape"))]), "PRECONDITION_FAILED - Invalid argument, 'x-cache-persistence' must be either 'disk' or 'memory'"),
    ] {
        let ch = conn.create_channel().await.expect("channel");
        let result = ch
            .exchange_declare("d", dedup_kind(), ExchangeDeclareOptions::default(), args)
            .await;
        assert_eq!(refused(result), (406, text.to_string()));
    }
    let ch = conn.create_channel().await.expect("channel");
    let result = declare_with(&ch, "q", &[("x-message-deduplication", s("yes"))]).await;
    assert_eq!(
        refused(result),
        (406, "PRECONDITION_FAILED - invalid arg 'x-message-deduplication' for queue 'q' in vhost '/': {unacceptable_type,longstr}".to_string())
    );
    broker.finish().await;
}
