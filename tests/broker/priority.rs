//! Priority queues through lapin: `x-max-priority` orders ready messages by their `priority`
//! property (no priority = 0, above the maximum = the maximum), FIFO within a priority, and a
//! requeued message goes back to its place within its priority. Same order with pika against
//! RabbitMQ 3.10.8.

use crate::common::*;
use lapin::options::{BasicNackOptions, BasicQosOptions};
use lapin::BasicProperties;

async fn publish_with_priority(ch: &lapin::Channel, queue: &str, body: &str, priority: Option<u8>) {
    let props = match priority {
        Some(p) => BasicProperties::default().with_priority(p),
        None => BasicProperties::default(),
    };
    publish_props(ch, "", queue, body, props).await;
}

#[tokio::test]
async fn higher_priority_first_fifo_within_a_priority_and_above_the_maximum_counts_as_it() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "pq", &[("x-max-priority", int(10))]).await;
    for (body, priority) in [
        ("none", None),
        ("5a", Some(5)),
        ("1", Some(1)),
        ("5b", Some(5)),
        ("10", Some(10)),
        ("200", Some(200)),
        ("0", Some(0)),
    ] {
        publish_with_priority(&ch, "pq", body, priority).await;
    }
    assert_eq!(ready_count(&ch, "pq").await, 7);
    assert_eq!(
        drain(&ch, "pq").await,
        vec!["10", "200", "5a", "5b", "1", "none", "0"]
    );
    broker.finish().await;
}

#[tokio::test]
async fn a_queue_without_x_max_priority_ignores_priorities() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "fifo", &[]).await;
    for (body, priority) in [("a", Some(1)), ("b", Some(9)), ("c", None)] {
        publish_with_priority(&ch, "fifo", body, priority).await;
    }
    assert_eq!(drain(&ch, "fifo").await, vec!["a", "b", "c"]);
    broker.finish().await;
}

#[tokio::test]
async fn requeued_messages_go_back_to_their_place_within_their_priority() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "pq", &[("x-max-priority", int(5))]).await;
    for (body, priority) in [
        ("hi-1", Some(5)),
        ("hi-2", Some(5)),
        ("hi-3", Some(5)),
        ("lo", Some(1)),
    ] {
        publish_with_priority(&ch, "pq", body, priority).await;
    }
    let first = get(&ch, "pq").await.expect("hi-1");
    let second = get(&ch, "pq").await.expect("hi-2");
    assert_eq!(text(&second.delivery), "hi-2");
    // Requeued out of order, they still come back in publish order, ahead of hi-3.
    for m in [second, first] {
        m.delivery
            .acker
            .nack(BasicNackOptions {
                multiple: false,
                requeue: true,
            })
            .await
            .expect("nack");
    }
    let again = get(&ch, "pq").await.expect("hi-1 again");
    assert_eq!(text(&again.delivery), "hi-1");
    assert!(again.delivery.redelivered);
    assert_eq!(drain(&ch, "pq").await, vec!["hi-2", "hi-3", "lo"]);
    broker.finish().await;
}

#[tokio::test]
async fn a_consumer_gets_the_backlog_in_priority_order() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "pq", &[("x-max-priority", int(3))]).await;
    for (body, priority) in [
        ("low", Some(0)),
        ("mid", Some(2)),
        ("high", Some(3)),
        ("mid2", Some(2)),
    ] {
        publish_with_priority(&ch, "pq", body, priority).await;
    }
    ch.basic_qos(10, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = consume_with(&ch, "pq", "c", true, &[])
        .await
        .expect("consume");
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(text(&next(&mut consumer).await).to_owned());
    }
    assert_eq!(got, vec!["high", "mid", "mid2", "low"]);
    broker.finish().await;
}

#[tokio::test]
async fn x_max_priority_zero_is_an_ordinary_queue() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[("x-max-priority", int(0))]).await;
    for (body, priority) in [("a", Some(1)), ("b", Some(9))] {
        publish_with_priority(&ch, "q", body, priority).await;
    }
    assert_eq!(drain(&ch, "q").await, vec!["a", "b"]);
    broker.finish().await;
}

/// RabbitMQ's drop-head on a priority queue drops the message that would be delivered next,
/// the highest priority one (pika against 3.10.8: lo(1), hi(5), mid(3) with max-length 2 keeps
/// mid and lo).
#[tokio::test]
async fn drop_head_on_a_priority_queue_drops_the_next_to_deliver() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(
        &ch,
        "pq",
        &[("x-max-priority", int(5)), ("x-max-length", int(2))],
    )
    .await;
    for (body, priority) in [("lo", Some(1)), ("hi", Some(5)), ("mid", Some(3))] {
        publish_with_priority(&ch, "pq", body, priority).await;
    }
    assert_eq!(drain(&ch, "pq").await, vec!["mid", "lo"]);
    broker.finish().await;
}
