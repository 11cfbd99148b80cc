//! Dead-lettering through lapin: rejected, nacked and expired messages republished to the
//! queue's dead-letter exchange with RabbitMQ's `x-death` and `x-first-death-*` headers, counts
//! per queue and reason, CC keys, cycle detection, a missing dead-letter exchange, and the
//! RabbitMQ tutorial pattern "retry with a dead-letter exchange and a TTL". Header contents and
//! routing were checked with pika against RabbitMQ 3.10.8 first.
//! (`maxlen` dead-lettering is in tests/max_length.rs.)

use crate::common::*;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};
use lapin::types::{AMQPValue, FieldArray, FieldTable};
use lapin::{BasicProperties, Channel, ExchangeKind};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `dlx` (direct) → `dlq` on key `rk`, and `src` dead-lettering to it with that key.
async fn dlx_setup(ch: &Channel, extra: &[(&str, AMQPValue)]) {
    declare_exchange(ch, "dlx", ExchangeKind::Direct).await;
    declare(ch, "dlq", &[]).await;
    bind(ch, "dlq", "dlx", "rk").await;
    let mut args = vec![
        ("x-dead-letter-exchange", s("dlx")),
        ("x-dead-letter-routing-key", s("rk")),
    ];
    args.extend(extra.iter().cloned());
    declare(ch, "src", &args).await;
}

async fn dead_lettered(ch: &Channel, queue: &str) -> lapin::message::BasicGetMessage {
    eventually("a dead-lettered message", || async {
        ch.basic_get(queue, lapin::options::BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get")
    })
    .await
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[tokio::test]
async fn a_rejected_message_is_dead_lettered_with_x_death_and_first_death_headers() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    dlx_setup(&ch, &[]).await;
    let props = BasicProperties::default()
        .with_headers(table(&[("h", int(1))]))
        .with_expiration("60000".into());
    publish_props(&ch, "", "src", "body", props).await;
    let m = get(&ch, "src").await.expect("a message");
    m.delivery
        .acker
        .reject(BasicRejectOptions { requeue: false })
        .await
        .expect("reject");

    let d = dead_lettered(&ch, "dlq").await;
    assert_eq!(text(&d.delivery), "body");
    assert_eq!(d.delivery.exchange.as_str(), "dlx");
    assert_eq!(d.delivery.routing_key.as_str(), "rk");
    assert!(!d.delivery.redelivered);
    let p = &d.delivery.properties;
    assert_eq!(p.expiration(), &None, "the expiration moves into x-death");
    assert_eq!(header(p, "h"), Some(&int(1)), "other headers are kept");
    assert_eq!(
        header_str(p, "x-first-death-reason").as_deref(),
        Some("rejected")
    );
    assert_eq!(header_str(p, "x-first-death-queue").as_deref(), Some("src"));
    assert_eq!(header_str(p, "x-first-death-exchange").as_deref(), Some(""));
    let deaths = x_death(p);
    assert_eq!(deaths.len(), 1);
    let x = &deaths[0];
    assert_eq!(death_count(x), 1);
    assert_eq!(field_str(x, "reason"), "rejected");
    assert_eq!(field_str(x, "queue"), "src");
    assert_eq!(field_str(x, "exchange"), "");
    assert_eq!(routing_keys(x), vec!["src"]);
    assert_eq!(field_str(x, "original-expiration"), "60000");
    match x.inner().get("time") {
        Some(AMQPValue::Timestamp(t)) => assert!(now_secs().abs_diff(*t) < 60, "time {t}"),
        other => panic!("time is not a timestamp: {other:?}"),
    }
    assert_eq!(ready_count(&ch, "src").await, 0);
    broker.finish().await;
}

#[tokio::test]
async fn nack_without_requeue_dead_letters_every_message_it_names() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    dlx_setup(&ch, &[]).await;
    for body in ["a", "b", "c"] {
        publish(&ch, "src", body).await;
    }
    let mut last = 0;
    for _ in 0..3 {
        last = get(&ch, "src")
            .await
            .expect("a message")
            .delivery
            .delivery_tag;
    }
    ch.basic_nack(
        last,
        BasicNackOptions {
            multiple: true,
            requeue: false,
        },
    )
    .await
    .expect("nack");
    wait_ready(&ch, "dlq", 3).await;
    assert_eq!(drain(&ch, "dlq").await, vec!["a", "b", "c"]);
    broker.finish().await;
}

#[tokio::test]
async fn nack_with_requeue_and_ack_do_not_dead_letter() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    dlx_setup(&ch, &[]).await;
    publish(&ch, "src", "m").await;
    let m = get(&ch, "src").await.expect("a message");
    m.delivery
        .acker
        .nack(BasicNackOptions {
            multiple: false,
            requeue: true,
        })
        .await
        .expect("nack");
    let m = get(&ch, "src").await.expect("the requeued message");
    m.delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .expect("ack");
    assert_eq!(ready_count(&ch, "dlq").await, 0);
    assert_eq!(ready_count(&ch, "src").await, 0);
    broker.finish().await;
}

