//! The basic class against a real broker: publish and consume, returns, get, acknowledgements,
//! prefetch, requeueing on close, channel.flow and the limits a publisher can hit. Through lapin,
//! and through raw frames where a client library cannot express the case.
//!
//! Every expectation that is not spelled out in the spec was checked with pika against RabbitMQ
//! 3.10 (reply codes and texts, ack/recover edge cases); channel.flow is the one exception, see
//! its test.

use crate::common::*;
use lapin::options::*;
use lapin::types::{AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable};
use lapin::{BasicProperties, Channel};
use warren_protocol::{basic, ContentHeader, Frame, Method, ReplyCode};

// ---------------------------------------------------------------------------------------------
// Helpers

/// Publishes `bodies` in order, then waits until the broker has routed them all (a synchronous
/// method on the same channel is only answered once every publish before it was handled).
async fn publish_all(ch: &Channel, queue: &str, bodies: &[&str]) {
    for body in bodies {
        publish(ch, queue, body.as_bytes()).await;
    }
    ready_count(ch, queue).await;
}

// ---------------------------------------------------------------------------------------------
// Publish and consume

#[tokio::test]
async fn publish_and_consume_round_trip_keeps_every_property_and_header() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "props", &[]).await;
    let mut nested = FieldTable::default();
    nested.insert("inner".into(), AMQPValue::LongString("deep".into()));
    let mut headers = FieldTable::default();
    for (key, value) in [
        ("bool", AMQPValue::Boolean(true)),
        ("i8", AMQPValue::ShortShortInt(-8)),
        ("u8", AMQPValue::ShortShortUInt(200)),
        ("i16", AMQPValue::ShortInt(-1600)),
        ("u16", AMQPValue::ShortUInt(60000)),
        ("i32", AMQPValue::LongInt(-320_000)),
        ("u32", AMQPValue::LongUInt(4_000_000_000)),
        ("i64", AMQPValue::LongLongInt(-64_000_000_000)),
        ("f32", AMQPValue::Float(1.5)),
        ("f64", AMQPValue::Double(-2.25)),
        (
            "decimal",
            AMQPValue::DecimalValue(DecimalValue {
                scale: 2,
                value: 12345,
            }),
        ),
        ("string", AMQPValue::LongString("héllo".into())),
        (
            "array",
            AMQPValue::FieldArray(FieldArray::from(vec![
                AMQPValue::LongInt(1),
                AMQPValue::LongString("two".into()),
            ])),
        ),
        ("timestamp", AMQPValue::Timestamp(1_700_000_000)),
        ("table", AMQPValue::FieldTable(nested)),
        (
            "bytes",
            AMQPValue::ByteArray(ByteArray::from(vec![0u8, 1, 255])),
        ),
        ("void", AMQPValue::Void),
    ] {
        headers.insert(key.into(), value);
    }
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("gzip".into())
        .with_headers(headers)
        .with_delivery_mode(2)
        .with_priority(7)
        .with_correlation_id("corr-1".into())
        .with_reply_to("replies".into())
        .with_expiration("60000".into())
        .with_message_id("msg-1".into())
        .with_timestamp(1_700_000_001)
        .with_type("order.created".into())
        .with_user_id("guest".into())
        .with_app_id("warren-tests".into())
        .with_cluster_id("cluster-a".into());
    let body = b"{\"id\": 1}";
    ch.basic_publish(
        "",
        "props",
        BasicPublishOptions::default(),
        body,
        properties.clone(),
    )
    .await
    .expect("publish");
    let mut consumer = consume(&ch, "props", "c").await;
    let d = next(&mut consumer).await;
    assert_eq!(d.data, body);
    assert_eq!(d.properties, properties);
    assert_eq!(d.exchange.as_str(), "");
    assert_eq!(d.routing_key.as_str(), "props");
    assert!(!d.redelivered);
    d.ack(BasicAckOptions::default()).await.expect("ack");
    broker.finish().await;
}

#[tokio::test]
async fn message_of_several_mib_round_trips_intact() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "big", &[]).await;
    // 5 MiB over a negotiated frame_max of 128 KiB: about 40 body frames each way.
    let body: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    ch.basic_publish(
        "",
        "big",
        BasicPublishOptions::default(),
        &body,
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    let mut consumer = consume(&ch, "big", "c").await;
    let d = next(&mut consumer).await;
    assert_eq!(d.data.len(), body.len());
    assert!(d.data == body, "body differs after the round trip");
    d.ack(BasicAckOptions::default()).await.expect("ack");
    broker.finish().await;
}

