//! Message TTL through lapin: `x-message-ttl` per queue, `expiration` per message (the smaller
//! wins), expiry from the head only, TTL 0, requeued messages keeping their expiry, and the
//! 406 for an invalid `expiration`. Each expectation was checked with pika against RabbitMQ
//! 3.10.8 (texts, counts, "a 50 ms message behind a 100 s one is still counted").

use crate::common::*;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicQosOptions};
use lapin::BasicProperties;
use std::time::Duration;

#[tokio::test]
async fn queue_ttl_expires_messages_with_no_consumer() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    // Long enough that three publishes and a count fit in it on a loaded machine.
    declare(&ch, "ttl", &[("x-message-ttl", int(1000))]).await;
    for body in ["a", "b", "c"] {
        publish(&ch, "ttl", body).await;
    }
    assert_eq!(ready_count(&ch, "ttl").await, 3);
    wait_ready(&ch, "ttl", 0).await;
    assert_eq!(get_body(&ch, "ttl").await, None);
    broker.finish().await;
}

#[tokio::test]
async fn per_message_expiration_expires_it_and_is_delivered_unchanged_until_then() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    publish_expiring(&ch, "q", "kept", "60000").await;
    let m = get(&ch, "q").await.expect("a message");
    assert_eq!(
        m.delivery
            .properties
            .expiration()
            .as_ref()
            .map(|e| e.as_str()),
        Some("60000")
    );
    publish_expiring(&ch, "q", "short", "50").await;
    wait_ready(&ch, "q", 0).await;
    broker.finish().await;
}

#[tokio::test]
async fn the_smaller_of_queue_ttl_and_message_expiration_wins() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "long-queue-ttl", &[("x-message-ttl", int(60_000))]).await;
    publish_expiring(&ch, "long-queue-ttl", "m", "50").await;
    declare(&ch, "short-queue-ttl", &[("x-message-ttl", int(50))]).await;
    publish_expiring(&ch, "short-queue-ttl", "m", "60000").await;
    wait_ready(&ch, "long-queue-ttl", 0).await;
    wait_ready(&ch, "short-queue-ttl", 0).await;
    broker.finish().await;
}

#[tokio::test]
async fn only_the_head_expires_a_short_lived_message_waits_behind_a_long_lived_one() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    publish_expiring(&ch, "q", "long", "100000").await;
    publish_expiring(&ch, "q", "short", "50").await;
    // Nothing to poll for: the point is that nothing happens.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(ready_count(&ch, "q").await, 2);
    assert_eq!(get_body(&ch, "q").await.as_deref(), Some("long"));
    // Fetching the head drops what expired behind it at once, as RabbitMQ does.
    assert_eq!(ready_count(&ch, "q").await, 0);
    broker.finish().await;
}

#[tokio::test]
async fn ttl_zero_is_delivered_only_to_a_consumer_that_can_take_it_at_once() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "zero", &[("x-message-ttl", int(0))]).await;
    publish(&ch, "zero", "nobody").await;
    assert_eq!(ready_count(&ch, "zero").await, 0);
    assert_eq!(get_body(&ch, "zero").await, None);

    let (_conn2, consumer_ch) = broker.channel().await;
    consumer_ch
        .basic_qos(1, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = consume_with(&consumer_ch, "zero", "c", false, &[])
        .await
        .expect("consume");
    publish(&ch, "zero", "a").await;
    publish(&ch, "zero", "b").await;
    let a = next(&mut consumer).await;
    assert_eq!(text(&a), "a");
    assert_eq!(
        ready_count(&ch, "zero").await,
        0,
        "b could not be delivered at once: expired"
    );
    a.acker.ack(BasicAckOptions::default()).await.expect("ack");
    assert_no_delivery(&mut consumer, &consumer_ch, "zero").await;
    broker.finish().await;
}

#[tokio::test]
async fn a_message_that_expires_while_the_consumer_is_busy_is_never_delivered() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    ch.basic_qos(1, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = consume_with(&ch, "q", "c", false, &[])
        .await
        .expect("consume");
    publish(&ch, "q", "first").await;
    let first = next(&mut consumer).await;
    publish_expiring(&ch, "q", "second", "50").await;
    publish(&ch, "q", "third").await;
    // The timer drops the expired head although no consumer asks for it.
    wait_ready(&ch, "q", 1).await;
    first
        .acker
        .ack(BasicAckOptions::default())
        .await
        .expect("ack");
    assert_eq!(text(&next(&mut consumer).await), "third");
    broker.finish().await;
}