#[tokio::test]
async fn an_expired_message_is_dead_lettered_with_reason_expired_without_any_consumer() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    dlx_setup(&ch, &[("x-message-ttl", int(50))]).await;
    publish(&ch, "src", "old").await;
    let d = dead_lettered(&ch, "dlq").await;
    assert_eq!(text(&d.delivery), "old");
    let x = &x_death(&d.delivery.properties)[0];
    assert_eq!(field_str(x, "reason"), "expired");
    assert_eq!(field_str(x, "queue"), "src");
    assert!(
        x.inner().get("original-expiration").is_none(),
        "queue TTL, not a message one"
    );
    assert_eq!(
        header_str(&d.delivery.properties, "x-first-death-reason").as_deref(),
        Some("expired")
    );
    broker.finish().await;
}

#[tokio::test]
async fn without_a_dead_letter_routing_key_the_original_keys_route_it() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare_exchange(&ch, "dlx-topic", ExchangeKind::Topic).await;
    declare(&ch, "dlq", &[]).await;
    bind(&ch, "dlq", "dlx-topic", "orders.#").await;
    declare_exchange(&ch, "work", ExchangeKind::Direct).await;
    declare(&ch, "src", &[("x-dead-letter-exchange", s("dlx-topic"))]).await;
    bind(&ch, "src", "work", "orders.new").await;
    publish_props(&ch, "work", "orders.new", "o1", BasicProperties::default()).await;
    let m = get(&ch, "src").await.expect("a message");
    m.delivery
        .acker
        .reject(BasicRejectOptions { requeue: false })
        .await
        .expect("reject");
    let d = dead_lettered(&ch, "dlq").await;
    assert_eq!(d.delivery.exchange.as_str(), "dlx-topic");
    assert_eq!(d.delivery.routing_key.as_str(), "orders.new");
    let x = &x_death(&d.delivery.properties)[0];
    assert_eq!(field_str(x, "exchange"), "work");
    assert_eq!(routing_keys(x), vec!["orders.new"]);
    broker.finish().await;
}

#[tokio::test]
async fn cc_keys_are_recorded_and_a_dead_letter_routing_key_drops_the_cc_header() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    dlx_setup(&ch, &[]).await;
    declare(&ch, "copy", &[]).await;
    let cc = AMQPValue::FieldArray(FieldArray::from(vec![s("copy")]));
    let props = BasicProperties::default().with_headers(table(&[("CC", cc)]));
    publish_props(&ch, "", "src", "m", props).await;
    assert_eq!(get_body(&ch, "copy").await.as_deref(), Some("m"));
    let m = get(&ch, "src").await.expect("a message");
    m.delivery
        .acker
        .reject(BasicRejectOptions { requeue: false })
        .await
        .expect("reject");
    let d = dead_lettered(&ch, "dlq").await;
    assert_eq!(header(&d.delivery.properties, "CC"), None);
    assert_eq!(
        routing_keys(&x_death(&d.delivery.properties)[0]),
        vec!["src", "copy"]
    );
    assert_eq!(
        ready_count(&ch, "copy").await,
        0,
        "the CC key is not used again"
    );
    broker.finish().await;
}

#[tokio::test]
async fn dying_again_in_the_same_queue_for_the_same_reason_counts_up() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    // Dead-letters to itself through the default exchange: a rejection is never a cycle.
    declare(&ch, "loop", &[("x-dead-letter-exchange", s(""))]).await;
    publish(&ch, "loop", "m").await;
    for round in 1..=3 {
        let m = eventually("the message back in loop", || get(&ch, "loop")).await;
        if round > 1 {
            let deaths = x_death(&m.delivery.properties);
            assert_eq!(deaths.len(), 1);
            assert_eq!(death_count(&deaths[0]), round - 1);
            assert_eq!(field_str(&deaths[0], "reason"), "rejected");
            assert_eq!(
                header_str(&m.delivery.properties, "x-first-death-queue").as_deref(),
                Some("loop")
            );
        }
        m.delivery
            .acker
            .reject(BasicRejectOptions { requeue: false })
            .await
            .expect("reject");
    }
    let m = eventually("the message back in loop", || get(&ch, "loop")).await;
    assert_eq!(death_count(&x_death(&m.delivery.properties)[0]), 3);
    broker.finish().await;
}