#[tokio::test]
async fn large_delivery_is_split_into_body_frames_within_frame_max() {
    let broker = TestBroker::start().await;
    let mut raw = broker.raw().await;
    raw.handshake().await;
    raw.open_channel(1).await;
    raw.send_method(
        1,
        warren_protocol::queue::Declare {
            queue: "big".into(),
            ..Default::default()
        },
    )
    .await;
    raw.expect_method().await;
    let body: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let chunk = raw.frame_max as usize - 8;
    raw.send_method(
        1,
        basic::Publish {
            routing_key: "big".into(),
            ..Default::default()
        },
    )
    .await;
    raw.send(Frame::Header {
        channel: 1,
        header: ContentHeader {
            class_id: 60,
            weight: 0,
            body_size: body.len() as u64,
            properties: Default::default(),
        },
    })
    .await;
    for part in body.chunks(chunk) {
        raw.send(Frame::Body {
            channel: 1,
            payload: bytes::Bytes::copy_from_slice(part),
        })
        .await;
    }
    raw.send_method(
        1,
        basic::Consume {
            queue: "big".into(),
            consumer_tag: "c".into(),
            no_ack: true,
            ..Default::default()
        },
    )
    .await;
    let (_, ok) = raw.expect_method().await;
    assert!(matches!(ok, Method::BasicConsumeOk(_)), "{ok:?}");
    let (_, deliver) = raw.expect_method().await;
    assert!(matches!(deliver, Method::BasicDeliver(_)), "{deliver:?}");
    let Some(Frame::Header { header, .. }) = raw.recv().await else {
        panic!("expected a content header")
    };
    assert_eq!(header.body_size, body.len() as u64);
    let mut received = Vec::new();
    let mut frames = 0;
    while received.len() < body.len() {
        let Some(Frame::Body { payload, .. }) = raw.recv().await else {
            panic!("expected a body frame after {} bytes", received.len())
        };
        assert!(
            payload.len() <= chunk,
            "body frame of {} bytes is over frame_max",
            payload.len()
        );
        received.extend_from_slice(&payload);
        frames += 1;
    }
    assert_eq!(frames, body.len().div_ceil(chunk));
    assert!(received == body, "body differs after the round trip");
    drop(raw);
    broker.finish().await;
}

