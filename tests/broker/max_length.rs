//! Length limits through lapin (and raw frames for the exact confirm frames): `x-max-length`,
//! `x-max-length-bytes`, and `x-overflow` drop-head (dead-lettered as `maxlen`), reject-publish
//! (basic.nack to confirming publishers, silent otherwise, never a basic.return) and
//! reject-publish-dlx. Behaviour checked with pika against RabbitMQ 3.10.8 first.

use crate::common::*;
use bytes::BytesMut;
use lapin::options::{BasicAckOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions};
use lapin::BasicProperties;
use warren_protocol::{
    basic, confirm, encode_frame, queue, ContentHeader, FieldTable, FieldValue, Frame, Method,
    ShortStr,
};

fn limited(max: i32, overflow: &str) -> Vec<(&'static str, lapin::types::AMQPValue)> {
    vec![
        ("x-max-length", int(max)),
        ("x-overflow", s(overflow)),
        ("x-dead-letter-exchange", s("")),
        ("x-dead-letter-routing-key", s("dlq")),
    ]
}

#[tokio::test]
async fn drop_head_keeps_the_newest_and_dead_letters_the_oldest_as_maxlen() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "dlq", &[]).await;
    declare(&ch, "q", &limited(2, "drop-head")).await;
    for body in ["0", "1", "2", "3"] {
        publish(&ch, "q", body).await;
    }
    assert_eq!(ready_count(&ch, "q").await, 2);
    wait_ready(&ch, "dlq", 2).await;
    for expected in ["0", "1"] {
        let d = get(&ch, "dlq").await.expect("a dead letter");
        assert_eq!(text(&d.delivery), expected);
        let x = &x_death(&d.delivery.properties)[0];
        assert_eq!(field_str(x, "reason"), "maxlen");
        assert_eq!(field_str(x, "queue"), "q");
        assert_eq!(death_count(x), 1);
    }
    assert_eq!(drain(&ch, "q").await, vec!["2", "3"]);
    broker.finish().await;
}

#[tokio::test]
async fn drop_head_is_the_default_and_without_a_dlx_the_oldest_are_just_dropped() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[("x-max-length", int(3))]).await;
    for i in 0..10 {
        publish(&ch, "q", &i.to_string()).await;
    }
    assert_eq!(drain(&ch, "q").await, vec!["7", "8", "9"]);
    broker.finish().await;
}

#[tokio::test]
async fn max_length_bytes_counts_ready_body_bytes() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[("x-max-length-bytes", int(10))]).await;
    for body in ["aaaa", "bbbb", "cccc", "dddd"] {
        publish(&ch, "q", body).await;
    }
    assert_eq!(drain(&ch, "q").await, vec!["cccc", "dddd"]);
    publish(&ch, "q", "this body alone is too big").await;
    assert_eq!(ready_count(&ch, "q").await, 0);
    broker.finish().await;
}

#[tokio::test]
async fn max_length_zero_delivers_to_a_consumer_with_credit_and_drops_otherwise() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "zero", &[("x-max-length", int(0))]).await;
    publish(&ch, "zero", "dropped").await;
    assert_eq!(ready_count(&ch, "zero").await, 0);
    let (_c, consumer_ch) = broker.channel().await;
    let mut consumer = consume_with(&consumer_ch, "zero", "c", true, &[])
        .await
        .expect("consume");
    publish(&ch, "zero", "delivered").await;
    assert_eq!(text(&next(&mut consumer).await), "delivered");
    broker.finish().await;
}

#[tokio::test]
async fn unacknowledged_deliveries_do_not_count_against_the_limit() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(
        &ch,
        "q",
        &[
            ("x-max-length", int(1)),
            ("x-overflow", s("reject-publish")),
        ],
    )
    .await;
    publish(&ch, "q", "first").await;
    let first = get(&ch, "q").await.expect("a message");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    assert!(
        confirmed(&ch, "q", "second").await,
        "the unacked one does not fill the queue"
    );
    assert!(!confirmed(&ch, "q", "third").await);
    first
        .delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .expect("ack");
    assert_eq!(drain(&ch, "q").await, vec!["second"]);
    broker.finish().await;
}

#[tokio::test]
async fn reject_publish_nacks_a_confirming_publisher_and_keeps_the_queue_as_it_was() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "dlq", &[]).await;
    declare(&ch, "q", &limited(1, "reject-publish")).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    assert!(confirmed(&ch, "q", "0").await);
    assert!(!confirmed(&ch, "q", "1").await);
    assert!(!confirmed(&ch, "q", "2").await);
    assert_eq!(
        ready_count(&ch, "dlq").await,
        0,
        "reject-publish does not dead-letter"
    );
    assert_eq!(drain(&ch, "q").await, vec!["0"]);
    assert!(confirmed(&ch, "q", "3").await, "room again");
    broker.finish().await;
}

#[tokio::test]
async fn reject_publish_without_confirms_drops_silently_and_returns_nothing() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare(
        &ch,
        "q",
        &[
            ("x-max-length", int(1)),
            ("x-overflow", s("reject-publish")),
        ],
    )
    .await;
    publish(&ch, "q", "kept").await;
    let options = BasicPublishOptions {
        mandatory: true,
        ..Default::default()
    };
    ch.basic_publish("", "q", options, b"refused", BasicProperties::default())
        .await
        .expect("basic.publish");
    assert_eq!(drain(&ch, "q").await, vec!["kept"]);
    assert!(conn.status().connected());
    // A basic.return would have reached lapin's returned-messages buffer before this reply.
    assert!(ch
        .wait_for_confirms()
        .await
        .expect("no confirms pending")
        .is_empty());
    broker.finish().await;
}