#[tokio::test]
async fn an_expiry_cycle_with_no_rejection_is_dropped() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    // Expires into itself: RabbitMQ detects the cycle and drops the message.
    declare(
        &ch,
        "cycle",
        &[
            ("x-dead-letter-exchange", s("")),
            ("x-message-ttl", int(30)),
        ],
    )
    .await;
    publish(&ch, "cycle", "m").await;
    wait_ready(&ch, "cycle", 0).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        ready_count(&ch, "cycle").await,
        0,
        "not dead-lettered back into itself"
    );
    broker.finish().await;
}

#[tokio::test]
async fn a_missing_dead_letter_exchange_drops_the_message_silently() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare(&ch, "src", &[("x-dead-letter-exchange", s("nowhere"))]).await;
    publish(&ch, "src", "m").await;
    let m = get(&ch, "src").await.expect("a message");
    m.delivery
        .acker
        .reject(BasicRejectOptions { requeue: false })
        .await
        .expect("reject");
    assert_eq!(ready_count(&ch, "src").await, 0);
    assert!(conn.status().connected());
    broker.finish().await;
}

/// The RabbitMQ tutorial pattern: a work queue dead-letters rejected messages to a retry queue
/// whose TTL dead-letters them back, so a consumer sees each failed message again after a
/// delay, with `x-death` telling how often it failed.
#[tokio::test]
async fn retry_with_a_dead_letter_exchange_and_a_ttl_end_to_end() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(
        &ch,
        "work",
        &[
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("work.retry")),
        ],
    )
    .await;
    declare(
        &ch,
        "work.retry",
        &[
            ("x-message-ttl", int(50)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("work")),
        ],
    )
    .await;
    let mut consumer = consume_with(&ch, "work", "worker", false, &[])
        .await
        .expect("consume");
    publish(&ch, "work", "job").await;
    let mut attempts = 0;
    let delivery = loop {
        let d = next(&mut consumer).await;
        assert_eq!(text(&d), "job");
        attempts += 1;
        let retries = match header(&d.properties, "x-death") {
            None => 0,
            Some(_) => {
                let deaths = x_death(&d.properties);
                let rejected = deaths
                    .iter()
                    .find(|x| field_str(x, "queue") == "work")
                    .expect("work entry");
                let expired = deaths
                    .iter()
                    .find(|x| field_str(x, "queue") == "work.retry")
                    .expect("retry entry");
                assert_eq!(field_str(rejected, "reason"), "rejected");
                assert_eq!(field_str(expired, "reason"), "expired");
                assert_eq!(death_count(rejected), death_count(expired));
                // The most recent death comes first.
                assert_eq!(field_str(&deaths[0], "queue"), "work.retry");
                death_count(rejected)
            }
        };
        assert_eq!(retries, attempts - 1);
        if retries == 3 {
            break d;
        }
        d.acker
            .reject(BasicRejectOptions { requeue: false })
            .await
            .expect("reject");
    };
    assert_eq!(
        header_str(&delivery.properties, "x-first-death-queue").as_deref(),
        Some("work")
    );
    delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .expect("ack");
    assert_no_delivery(&mut consumer, &ch, "work").await;
    assert_eq!(ready_count(&ch, "work.retry").await, 0);
    broker.finish().await;
}

/// A persistent message dead-lettered into a durable queue survives a restart like one
/// published there (the dead letter is journaled; the original is settled in its queue).
#[tokio::test]
async fn a_persistent_dead_letter_in_a_durable_queue_survives_a_restart() {
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
        ch.queue_declare("dlq", durable, FieldTable::default())
            .await
            .expect("declare");
        let args = table(&[
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("dlq")),
        ]);
        ch.queue_declare("src", durable, args)
            .await
            .expect("declare");
        let props = BasicProperties::default().with_delivery_mode(2);
        publish_props(&ch, "", "src", "keep me", props).await;
        let m = get(&ch, "src").await.expect("a message");
        m.delivery
            .acker
            .reject(BasicRejectOptions { requeue: false })
            .await
            .expect("reject");
        wait_ready(&ch, "dlq", 1).await;
        conn.close(200, "bye").await.expect("close");
        let leftovers = broker.shutdown_and_audit().await.expect("clean stop");
        assert_eq!(leftovers, Vec::<String>::new());
    }
    let broker = warren::BrokerHandle::start(config(), "127.0.0.1:0")
        .await
        .expect("restarts");
    let conn = connect_url(&broker.url()).await.expect("connects");
    let ch = conn.create_channel().await.expect("channel");
    assert_eq!(
        ready_count(&ch, "src").await,
        0,
        "the original stays settled"
    );
    let d = get(&ch, "dlq").await.expect("the dead letter came back");
    assert_eq!(text(&d.delivery), "keep me");
    assert_eq!(
        field_str(&x_death(&d.delivery.properties)[0], "reason"),
        "rejected"
    );
    conn.close(200, "bye").await.expect("close");
    let leftovers = broker.shutdown_and_audit().await.expect("clean stop");
    assert_eq!(leftovers, Vec::<String>::new());
}