#[tokio::test]
async fn mandatory_unroutable_publish_is_returned_312_no_route_with_its_body() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    // Not mandatory: dropped silently.
    publish(&ch, "nowhere", b"dropped").await;
    let properties = BasicProperties::default().with_message_id("m-1".into());
    ch.basic_publish(
        "",
        "nowhere",
        BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        },
        b"come back",
        properties.clone(),
    )
    .await
    .expect("publish");
    // Outside confirm mode lapin keeps returns until wait_for_confirms drains them.
    let returned = within("basic.return", async {
        loop {
            let returned = ch.wait_for_confirms().await.expect("returns");
            if !returned.is_empty() {
                return returned;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(returned.len(), 1, "only the mandatory publish comes back");
    let r = &returned[0];
    assert_eq!(r.reply_code, 312);
    assert_eq!(r.reply_text.as_str(), "NO_ROUTE");
    assert_eq!(r.delivery.exchange.as_str(), "");
    assert_eq!(r.delivery.routing_key.as_str(), "nowhere");
    assert_eq!(r.delivery.data, b"come back");
    assert_eq!(r.delivery.properties, properties);
    broker.finish().await;
}

#[tokio::test]
async fn no_ack_consumer_needs_no_acks_and_leaves_nothing_to_requeue() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    publish_all(&ch, "q", &["a", "b", "c"]).await;
    let (_conn2, consumer_ch) = broker.channel().await;
    let mut consumer = consumer_ch
        .basic_consume(
            "q",
            "c",
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    for expected in ["a", "b", "c"] {
        assert_eq!(text(&next(&mut consumer).await), expected);
    }
    consumer_ch.close(200, "bye").await.expect("close");
    assert_eq!(
        ready_count(&ch, "q").await,
        0,
        "no-ack deliveries are settled"
    );
    broker.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Consumers: exclusivity, tags, cancel

#[tokio::test]
async fn consumer_on_an_exclusively_consumed_queue_is_refused_403() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    let mut owner = ch
        .basic_consume(
            "q",
            "owner",
            BasicConsumeOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("exclusive consume");
    let (_conn2, other) = broker.channel().await;
    let err = other
        .basic_consume(
            "q",
            "second",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect_err("queue is consumed exclusively");
    assert_eq!(
        amqp_error(&err),
        Some((
            403,
            "ACCESS_REFUSED - queue 'q' in vhost '/' in exclusive use".into()
        ))
    );
    // The refused consumer was never added, and the exclusive one still gets the messages.
    publish_all(&ch, "q", &["for the owner"]).await;
    let d = next(&mut owner).await;
    assert_eq!(text(&d), "for the owner");
    d.ack(BasicAckOptions::default()).await.expect("ack");
    broker.finish().await;
}

#[tokio::test]
async fn exclusive_consumer_on_a_queue_with_consumers_is_refused_403() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    let _first = consume(&ch, "q", "first").await;
    let (_conn2, other) = broker.channel().await;
    let err = other
        .basic_consume(
            "q",
            "exclusive",
            BasicConsumeOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect_err("queue already has a consumer");
    assert_eq!(
        amqp_error(&err),
        Some((
            403,
            "ACCESS_REFUSED - queue 'q' in vhost '/' in exclusive use".into()
        ))
    );
    // The refused consumer was never added: the queue has exactly one.
    let q = ch
        .queue_declare(
            "q",
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("passive declare");
    assert_eq!(q.consumer_count(), 1);
    broker.finish().await;
}

#[tokio::test]
async fn empty_consumer_tag_gets_a_generated_amq_ctag() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    let a = consume(&ch, "q", "").await;
    let b = consume(&ch, "q", "").await;
    assert!(a.tag().as_str().starts_with("amq.ctag-"), "{}", a.tag());
    assert!(b.tag().as_str().starts_with("amq.ctag-"), "{}", b.tag());
    assert_ne!(a.tag(), b.tag());
    broker.finish().await;
}

#[tokio::test]
async fn reusing_a_consumer_tag_on_one_channel_closes_the_connection_530() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    declare(&ch, "r", &[]).await;
    let _c = consume(&ch, "q", "dup").await;
    let err = ch
        .basic_consume(
            "r",
            "dup",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect_err("tag in use on this channel");
    assert_eq!(
        amqp_error(&err),
        Some((
            530,
            "NOT_ALLOWED - attempt to reuse consumer tag 'dup'".into()
        ))
    );
    within("the connection to close", async {
        while conn.status().connected() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    broker.finish().await;
}

#[tokio::test]
async fn same_consumer_tag_on_two_channels_is_allowed() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    let ch2 = conn.create_channel().await.expect("channel");
    let _a = consume(&ch, "q", "same").await;
    let _b = consume(&ch2, "q", "same").await;
    assert!(conn.status().connected());
    broker.finish().await;
}

#[tokio::test]
async fn cancelled_consumer_gets_no_more_deliveries() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    let mut consumer = consume(&ch, "q", "c").await;
    publish(&ch, "q", b"before").await;
    let d = next(&mut consumer).await;
    assert_eq!(text(&d), "before");
    ch.basic_cancel("c", BasicCancelOptions::default())
        .await
        .expect("cancel");
    publish_all(&ch, "q", &["after"]).await;
    assert_eq!(ready_count(&ch, "q").await, 1, "nobody consumed 'after'");
    // Deliveries made before the cancel can still be acked.
    d.ack(BasicAckOptions::default()).await.expect("ack");
    assert_eq!(text(&get_one(&ch, "q").await.delivery), "after");
    broker.finish().await;
}

#[tokio::test]
async fn messages_published_before_any_consumer_are_delivered_when_one_subscribes() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    publish_all(&ch, "q", &["1", "2", "3"]).await;
    assert_eq!(ready_count(&ch, "q").await, 3);
    let (_conn2, consumer_ch) = broker.channel().await;
    let mut consumer = consume(&consumer_ch, "q", "late").await;
    for expected in ["1", "2", "3"] {
        let d = next(&mut consumer).await;
        assert_eq!(text(&d), expected);
        d.ack(BasicAckOptions::default()).await.expect("ack");
    }
    broker.finish().await;
}

#[tokio::test]
async fn consumers_of_one_queue_are_served_round_robin() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    let mut a = consume(&ch, "q", "a").await;
    let mut b = consume(&ch, "q", "b").await;
    let (_conn2, publisher) = broker.channel().await;
    publish_all(&publisher, "q", &["0", "1", "2", "3", "4", "5"]).await;
    let mut got_a = Vec::new();
    let mut got_b = Vec::new();
    for _ in 0..3 {
        got_a.push(text(&next(&mut a).await).to_owned());
        got_b.push(text(&next(&mut b).await).to_owned());
    }
    assert_eq!(got_a, ["0", "2", "4"]);
    assert_eq!(got_b, ["1", "3", "5"]);
    ch.basic_ack(0, BasicAckOptions { multiple: true })
        .await
        .expect("ack all");
    broker.finish().await;
}

// ---------------------------------------------------------------------------------------------
// basic.get

#[tokio::test]
async fn basic_get_reports_remaining_count_and_get_empty_when_drained() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    let empty = ch
        .basic_get("q", BasicGetOptions::default())
        .await
        .expect("get");
    assert!(empty.is_none(), "get-empty on an empty queue");
    publish_all(&ch, "q", &["a", "b", "c"]).await;
    for (expected, remaining) in [("a", 2), ("b", 1), ("c", 0)] {
        let m = ch
            .basic_get("q", BasicGetOptions { no_ack: true })
            .await
            .expect("get")
            .expect("a message");
        assert_eq!(text(&m.delivery), expected);
        assert_eq!(m.message_count, remaining);
        assert!(!m.delivery.redelivered);
    }
    let drained = ch
        .basic_get("q", BasicGetOptions::default())
        .await
        .expect("get");
    assert!(drained.is_none(), "get-empty once drained");
    broker.finish().await;
}

// ---------------------------------------------------------------------------------------------
// ack, nack, reject, recover

#[tokio::test]
async fn ack_multiple_settles_every_tag_up_to_the_one_named() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    publish_all(&ch, "q", &["1", "2", "3", "4"]).await;
    let mut tags = Vec::new();
    for _ in 0..4 {
        tags.push(get_one(&ch, "q").await.delivery.delivery_tag);
    }
    assert_eq!(tags, [1, 2, 3, 4], "delivery tags count from 1 per channel");
    ch.basic_ack(3, BasicAckOptions { multiple: true })
        .await
        .expect("ack");
    // 1..=3 are gone; 4 is still outstanding and can be acked on its own.
    ch.basic_ack(4, BasicAckOptions::default())
        .await
        .expect("ack");
    ch.close(200, "bye").await.expect("close");
    let (_conn2, ch2) = broker.channel().await;
    assert_eq!(ready_count(&ch2, "q").await, 0, "everything was acked");
    broker.finish().await;
}

#[tokio::test]
async fn nack_multiple_with_requeue_keeps_order_and_marks_redelivered() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    publish_all(&ch, "q", &["1", "2", "3", "4", "5"]).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(get_one(&ch, "q").await.delivery);
    }
    ch.basic_nack(
        got[2].delivery_tag,
        BasicNackOptions {
            multiple: true,
            requeue: true,
        },
    )
    .await
    .expect("nack");
    let mut order = Vec::new();
    for _ in 0..5 {
        let m = get_one(&ch, "q").await;
        order.push((text(&m.delivery).to_owned(), m.delivery.redelivered));
    }
    let expected: Vec<(String, bool)> = [
        ("1", true),
        ("2", true),
        ("3", true),
        ("4", false),
        ("5", false),
    ]
    .iter()
    .map(|(b, r)| ((*b).to_owned(), *r))
    .collect();
    assert_eq!(order, expected);
    ch.basic_ack(0, BasicAckOptions { multiple: true })
        .await
        .expect("ack all");
    broker.finish().await;
}

