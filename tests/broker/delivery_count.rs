//! Delivery counting: a message that went back to its queue (nack/reject with requeue,
//! basic.recover, its channel closing) is redelivered with an `x-delivery-count` header counting
//! its earlier deliveries. This is RabbitMQ 4.x's quorum-queue behaviour, which Warren adopts for
//! every queue; RabbitMQ 3.10's classic queues send no such header.

use crate::common::*;
use lapin::options::{BasicNackOptions, BasicRecoverOptions, BasicRejectOptions};
use lapin::types::AMQPValue;
use lapin::BasicProperties;

fn delivery_count(props: &BasicProperties) -> Option<i64> {
    match header(props, "x-delivery-count") {
        None => None,
        Some(AMQPValue::LongLongInt(n)) => Some(*n),
        Some(other) => panic!("x-delivery-count is not a long: {other:?}"),
    }
}

#[tokio::test]
async fn each_requeue_adds_one_and_the_first_delivery_has_none() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    let props = BasicProperties::default().with_headers(table(&[("app", s("kept"))]));
    publish_props(&ch, "", "q", "m", props).await;
    for expected in [None, Some(1), Some(2), Some(3)] {
        let m = get(&ch, "q").await.expect("the message");
        assert_eq!(delivery_count(&m.delivery.properties), expected);
        assert_eq!(m.delivery.redelivered, expected.is_some());
        assert_eq!(
            header_str(&m.delivery.properties, "app").as_deref(),
            Some("kept")
        );
        m.delivery
            .acker
            .nack(BasicNackOptions {
                multiple: false,
                requeue: true,
            })
            .await
            .expect("nack");
    }
    broker.finish().await;
}

#[tokio::test]
async fn consumers_see_it_too_and_recover_and_channel_close_count() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    publish(&ch, "q", "m").await;
    let (_c1, consumer_ch) = broker.channel().await;
    let mut consumer = consume_with(&consumer_ch, "q", "c", false, &[])
        .await
        .expect("consume");
    let first = next(&mut consumer).await;
    assert_eq!(delivery_count(&first.properties), None);
    first
        .acker
        .reject(BasicRejectOptions { requeue: true })
        .await
        .expect("reject");
    let second = next(&mut consumer).await;
    assert_eq!(delivery_count(&second.properties), Some(1));
    consumer_ch
        .basic_recover(BasicRecoverOptions { requeue: true })
        .await
        .expect("recover");
    let third = next(&mut consumer).await;
    assert_eq!(delivery_count(&third.properties), Some(2));
    consumer_ch.close(200, "bye").await.expect("close");
    let m = eventually("the message back in q", || get(&ch, "q")).await;
    assert_eq!(delivery_count(&m.delivery.properties), Some(3));
    broker.finish().await;
}

#[tokio::test]
async fn acked_messages_and_other_messages_are_untouched() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    publish(&ch, "q", "a").await;
    publish(&ch, "q", "b").await;
    let a = get(&ch, "q").await.expect("a");
    a.delivery
        .acker
        .nack(BasicNackOptions {
            multiple: false,
            requeue: true,
        })
        .await
        .expect("nack");
    let a = get(&ch, "q").await.expect("a again");
    assert_eq!(text(&a.delivery), "a");
    assert_eq!(delivery_count(&a.delivery.properties), Some(1));
    let b = get(&ch, "q").await.expect("b");
    assert_eq!(delivery_count(&b.delivery.properties), None);
    assert_eq!(
        b.delivery.properties.headers(),
        &None,
        "no headers table added"
    );
    broker.finish().await;
}
