//! Delivery counting on classic queues: a message that went back to its queue (nack/reject with
//! requeue, basic.recover, its channel closing) comes back `redelivered`, and — as in RabbitMQ
//! 3.x, whose classic queues add no header — without an `x-delivery-count` header: clients that
//! compare headers see exactly the ones they sent. (RabbitMQ adds the header for quorum queues
//! only; Warren still counts returns internally, for quorum queues' delivery limits.)

use crate::common::*;
use lapin::options::{BasicNackOptions, BasicRecoverOptions, BasicRejectOptions};
use lapin::BasicProperties;

fn has_delivery_count(props: &BasicProperties) -> bool {
    header(props, "x-delivery-count").is_some()
}

#[tokio::test]
async fn requeued_messages_come_back_redelivered_without_a_delivery_count() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    let props = BasicProperties::default().with_headers(table(&[("app", s("kept"))]));
    publish_props(&ch, "", "q", "m", props).await;
    for round in 0..4 {
        let m = get(&ch, "q").await.expect("the message");
        assert!(!has_delivery_count(&m.delivery.properties), "round {round}");
        assert_eq!(m.delivery.redelivered, round > 0);
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
async fn consumers_recover_and_channel_close_add_no_header_either() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    publish(&ch, "q", "m").await;
    let (_c1, consumer_ch) = broker.channel().await;
    let mut consumer = consume_with(&consumer_ch, "q", "c", false, &[])
        .await
        .expect("consume");
    let first = next(&mut consumer).await;
    assert!(!first.redelivered);
    first
        .acker
        .reject(BasicRejectOptions { requeue: true })
        .await
        .expect("reject");
    let second = next(&mut consumer).await;
    assert!(second.redelivered);
    assert!(!has_delivery_count(&second.properties));
    consumer_ch
        .basic_recover(BasicRecoverOptions { requeue: true })
        .await
        .expect("recover");
    let third = next(&mut consumer).await;
    assert!(third.redelivered);
    assert!(!has_delivery_count(&third.properties));
    consumer_ch.close(200, "bye").await.expect("close");
    let m = eventually("the message back in q", || get(&ch, "q")).await;
    assert!(m.delivery.redelivered);
    assert_eq!(
        m.delivery.properties.headers(),
        &None,
        "no headers table added to a message published without one"
    );
    broker.finish().await;
}
