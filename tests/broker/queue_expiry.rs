//! Queue expiry (`x-expires`) through lapin: a queue unused for the period — no consumers, no
//! basic.get, no queue.declare (passive ones included) — is deleted with its messages, which are
//! not dead-lettered. Checked with pika against RabbitMQ 3.10.8 (passive declares and gets
//! renew the lease).

use crate::common::*;
use lapin::options::{BasicCancelOptions, BasicPublishOptions};
use lapin::publisher_confirm::Confirmation;
use lapin::{BasicProperties, Channel};
use std::time::Duration;

/// Whether the default exchange still routes to `queue`, asked without renewing its lease
/// (a passive declare would renew it): a mandatory publish comes back when the queue is gone.
async fn routes_to(ch: &Channel, queue: &str) -> bool {
    let options = BasicPublishOptions {
        mandatory: true,
        ..Default::default()
    };
    let confirm = ch
        .basic_publish("", queue, options, b"probe", BasicProperties::default())
        .await
        .expect("basic.publish");
    match within("a confirm", confirm).await.expect("confirmation") {
        Confirmation::Ack(returned) => returned.is_none(),
        other => panic!("unexpected confirm {other:?}"),
    }
}

async fn wait_gone(conn: &lapin::Connection, queue: &str) {
    let ch = confirm_channel_on(conn).await;
    eventually(&format!("{queue} to expire"), || async {
        (!routes_to(&ch, queue).await).then_some(())
    })
    .await;
    assert!(!queue_exists(conn, queue).await);
}

#[tokio::test]
async fn an_unused_queue_is_deleted_after_its_expiry() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare(&ch, "short-lived", &[("x-expires", int(100))]).await;
    assert!(queue_exists(&conn, "short-lived").await);
    wait_gone(&conn, "short-lived").await;
    broker.finish().await;
}

#[tokio::test]
async fn a_consumer_keeps_it_alive_and_the_period_starts_again_when_it_leaves() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare(&ch, "q", &[("x-expires", int(100))]).await;
    let _consumer = consume_with(&ch, "q", "c", true, &[])
        .await
        .expect("consume");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        queue_exists(&conn, "q").await,
        "consumed queues do not expire"
    );
    ch.basic_cancel("c", BasicCancelOptions::default())
        .await
        .expect("cancel");
    wait_gone(&conn, "q").await;
    broker.finish().await;
}

#[tokio::test]
async fn basic_get_and_passive_declares_renew_the_lease_publishing_does_not() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    // Each round (100 ms sleep and three round trips) must fit well inside the lease even on a
    // loaded machine, and ten rounds must outlast it so "published" can only survive by mistake.
    declare(&ch, "got", &[("x-expires", int(600))]).await;
    declare(&ch, "declared", &[("x-expires", int(600))]).await;
    declare(&ch, "published", &[("x-expires", int(600))]).await;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        get_body(&ch, "got").await;
        ready_count(&ch, "declared").await;
        publish(&ch, "published", "m").await;
    }
    assert!(queue_exists(&conn, "got").await);
    assert!(queue_exists(&conn, "declared").await);
    wait_gone(&conn, "published").await;
    wait_gone(&conn, "got").await;
    broker.finish().await;
}

#[tokio::test]
async fn an_expired_queue_goes_with_its_messages_which_are_not_dead_lettered() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare(&ch, "dlq", &[]).await;
    declare(
        &ch,
        "q",
        &[
            ("x-expires", int(100)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("dlq")),
        ],
    )
    .await;
    publish(&ch, "q", "lost").await;
    wait_gone(&conn, "q").await;
    assert_eq!(ready_count(&ch, "dlq").await, 0);
    // The name is free again: a new queue, without the old messages.
    declare(&ch, "q", &[("x-expires", int(60_000))]).await;
    assert_eq!(ready_count(&ch, "q").await, 0);
    broker.finish().await;
}