#[tokio::test]
async fn reject_with_requeue_puts_a_message_back_in_its_place_marked_redelivered() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    publish_all(&ch, "q", &["1", "2", "3"]).await;
    let first = get_one(&ch, "q").await.delivery;
    let second = get_one(&ch, "q").await.delivery;
    // Reject the second first, then the first: the queue still reads 1, 2, 3.
    ch.basic_reject(second.delivery_tag, BasicRejectOptions { requeue: true })
        .await
        .expect("reject");
    ch.basic_reject(first.delivery_tag, BasicRejectOptions { requeue: true })
        .await
        .expect("reject");
    let mut consumer = consume(&ch, "q", "c").await;
    for (expected, redelivered) in [("1", true), ("2", true), ("3", false)] {
        let d = next(&mut consumer).await;
        assert_eq!((text(&d), d.redelivered), (expected, redelivered));
        d.ack(BasicAckOptions::default()).await.expect("ack");
    }
    broker.finish().await;
}

#[tokio::test]
async fn nack_and_reject_without_requeue_drop_the_messages() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    publish_all(&ch, "q", &["1", "2", "3", "4"]).await;
    let mut tags = Vec::new();
    for _ in 0..3 {
        tags.push(get_one(&ch, "q").await.delivery.delivery_tag);
    }
    ch.basic_reject(tags[0], BasicRejectOptions { requeue: false })
        .await
        .expect("reject");
    ch.basic_nack(
        tags[2],
        BasicNackOptions {
            multiple: true,
            requeue: false,
        },
    )
    .await
    .expect("nack");
    ch.close(200, "bye").await.expect("close");
    let (_conn2, ch2) = broker.channel().await;
    assert_eq!(ready_count(&ch2, "q").await, 1, "only '4' is left");
    assert_eq!(text(&get_one(&ch2, "q").await.delivery), "4");
    ch2.basic_ack(0, BasicAckOptions { multiple: true })
        .await
        .expect("ack");
    broker.finish().await;
}

#[tokio::test]
async fn recover_requeues_every_unacked_delivery_as_redelivered() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    publish_all(&ch, "q", &["1", "2"]).await;
    let mut consumer = consume(&ch, "q", "c").await;
    assert!(!next(&mut consumer).await.redelivered);
    assert!(!next(&mut consumer).await.redelivered);
    ch.basic_recover(BasicRecoverOptions { requeue: true })
        .await
        .expect("recover");
    for expected in ["1", "2"] {
        let d = next(&mut consumer).await;
        assert_eq!(text(&d), expected);
        assert!(d.redelivered);
        d.ack(BasicAckOptions::default()).await.expect("ack");
    }
    broker.finish().await;
}

