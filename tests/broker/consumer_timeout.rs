//! The consumer timeout (RabbitMQ 3.12+): a delivery left unacknowledged longer than the queue's
//! `x-consumer-timeout` (else the broker's `consumer_timeout`) closes its channel with 406 and
//! goes back to its queue, redelivered.

use crate::common::*;
use lapin::options::BasicAckOptions;
use std::time::{Duration, Instant};

const TIMED_OUT: &str = "PRECONDITION_FAILED - delivery acknowledgement on channel 1 timed out. \
     Timeout value used: 300 ms. This timeout value can be configured, see consumers doc guide to learn more";

async fn closed_by_broker(closed: tokio::sync::oneshot::Receiver<lapin::Error>) -> (u16, String) {
    let e = tokio::time::timeout(Duration::from_secs(3), closed)
        .await
        .expect("the channel is closed within 3 s")
        .expect("an error");
    amqp_error(&e).unwrap_or_else(|| panic!("not an AMQP close: {e:?}"))
}

#[tokio::test]
async fn an_unacked_delivery_past_the_queue_timeout_closes_the_channel_and_is_requeued() {
    let broker = TestBroker::start().await;
    let (_c1, consumer_ch) = broker.channel().await;
    declare(&consumer_ch, "q", &[("x-consumer-timeout", long(300))]).await;
    let closed = on_channel_close(&consumer_ch);
    let mut consumer = consume_with(&consumer_ch, "q", "c", false, &[])
        .await
        .expect("consume");
    let (_c2, ch) = broker.channel().await;
    publish(&ch, "q", "held").await;
    let started = Instant::now();
    let d = next(&mut consumer).await;
    assert_eq!(text(&d), "held");
    let (code, reply) = closed_by_broker(closed).await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!((code, reply.as_str()), (406, TIMED_OUT));
    let again = get_one(&ch, "q").await;
    assert!(again.delivery.redelivered);
    assert_eq!(std::str::from_utf8(&again.delivery.data).unwrap(), "held");
    broker.finish().await;
}

#[tokio::test]
async fn acknowledged_deliveries_keep_the_channel_open() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare(&ch, "q", &[("x-consumer-timeout", long(1000))]).await;
    let mut consumer = consume_with(&ch, "q", "c", false, &[])
        .await
        .expect("consume");
    for i in 0..5 {
        publish(&ch, "q", format!("m{i}")).await;
        let d = next(&mut consumer).await;
        d.acker.ack(BasicAckOptions::default()).await.expect("ack");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(ch.status().connected(), "the channel stays open");
    assert!(conn.status().connected());
    assert_eq!(ready_count(&ch, "q").await, 0);
    broker.finish().await;
}

#[tokio::test]
async fn the_broker_setting_applies_to_basic_get_and_queues_without_the_argument() {
    let broker = TestBroker::start_with(warren::Config {
        consumer_timeout: Some(Duration::from_millis(300)),
        ..warren::Config::default()
    })
    .await;
    let (_c1, ch) = broker.channel().await;
    declare(&ch, "plain", &[]).await;
    publish(&ch, "plain", "got").await;
    let closed = on_channel_close(&ch);
    let _held = get_one(&ch, "plain").await;
    let (code, reply) = closed_by_broker(closed).await;
    assert_eq!((code, reply.as_str()), (406, TIMED_OUT));
    let (_c2, other) = broker.channel().await;
    let again = get_one(&other, "plain").await;
    assert!(again.delivery.redelivered);
    again
        .delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .expect("ack");
    broker.finish().await;
}

#[tokio::test]
async fn the_broker_setting_can_be_disabled() {
    let broker = TestBroker::start_with(warren::Config {
        consumer_timeout: None,
        ..warren::Config::default()
    })
    .await;
    let (_c1, ch) = broker.channel().await;
    declare(&ch, "plain", &[]).await;
    declare(&ch, "short", &[("x-consumer-timeout", long(100))]).await;
    publish(&ch, "plain", "kept").await;
    let _held = get_one(&ch, "plain").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(ch.status().connected(), "no timeout without a setting");
    // A queue's own argument still applies.
    publish(&ch, "short", "timed").await;
    let closed = on_channel_close(&ch);
    let _held_too = get_one(&ch, "short").await;
    let (code, reply) = closed_by_broker(closed).await;
    assert_eq!(code, 406);
    assert!(reply.contains("Timeout value used: 100 ms."), "{reply}");
    broker.finish().await;
}

#[tokio::test]
async fn bad_values_are_refused_as_rabbitmq_does() {
    let broker = TestBroker::start().await;
    let (conn, _) = broker.channel().await;
    for (value, reason) in [
        (s("soon"), "\"expected integer, got longstr\""),
        (long(-1), "{value_negative,-1}"),
    ] {
        let ch = conn.create_channel().await.expect("channel");
        let (code, reply) = refused(declare_with(&ch, "q", &[("x-consumer-timeout", value)]).await);
        assert_eq!(code, 406);
        assert_eq!(
            reply,
            format!("PRECONDITION_FAILED - invalid arg 'x-consumer-timeout' for queue 'q' in vhost '/': {reason}")
        );
    }
    broker.finish().await;
}