#[tokio::test]
async fn reject_publish_dlx_nacks_and_dead_letters_the_refused_message() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "dlq", &[]).await;
    declare(&ch, "q", &limited(1, "reject-publish-dlx")).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    assert!(confirmed(&ch, "q", "0").await);
    assert!(!confirmed(&ch, "q", "1").await);
    assert!(!confirmed(&ch, "q", "2").await);
    wait_ready(&ch, "dlq", 2).await;
    for expected in ["1", "2"] {
        let d = get(&ch, "dlq").await.expect("a dead letter");
        assert_eq!(text(&d.delivery), expected);
        let x = &x_death(&d.delivery.properties)[0];
        assert_eq!(field_str(x, "reason"), "maxlen");
        assert_eq!(field_str(x, "queue"), "q");
    }
    assert_eq!(drain(&ch, "q").await, vec!["0"]);
    broker.finish().await;
}

#[tokio::test]
async fn a_publish_refused_by_one_of_its_queues_is_nacked() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(
        &ch,
        "full",
        &[
            ("x-max-length", int(0)),
            ("x-overflow", s("reject-publish")),
        ],
    )
    .await;
    declare(&ch, "open", &[]).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    let cc = lapin::types::AMQPValue::FieldArray(vec![s("open")].into());
    let props = BasicProperties::default().with_headers(table(&[("CC", cc)]));
    let confirm = ch
        .basic_publish("", "full", BasicPublishOptions::default(), b"m", props)
        .await
        .expect("basic.publish");
    assert!(within("a confirm", confirm)
        .await
        .expect("confirmation")
        .is_nack());
    assert_eq!(
        drain(&ch, "open").await,
        vec!["m"],
        "the other queue still took it"
    );
    broker.finish().await;
}

#[tokio::test]
async fn the_consumer_side_is_unaffected_by_reject_publish() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(
        &ch,
        "q",
        &[
            ("x-max-length", int(1)),
            ("x-overflow", s("reject-publish")),
        ],
    )
    .await;
    ch.basic_qos(1, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = consume_with(&ch, "q", "c", false, &[])
        .await
        .expect("consume");
    for body in ["a", "b", "c"] {
        publish(&ch, "q", body).await;
    }
    let a = next(&mut consumer).await;
    assert_eq!(text(&a), "a");
    a.acker.ack(BasicAckOptions::default()).await.expect("ack");
    assert_eq!(
        text(&next(&mut consumer).await),
        "b",
        "c was refused while b waited"
    );
    broker.finish().await;
}

// ---------------------------------------------------------------------------------------------
// The confirm frames themselves, below lapin

/// Applies acks and nacks (with `multiple`) to publishes 1..=n; returns each one's outcome,
/// failing if any publish is confirmed twice or a frame confirms nothing.
fn outcomes(n: u64, frames: &[(bool, u64, bool)]) -> Vec<Option<bool>> {
    let mut out = vec![None; n as usize];
    for &(ack, tag, multiple) in frames {
        let first = if multiple { 1 } else { tag };
        let mut confirmed_any = false;
        for t in first..=tag {
            let slot = &mut out[(t - 1) as usize];
            if slot.is_none() {
                *slot = Some(ack);
                confirmed_any = true;
            } else if !multiple {
                panic!("publish {t} confirmed twice: {frames:?}");
            }
        }
        assert!(confirmed_any, "a confirm that confirms nothing: {frames:?}");
    }
    out
}

#[tokio::test]
async fn acks_and_nacks_in_one_batch_never_ack_a_rejected_publish() {
    let broker = TestBroker::start().await;
    let mut raw = broker.raw().await;
    raw.handshake().await;
    raw.open_channel(1).await;
    let mut args = FieldTable::new();
    args.insert(ShortStr::from("x-max-length"), FieldValue::I32(2));
    args.insert(
        ShortStr::from("x-overflow"),
        FieldValue::from("reject-publish"),
    );
    for (name, arguments) in [("limited", args), ("open", FieldTable::new())] {
        let declare = queue::Declare {
            queue: ShortStr::from(name),
            arguments,
            ..Default::default()
        };
        raw.send_method(1, declare).await;
        raw.expect_method().await;
    }
    raw.send_method(1, confirm::Select { nowait: false }).await;
    raw.expect_method().await;
    // limited, limited, limited (refused), open, limited (refused), limited (refused), open
    let keys = [
        "limited", "limited", "limited", "open", "limited", "limited", "open",
    ];
    let expected = [true, true, false, true, false, false, true];
    let mut out = BytesMut::new();
    for key in keys {
        let publish = basic::Publish {
            routing_key: ShortStr::from(key),
            ..Default::default()
        };
        encode_frame(
            &Frame::Method {
                channel: 1,
                method: publish.into(),
            },
            &mut out,
        );
        let header = ContentHeader {
            class_id: 60,
            weight: 0,
            body_size: 1,
            properties: Default::default(),
        };
        encode_frame(&Frame::Header { channel: 1, header }, &mut out);
        encode_frame(
            &Frame::Body {
                channel: 1,
                payload: bytes::Bytes::from_static(b"x"),
            },
            &mut out,
        );
    }
    raw.send_bytes(&out).await;
    let mut frames = Vec::new();
    while outcomes(keys.len() as u64, &frames)
        .iter()
        .any(Option::is_none)
    {
        match raw.expect_method().await {
            (1, Method::BasicAck(a)) => frames.push((true, a.delivery_tag, a.multiple)),
            (1, Method::BasicNack(n)) => {
                assert!(!n.requeue);
                frames.push((false, n.delivery_tag, n.multiple))
            }
            other => panic!("expected a confirm, got {other:?}"),
        }
    }
    let got: Vec<bool> = outcomes(keys.len() as u64, &frames)
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(got, expected, "frames: {frames:?}");
    drop(raw);
    broker.finish().await;
}