#[tokio::test]
async fn a_requeued_message_keeps_its_original_expiry() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[("x-message-ttl", int(300))]).await;
    publish(&ch, "q", "m").await;
    let m = get(&ch, "q").await.expect("a message");
    tokio::time::sleep(Duration::from_millis(350)).await;
    m.delivery
        .acker
        .nack(BasicNackOptions {
            requeue: true,
            multiple: false,
        })
        .await
        .expect("nack");
    assert_eq!(
        ready_count(&ch, "q").await,
        0,
        "its TTL ran out while it was unacked"
    );
    broker.finish().await;
}

async fn publish_closes_406(broker: &TestBroker, expiration: &str) -> (u16, String) {
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    let closed = on_channel_close(&ch);
    let props = BasicProperties::default().with_expiration(expiration.into());
    publish_props(&ch, "", "q", "x", props).await;
    closed_with(closed).await
}

#[tokio::test]
async fn an_invalid_expiration_closes_the_channel_406_in_rabbitmqs_words() {
    let broker = TestBroker::start().await;
    for (expiration, reason) in [
        ("abc", "no_integer"),
        ("", "no_integer"),
        ("-1", "{value_negative,-1}"),
        ("1.5", "{leftover_string,\".5\"}"),
        ("315360000001", "{value_too_large,315360000001}"),
    ] {
        assert_eq!(
            publish_closes_406(&broker, expiration).await,
            (
                406,
                format!("PRECONDITION_FAILED - invalid expiration '{expiration}': {reason}")
            ),
            "expiration {expiration:?}"
        );
    }
    let (_conn, ch) = broker.channel().await;
    assert_eq!(ready_count(&ch, "q").await, 0, "nothing was enqueued");
    broker.finish().await;
}

#[tokio::test]
async fn expiration_with_a_plus_sign_or_leading_zeros_is_accepted() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    publish_expiring(&ch, "q", "a", "+60000").await;
    publish_expiring(&ch, "q", "b", "0060000").await;
    assert_eq!(ready_count(&ch, "q").await, 2);
    broker.finish().await;
}

#[tokio::test]
async fn ttl_zero_with_a_dead_letter_exchange_dead_letters_what_no_consumer_took() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "dlq", &[]).await;
    let args = [
        ("x-message-ttl", int(0)),
        ("x-dead-letter-exchange", s("")),
        ("x-dead-letter-routing-key", s("dlq")),
    ];
    declare(&ch, "zero", &args).await;
    publish(&ch, "zero", "nobody").await;
    wait_ready(&ch, "dlq", 1).await;
    let d = get(&ch, "dlq").await.expect("a dead letter");
    assert_eq!(text(&d.delivery), "nobody");
    assert_eq!(
        field_str(&x_death(&d.delivery.properties)[0], "reason"),
        "expired"
    );
    broker.finish().await;
}

#[tokio::test]
async fn the_timer_comes_back_for_messages_published_after_the_queue_emptied() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "ttl", &[("x-message-ttl", int(30))]).await;
    for round in 0..3 {
        publish(&ch, "ttl", &format!("m{round}")).await;
        wait_ready(&ch, "ttl", 0).await;
    }
    broker.finish().await;
}

/// The journal keeps no expiry times: after a restart a recovered message's TTL starts again
/// (later than RabbitMQ, which keeps the original deadline, but it does expire).
#[tokio::test]
async fn a_recovered_message_still_expires() {
    let data = tempfile::tempdir().expect("temp dir");
    let config = || warren::Config {
        data_dir: data.path().to_path_buf(),
        ..Default::default()
    };
    let durable = lapin::options::QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    {
        let broker = warren::BrokerHandle::start(config(), "127.0.0.1:0")
            .await
            .expect("starts");
        let conn = connect_url(&broker.url()).await.expect("connects");
        let ch = conn.create_channel().await.expect("channel");
        let args = table(&[("x-message-ttl", int(1500))]);
        ch.queue_declare("ttl", durable, args)
            .await
            .expect("declare");
        let props = BasicProperties::default().with_delivery_mode(2);
        publish_props(&ch, "", "ttl", "m", props).await;
        assert_eq!(ready_count(&ch, "ttl").await, 1);
        conn.close(200, "bye").await.expect("close");
        let leftovers = broker.shutdown_and_audit().await.expect("clean stop");
        assert_eq!(leftovers, Vec::<String>::new());
    }
    let broker = warren::BrokerHandle::start(config(), "127.0.0.1:0")
        .await
        .expect("restarts");
    let conn = connect_url(&broker.url()).await.expect("connects");
    let ch = conn.create_channel().await.expect("channel");
    assert_eq!(ready_count(&ch, "ttl").await, 1, "recovered");
    wait_ready(&ch, "ttl", 0).await;
    conn.close(200, "bye").await.expect("close");
    let leftovers = broker.shutdown_and_audit().await.expect("clean stop");
    assert_eq!(leftovers, Vec::<String>::new());
}