#[tokio::test]
async fn recover_without_requeue_is_not_implemented_540() {
    // RabbitMQ: connection.close 540 "NOT_IMPLEMENTED - requeue=false" (checked with pika).
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let err = ch
        .basic_recover(BasicRecoverOptions { requeue: false })
        .await
        .expect_err("requeue=false is refused");
    assert_eq!(
        amqp_error(&err),
        Some((540, "NOT_IMPLEMENTED - requeue=false".into()))
    );
    within("the connection to close", async {
        while conn.status().connected() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    broker.finish().await;
}

#[tokio::test]
async fn ack_of_an_unknown_delivery_tag_closes_the_channel_406_and_not_the_connection() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let closed = on_channel_close(&ch);
    ch.basic_ack(99, BasicAckOptions::default())
        .await
        .expect("ack is sent");
    assert_eq!(
        closed_with(closed).await,
        (406, "PRECONDITION_FAILED - unknown delivery tag 99".into())
    );
    assert!(conn.status().connected());
    let ch2 = conn.create_channel().await.expect("another channel opens");
    declare(&ch2, "still-works", &[]).await;
    broker.finish().await;
}

#[tokio::test]
async fn acking_the_same_delivery_tag_twice_closes_the_channel_406() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    publish_all(&ch, "q", &["once"]).await;
    let tag = get_one(&ch, "q").await.delivery.delivery_tag;
    let closed = on_channel_close(&ch);
    ch.basic_ack(tag, BasicAckOptions::default())
        .await
        .expect("ack");
    ch.basic_ack(tag, BasicAckOptions::default())
        .await
        .expect("second ack is sent");
    assert_eq!(
        closed_with(closed).await,
        (
            406,
            format!("PRECONDITION_FAILED - unknown delivery tag {tag}")
        )
    );
    let (_conn2, ch2) = broker.channel().await;
    assert_eq!(ready_count(&ch2, "q").await, 0, "the first ack stood");
    broker.finish().await;
}

#[tokio::test]
async fn ack_multiple_naming_an_already_acked_tag_closes_the_channel_406() {
    // RabbitMQ looks for the named tag itself, even with multiple=true (checked with pika):
    // deliveries 1..3, ack 2, then ack multiple 2 → 406, and tag 1 stays unacked.
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    publish_all(&ch, "q", &["1", "2", "3"]).await;
    for _ in 0..3 {
        get_one(&ch, "q").await;
    }
    let closed = on_channel_close(&ch);
    ch.basic_ack(2, BasicAckOptions::default())
        .await
        .expect("ack");
    ch.basic_ack(2, BasicAckOptions { multiple: true })
        .await
        .expect("ack is sent");
    assert_eq!(
        closed_with(closed).await,
        (406, "PRECONDITION_FAILED - unknown delivery tag 2".into())
    );
    let (_conn2, ch2) = broker.channel().await;
    let remaining: Vec<String> = [get_one(&ch2, "q").await, get_one(&ch2, "q").await]
        .iter()
        .map(|m| text(&m.delivery).to_owned())
        .collect();
    assert_eq!(remaining, ["1", "3"], "1 and 3 were requeued on close");
    ch2.basic_ack(0, BasicAckOptions { multiple: true })
        .await
        .expect("ack");
    broker.finish().await;
}

