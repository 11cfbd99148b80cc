//! The `x-delayed-message` exchange type (the rabbitmq-delayed-message-exchange plugin's
//! interface): a message with a positive `x-delay` header is routed that many milliseconds
//! later, in due-time order, by the type its `x-delayed-type` argument names.

use crate::common::*;
use lapin::options::{BasicPublishOptions, ExchangeDeclareOptions};
use lapin::{BasicProperties, ExchangeKind};
use std::time::{Duration, Instant};

fn delayed_kind() -> ExchangeKind {
    ExchangeKind::Custom("x-delayed-message".into())
}

async fn declare_delayed(ch: &lapin::Channel, name: &str, routing: &str) {
    declare_exchange_args(
        ch,
        name,
        delayed_kind(),
        table(&[("x-delayed-type", s(routing))]),
    )
    .await;
}

fn delayed_by(ms: i64) -> BasicProperties {
    BasicProperties::default().with_headers(table(&[("x-delay", long(ms))]))
}

#[tokio::test]
async fn messages_are_routed_when_due_in_due_time_order() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_delayed(&ch, "later", "direct").await;
    declare(&ch, "q", &[]).await;
    bind(&ch, "q", "later", "k").await;
    let started = Instant::now();
    publish_props(&ch, "later", "k", "slow", delayed_by(600)).await;
    publish_props(&ch, "later", "k", "fast", delayed_by(200)).await;
    publish_props(&ch, "later", "k", "now", BasicProperties::default()).await;
    publish_props(&ch, "later", "k", "negative", delayed_by(-5)).await;
    publish_props(&ch, "later", "other", "unbound", delayed_by(100)).await;
    let mut consumer = consume(&ch, "q", "c").await;
    assert_eq!(text(&next(&mut consumer).await), "now");
    assert_eq!(text(&next(&mut consumer).await), "negative");
    let fast = next(&mut consumer).await;
    assert_eq!(text(&fast), "fast");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
    // As with the plugin, the header stays on the delivered message.
    assert_eq!(header(&fast.properties, "x-delay"), Some(&long(200)));
    let slow = next(&mut consumer).await;
    assert_eq!(text(&slow), "slow");
    assert!(started.elapsed() >= Duration::from_millis(600));
    broker.finish().await;
}

#[tokio::test]
async fn many_delays_come_out_sorted_and_route_as_the_delayed_type() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_delayed(&ch, "later-topic", "topic").await;
    declare(&ch, "q", &[]).await;
    bind(&ch, "q", "later-topic", "orders.#").await;
    // Published latest-due first, in one transaction so that the broker takes them all at
    // the same moment (a loaded machine cannot reorder them): they must come out in reverse.
    ch.tx_select().await.expect("tx.select");
    for i in 0..50i64 {
        publish_props(
            &ch,
            "later-topic",
            "orders.eu.new",
            format!("{i}"),
            delayed_by(300 - i * 5),
        )
        .await;
    }
    publish_props(&ch, "later-topic", "users.new", "elsewhere", delayed_by(10)).await;
    ch.tx_commit().await.expect("tx.commit");
    let mut consumer = consume(&ch, "q", "c").await;
    for i in (0..50).rev() {
        assert_eq!(text(&next(&mut consumer).await), format!("{i}"));
    }
    assert_no_delivery(&mut consumer, &ch, "q").await;
    broker.finish().await;
}

#[tokio::test]
async fn held_messages_are_confirmed_and_never_returned() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming_channel(&broker).await;
    declare_delayed(&ch, "later", "fanout").await;
    let confirm = ch
        .basic_publish(
            "later",
            "",
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"nowhere",
            delayed_by(50),
        )
        .await
        .expect("publish");
    let confirmation = within("a confirm", confirm).await.expect("confirm");
    assert!(confirmation.is_ack());
    assert!(
        confirmation.take_message().is_none(),
        "the plugin returns nothing"
    );
    broker.finish().await;
}

#[tokio::test]
async fn a_deleted_exchange_drops_what_it_held() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_delayed(&ch, "later", "direct").await;
    declare(&ch, "q", &[]).await;
    bind(&ch, "q", "later", "k").await;
    publish_props(&ch, "later", "k", "gone", delayed_by(200)).await;
    ch.exchange_delete("later", Default::default())
        .await
        .expect("delete");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(ready_count(&ch, "q").await, 0);
    broker.finish().await;
}

#[tokio::test]
async fn the_plugin_refuses_a_missing_or_unknown_delayed_type() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    let missing = ch
        .exchange_declare(
            "d",
            delayed_kind(),
            ExchangeDeclareOptions::default(),
            table(&[]),
        )
        .await;
    assert_eq!(
        refused(missing),
        (406, "PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an existing exchange type".into())
    );
    let ch = conn.create_channel().await.expect("channel");
    let recursive = ch
        .exchange_declare(
            "d",
            delayed_kind(),
            ExchangeDeclareOptions::default(),
            table(&[("x-delayed-type", s("x-delayed-message"))]),
        )
        .await;
    assert_eq!(
        refused(recursive),
        (406, "PRECONDITION_FAILED - Invalid argument, 'x-delayed-message' can't be used for 'x-delayed-type'".into())
    );
    broker.finish().await;
}

/// "A million pending delays cost no timer per message": 10,000 held messages on one delayed
/// exchange add one task (its timer) to the runtime, not one per message; deleting the
/// exchange drops them and ends that task.
#[tokio::test]
async fn pending_delays_cost_one_timer_task_per_exchange_not_per_message() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_delayed(&ch, "held-many", "direct").await;
    declare(&ch, "held-many.q", &[]).await;
    bind(&ch, "held-many.q", "held-many", "k").await;
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let before = tasks();
    for i in 0..10_000i64 {
        ch.basic_publish(
            "held-many",
            "k",
            BasicPublishOptions::default(),
            b"later",
            delayed_by(60_000 + i),
        )
        .await
        .expect("publish");
    }
    // A round trip after the publishes: every one of them was handled.
    declare(&ch, "held-many.q", &[]).await;
    let during = tasks();
    assert!(
        during <= before + 2,
        "10,000 held messages: {before} tasks before, {during} after"
    );
    ch.exchange_delete(
        "held-many",
        lapin::options::ExchangeDeleteOptions::default(),
    )
    .await
    .expect("exchange.delete");
    broker.finish().await;
}