#[tokio::test]
async fn ack_multiple_beyond_the_last_delivery_closes_the_channel_406() {
    // RabbitMQ: deliveries 1..3, ack multiple 10 → "unknown delivery tag 10" (checked with pika).
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    publish_all(&ch, "q", &["1", "2", "3"]).await;
    for _ in 0..3 {
        get_one(&ch, "q").await;
    }
    let closed = on_channel_close(&ch);
    ch.basic_ack(10, BasicAckOptions { multiple: true })
        .await
        .expect("ack is sent");
    assert_eq!(
        closed_with(closed).await,
        (406, "PRECONDITION_FAILED - unknown delivery tag 10".into())
    );
    let (_conn2, ch2) = broker.channel().await;
    assert_eq!(ready_count(&ch2, "q").await, 3, "nothing was acked");
    broker.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Prefetch

#[tokio::test]
async fn prefetch_count_limits_unacked_deliveries_per_consumer() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    ch.basic_qos(2, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = consume(&ch, "q", "c").await;
    let (_conn2, publisher) = broker.channel().await;
    publish_all(&publisher, "q", &["1", "2", "3", "4", "5"]).await;
    let first = next(&mut consumer).await;
    let second = next(&mut consumer).await;
    assert_eq!((text(&first), text(&second)), ("1", "2"));
    assert_no_delivery(&mut consumer, &ch, "q").await;
    assert_eq!(ready_count(&ch, "q").await, 3);
    first.ack(BasicAckOptions::default()).await.expect("ack");
    let third = next(&mut consumer).await;
    assert_eq!(text(&third), "3");
    assert_no_delivery(&mut consumer, &ch, "q").await;
    // A multiple ack frees two slots at once.
    third
        .ack(BasicAckOptions { multiple: true })
        .await
        .expect("ack");
    assert_eq!(text(&next(&mut consumer).await), "4");
    assert_eq!(text(&next(&mut consumer).await), "5");
    ch.basic_ack(0, BasicAckOptions { multiple: true })
        .await
        .expect("ack all");
    broker.finish().await;
}

#[tokio::test]
async fn two_consumers_with_prefetch_one_get_the_next_message_as_they_ack() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    ch.basic_qos(1, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut a = consume(&ch, "q", "a").await;
    let mut b = consume(&ch, "q", "b").await;
    let (_conn2, publisher) = broker.channel().await;
    publish_all(&publisher, "q", &["1", "2", "3", "4"]).await;
    let a1 = next(&mut a).await;
    let b1 = next(&mut b).await;
    assert_eq!((text(&a1), text(&b1)), ("1", "2"));
    assert_no_delivery(&mut a, &ch, "q").await;
    assert_no_delivery(&mut b, &ch, "q").await;
    // The consumer that acks first gets the next message, whatever the round-robin order.
    b1.ack(BasicAckOptions::default()).await.expect("ack");
    let b2 = next(&mut b).await;
    assert_eq!(text(&b2), "3");
    assert_no_delivery(&mut a, &ch, "q").await;
    b2.ack(BasicAckOptions::default()).await.expect("ack");
    assert_eq!(text(&next(&mut b).await), "4");
    a1.ack(BasicAckOptions::default()).await.expect("ack");
    assert_no_delivery(&mut a, &ch, "q").await;
    ch.basic_ack(0, BasicAckOptions { multiple: true })
        .await
        .expect("ack all");
    broker.finish().await;
}

/// Deliberately unlike RabbitMQ (which keeps an existing consumer's limit): raising the
/// per-consumer prefetch lets an existing consumer take more at once. kombu sends exactly this
/// (global=false) to any broker whose product is not "RabbitMQ"; before, a Celery worker holding
/// countdown tasks stopped receiving others (interop/python celery_eta_and_retry).
#[tokio::test]
async fn raising_the_per_consumer_prefetch_applies_to_existing_consumers() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    ch.basic_qos(1, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = consume(&ch, "q", "c").await;
    let (_conn2, publisher) = broker.channel().await;
    publish_all(&publisher, "q", &["1", "2", "3", "4"]).await;
    assert_eq!(text(&next(&mut consumer).await), "1");
    assert_no_delivery(&mut consumer, &ch, "q").await;
    ch.basic_qos(3, BasicQosOptions::default())
        .await
        .expect("qos");
    assert_eq!(text(&next(&mut consumer).await), "2");
    assert_eq!(text(&next(&mut consumer).await), "3");
    assert_no_delivery(&mut consumer, &ch, "q").await;
    ch.basic_ack(0, BasicAckOptions { multiple: true })
        .await
        .expect("ack all");
    broker.finish().await;
}

#[tokio::test]
async fn global_qos_limits_unacked_deliveries_across_the_channels_consumers() {
    // RabbitMQ's reading of global=true: one limit shared by every consumer on the channel.
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q1", &[]).await;
    declare(&ch, "q2", &[]).await;
    ch.basic_qos(3, BasicQosOptions { global: true })
        .await
        .expect("qos");
    let mut a = consume(&ch, "q1", "a").await;
    let mut b = consume(&ch, "q2", "b").await;
    let (_conn2, publisher) = broker.channel().await;
    publish_all(&publisher, "q1", &["a1", "a2"]).await;
    publish_all(&publisher, "q2", &["b1", "b2"]).await;
    let a1 = next(&mut a).await;
    next(&mut a).await;
    let b1 = next(&mut b).await;
    assert_eq!(text(&b1), "b1");
    assert_no_delivery(&mut b, &ch, "q2").await;
    assert_eq!(ready_count(&ch, "q2").await, 1, "the channel holds its 3");
    a1.ack(BasicAckOptions::default()).await.expect("ack");
    assert_eq!(text(&next(&mut b).await), "b2");
    ch.basic_ack(0, BasicAckOptions { multiple: true })
        .await
        .expect("ack all");
    broker.finish().await;
}

#[tokio::test]
async fn qos_with_a_prefetch_size_is_not_implemented_540() {
    let broker = TestBroker::start().await;
    let mut raw = broker.raw().await;
    raw.handshake().await;
    raw.open_channel(1).await;
    raw.send_method(
        1,
        basic::Qos {
            prefetch_size: 1000,
            prefetch_count: 0,
            global: false,
        },
    )
    .await;
    let text = raw.expect_connection_close(ReplyCode::NotImplemented).await;
    assert_eq!(text, "NOT_IMPLEMENTED - prefetch_size!=0 (1000)");
    drop(raw);
    broker.finish().await;
}

/// RabbitMQ 3.x closes the connection on a publish with immediate=true (checked with pika
/// against 3.10.8); Warren used to ignore the flag and deliver.
#[tokio::test]
async fn publish_with_immediate_is_not_implemented_540() {
    let broker = TestBroker::start().await;
    let mut raw = broker.raw().await;
    raw.handshake().await;
    raw.open_channel(1).await;
    raw.send_method(
        1,
        basic::Publish {
            exchange: "".into(),
            routing_key: "q".into(),
            mandatory: false,
            immediate: true,
            ..Default::default()
        },
    )
    .await;
    let text = raw.expect_connection_close(ReplyCode::NotImplemented).await;
    assert_eq!(text, "NOT_IMPLEMENTED - immediate=true");
    drop(raw);
    broker.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Requeue when a channel or connection goes away

#[tokio::test]
async fn closing_a_channel_requeues_its_unacked_deliveries_as_redelivered() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    publish_all(&ch, "q", &["1", "2", "3", "4"]).await;
    let consumer_ch = conn.create_channel().await.expect("channel");
    let mut consumer = consume(&consumer_ch, "q", "c").await;
    for expected in ["1", "2", "3", "4"] {
        assert_eq!(text(&next(&mut consumer).await), expected);
    }
    consumer_ch
        .basic_ack(2, BasicAckOptions::default())
        .await
        .expect("ack '2'");
    consumer_ch.close(200, "bye").await.expect("close");
    for expected in ["1", "3", "4"] {
        let m = get_one(&ch, "q").await;
        assert_eq!(text(&m.delivery), expected);
        assert!(m.delivery.redelivered);
    }
    ch.basic_ack(0, BasicAckOptions { multiple: true })
        .await
        .expect("ack all");
    broker.finish().await;
}

#[tokio::test]
async fn closing_a_connection_requeues_its_unacked_deliveries_as_redelivered() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    publish_all(&ch, "q", &["1", "2", "3"]).await;
    let (consumer_conn, consumer_ch) = broker.channel().await;
    let mut consumer = consume(&consumer_ch, "q", "c").await;
    for _ in 0..3 {
        next(&mut consumer).await;
    }
    assert_eq!(ready_count(&ch, "q").await, 0);
    consumer_conn.close(200, "bye").await.expect("close");
    let mut c2 = consume(&ch, "q", "c2").await;
    for expected in ["1", "2", "3"] {
        let d = next(&mut c2).await;
        assert_eq!((text(&d), d.redelivered), (expected, true));
        d.ack(BasicAckOptions::default()).await.expect("ack");
    }
    broker.finish().await;
}

#[tokio::test]
async fn dropped_socket_requeues_unacked_deliveries() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    publish_all(&ch, "q", &["1"]).await;
    let mut raw = broker.raw().await;
    raw.handshake().await;
    raw.open_channel(1).await;
    raw.send_method(
        1,
        basic::Get {
            queue: "q".into(),
            ..Default::default()
        },
    )
    .await;
    let (_, m) = raw.expect_method().await;
    assert!(matches!(m, Method::BasicGetOk(_)), "{m:?}");
    drop(raw);
    let m = within("the requeue", async {
        loop {
            if let Some(m) = ch
                .basic_get("q", BasicGetOptions { no_ack: true })
                .await
                .expect("get")
            {
                return m;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!((text(&m.delivery), m.delivery.redelivered), ("1", true));
    broker.finish().await;
}

#[tokio::test]
async fn one_channels_unacked_messages_are_invisible_to_another_channel() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    publish_all(&ch, "q", &["held"]).await;
    let mut holder = consume(&ch, "q", "holder").await;
    let held = next(&mut holder).await;
    let other = conn.create_channel().await.expect("channel");
    let got = other
        .basic_get("q", BasicGetOptions::default())
        .await
        .expect("get");
    assert!(got.is_none(), "the unacked message is not offered again");
    let mut watcher = consume(&other, "q", "watcher").await;
    assert_no_delivery(&mut watcher, &other, "q").await;
    // Once the holder gives it back, the other channel's consumer gets it, redelivered.
    ch.basic_cancel("holder", BasicCancelOptions::default())
        .await
        .expect("cancel");
    held.nack(BasicNackOptions {
        requeue: true,
        ..Default::default()
    })
    .await
    .expect("nack");
    let d = next(&mut watcher).await;
    assert!(d.redelivered);
    assert_eq!(text(&d), "held");
    d.ack(BasicAckOptions::default()).await.expect("ack");
    broker.finish().await;
}

// ---------------------------------------------------------------------------------------------
// channel.flow

#[tokio::test]
async fn channel_flow_inactive_pauses_deliveries_until_reactivated() {
    // RabbitMQ 3.x refuses active=false with 540 (checked with pika), as Warren does by default
    // (tests/compat_channels.rs); with `honour_channel_flow` Warren pauses deliveries as the
    // spec describes.
    let broker = TestBroker::start_with(warren::Config {
        honour_channel_flow: true,
        ..Default::default()
    })
    .await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    let mut consumer = consume(&ch, "q", "c").await;
    let active = ch
        .channel_flow(ChannelFlowOptions { active: false })
        .await
        .expect("flow");
    assert!(!active, "flow-ok echoes active=false");
    let (_conn2, publisher) = broker.channel().await;
    publish_all(&publisher, "q", &["1", "2"]).await;
    assert_no_delivery(&mut consumer, &ch, "q").await;
    assert_eq!(ready_count(&ch, "q").await, 2);
    let active = ch
        .channel_flow(ChannelFlowOptions { active: true })
        .await
        .expect("flow");
    assert!(active);
    for expected in ["1", "2"] {
        let d = next(&mut consumer).await;
        assert_eq!(text(&d), expected);
        d.ack(BasicAckOptions::default()).await.expect("ack");
    }
    broker.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Publisher limits

#[tokio::test]
async fn content_header_above_max_message_size_closes_the_channel_406() {
    let broker = TestBroker::start().await;
    let mut raw = broker.raw().await;
    raw.handshake().await;
    raw.open_channel(1).await;
    let max = warren::Config::default().max_message_size;
    raw.send_method(
        1,
        basic::Publish {
            routing_key: "q".into(),
            ..Default::default()
        },
    )
    .await;
    raw.send(Frame::Header {
        channel: 1,
        header: ContentHeader {
            class_id: 60,
            weight: 0,
            body_size: max + 1,
            properties: Default::default(),
        },
    })
    .await;
    // The broker refuses at the header; body frames already on their way are dropped.
    raw.send(Frame::Body {
        channel: 1,
        payload: bytes::Bytes::from_static(b"ignored"),
    })
    .await;
    let text = raw
        .expect_channel_close(1, ReplyCode::PreconditionFailed)
        .await;
    assert_eq!(
        text,
        format!(
            "PRECONDITION_FAILED - message size {} is larger than configured max size {max}",
            max + 1
        )
    );
    // The connection lives on.
    raw.open_channel(2).await;
    drop(raw);
    broker.finish().await;
}

#[tokio::test]
async fn publish_with_another_users_user_id_closes_the_channel_406() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    let closed = on_channel_close(&ch);
    ch.basic_publish(
        "",
        "q",
        BasicPublishOptions::default(),
        b"spoofed",
        BasicProperties::default().with_user_id("mallory".into()),
    )
    .await
    .expect("publish is sent");
    assert_eq!(
        closed_with(closed).await,
        (
            406,
            "PRECONDITION_FAILED - user_id property set to 'mallory' but authenticated user was 'guest'"
                .into()
        )
    );
    let ch2 = conn.create_channel().await.expect("connection lives on");
    assert_eq!(
        ready_count(&ch2, "q").await,
        0,
        "the message was not routed"
    );
    broker.finish().await;
}

#[tokio::test]
async fn user_id_must_equal_the_authenticated_user_exactly_and_is_checked_after_the_exchange() {
    // Checked with pika against RabbitMQ 3.10.8: the connection's own user name passes and is
    // delivered as sent; anything else (empty, other case, trailing space) is 406, also inside
    // a transaction at publish time; a missing exchange is reported before the user-id.
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    ch.basic_publish(
        "",
        "q",
        BasicPublishOptions::default(),
        b"mine",
        BasicProperties::default().with_user_id("guest".into()),
    )
    .await
    .expect("publish");
    let m = get_one(&ch, "q").await;
    assert_eq!(
        m.delivery.properties.user_id().as_ref().map(|u| u.as_str()),
        Some("guest")
    );
    for (exchange, user, tx, expected) in [
        ("", "", false, "PRECONDITION_FAILED - user_id property set to '' but authenticated user was 'guest'"),
        ("", "GUEST", false, "PRECONDITION_FAILED - user_id property set to 'GUEST' but authenticated user was 'guest'"),
        ("", "guest ", false, "PRECONDITION_FAILED - user_id property set to 'guest ' but authenticated user was 'guest'"),
        ("", "bob", true, "PRECONDITION_FAILED - user_id property set to 'bob' but authenticated user was 'guest'"),
        ("nosuch", "bob", false, "NOT_FOUND - no exchange 'nosuch' in vhost '/'"),
    ] {
        let ch = conn.create_channel().await.expect("channel");
        if tx {
            ch.tx_select().await.expect("tx.select");
        }
        let closed = on_channel_close(&ch);
        ch.basic_publish(
            exchange,
            "q",
            BasicPublishOptions::default(),
            b"spoofed",
            BasicProperties::default().with_user_id(user.into()),
        )
        .await
        .expect("publish is sent");
        let (code, text) = closed_with(closed).await;
        assert_eq!(text, expected, "user_id {user:?}");
        assert_eq!(code, if exchange.is_empty() { 406 } else { 404 });
    }
    let ch = conn.create_channel().await.expect("connection lives on");
    assert_eq!(ready_count(&ch, "q").await, 0, "nothing refused was routed");
    broker.finish().await;
}
