//! Publisher confirms and transactions against a real broker, through lapin and raw frames.
//! Reply codes and texts, and what a transaction does with acks, were checked with pika against
//! RabbitMQ 3.10.

use crate::common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::publisher_confirm::Confirmation;
use lapin::types::FieldTable;
use lapin::BasicProperties;
use warren_protocol::{basic, confirm, ContentHeader, Frame, Method};

// ---------------------------------------------------------------------------------------------
// Helpers

// ---------------------------------------------------------------------------------------------
// Publisher confirms

#[tokio::test]
async fn publish_after_confirm_select_is_acked() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    assert_eq!(
        publish_confirm(&ch, "q", b"hello").await,
        Confirmation::Ack(None)
    );
    assert_eq!(ready_count(&ch, "q").await, 1);
    broker.finish().await;
}

#[tokio::test]
async fn thousand_publishes_in_confirm_mode_are_all_acked_routable_or_not() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    let mut pending = Vec::new();
    for i in 0..1000u32 {
        // Every third message has no route; unroutable messages are confirmed too.
        let routing_key = if i % 3 == 0 { "nowhere" } else { "q" };
        let confirm = ch
            .basic_publish(
                "",
                routing_key,
                BasicPublishOptions::default(),
                &i.to_be_bytes(),
                BasicProperties::default(),
            )
            .await
            .expect("publish");
        pending.push(confirm);
    }
    for (i, confirm) in pending.into_iter().enumerate() {
        let confirmation = within("a confirm", confirm).await.expect("confirm");
        assert_eq!(confirmation, Confirmation::Ack(None), "publish {i}");
    }
    let routed = (0..1000).filter(|i| i % 3 != 0).count() as u32;
    assert_eq!(ready_count(&ch, "q").await, routed);
    let returned = ch.wait_for_confirms().await.expect("wait_for_confirms");
    assert!(returned.is_empty(), "nothing was mandatory: {returned:?}");
    broker.finish().await;
}

#[tokio::test]
async fn mandatory_unroutable_publish_in_confirm_mode_is_returned_then_acked() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    let confirmation = ch
        .basic_publish(
            "",
            "nowhere",
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"bounce",
            BasicProperties::default().with_correlation_id("c-1".into()),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    // lapin attaches a basic.return to the ack only if the return arrived first.
    assert!(confirmation.is_ack(), "{confirmation:?}");
    let returned = confirmation
        .take_message()
        .expect("basic.return before basic.ack");
    assert_eq!(returned.reply_code, 312);
    assert_eq!(returned.reply_text.as_str(), "NO_ROUTE");
    assert_eq!(returned.delivery.routing_key.as_str(), "nowhere");
    assert_eq!(returned.delivery.data, b"bounce");
    assert_eq!(
        returned
            .delivery
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.as_str()),
        Some("c-1")
    );
    broker.finish().await;
}

#[tokio::test]
async fn confirm_is_sent_only_after_the_last_body_frame_arrived() {
    let broker = TestBroker::start().await;
    let mut raw = broker.raw().await;
    raw.handshake().await;
    raw.open_channel(1).await;
    raw.send_method(1, confirm::Select { nowait: false }).await;
    let (_, ok) = raw.expect_method().await;
    assert!(matches!(ok, Method::ConfirmSelectOk(_)), "{ok:?}");
    let publish = || basic::Publish {
        routing_key: "nowhere".into(),
        ..Default::default()
    };
    let header = |size: u64| Frame::Header {
        channel: 1,
        header: ContentHeader {
            class_id: 60,
            weight: 0,
            body_size: size,
            properties: Default::default(),
        },
    };
    raw.send_method(1, publish()).await;
    raw.send(header(10)).await;
    raw.send(Frame::Body {
        channel: 1,
        payload: bytes::Bytes::from_static(b"01234"),
    })
    .await;
    // Half the body is in: the next thing on the wire must be this open-ok, not an ack.
    raw.open_channel(2).await;
    raw.send(Frame::Body {
        channel: 1,
        payload: bytes::Bytes::from_static(b"56789"),
    })
    .await;
    let (ch, ack) = raw.expect_method().await;
    assert_eq!(ch, 1);
    let Method::BasicAck(ack) = ack else {
        panic!("expected basic.ack, got {ack:?}")
    };
    assert_eq!((ack.delivery_tag, ack.multiple), (1, false));
    raw.send_method(1, publish()).await;
    raw.send(header(0)).await;
    let (_, ack) = raw.expect_method().await;
    let Method::BasicAck(ack) = ack else {
        panic!("expected basic.ack, got {ack:?}")
    };
    assert_eq!((ack.delivery_tag, ack.multiple), (2, false));
    drop(raw);
    broker.finish().await;
}

/// amqp091-go writes basic.publish, its content header and its body in three writes, so the
/// broker often reads them one at a time, and a persistent message in a durable queue is
/// confirmed only once the journal has synced it: the sync may land while the connection waits
/// for the next frame, just before it goes back to wait, or between two publishes. Another
/// connection's persistent publishes make the journal sync at moments unrelated to this one's.
/// Every publish is confirmed, one at a time, whatever the pauses between its frames.
#[tokio::test]
async fn split_frame_persistent_publishes_are_each_confirmed() {
    let broker = TestBroker::start().await;
    let (_other_conn, other) = broker.channel().await;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    other
        .queue_declare("split.other", durable, FieldTable::default())
        .await
        .expect("declare");
    let background = tokio::spawn(async move {
        loop {
            let props = BasicProperties::default().with_delivery_mode(2);
            let sent = other
                .basic_publish("", "split.other", Default::default(), b"x", props)
                .await;
            if sent.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_micros(300)).await;
        }
    });
    let mut raw = broker.raw().await;
    raw.handshake().await;
    raw.open_channel(1).await;
    let declare = warren_protocol::queue::Declare {
        queue: "split".into(),
        durable: true,
        ..Default::default()
    };
    raw.send_method(1, declare).await;
    let (_, ok) = raw.expect_method().await;
    assert!(matches!(ok, Method::QueueDeclareOk(_)), "{ok:?}");
    raw.send_method(1, confirm::Select { nowait: false }).await;
    let (_, ok) = raw.expect_method().await;
    assert!(matches!(ok, Method::ConfirmSelectOk(_)), "{ok:?}");
    let body = bytes::Bytes::from_static(b"persistent");
    for tag in 1..=60u64 {
        // 0, 0.3, 0.6, ... 1.5 ms between frames: around one journal sync on a quiet disk.
        let pause = std::time::Duration::from_micros((tag % 6) * 300);
        let publish = basic::Publish {
            routing_key: "split".into(),
            ..Default::default()
        };
        raw.send_method(1, publish).await;
        tokio::time::sleep(pause).await;
        raw.send(Frame::Header {
            channel: 1,
            header: ContentHeader {
                class_id: 60,
                weight: 0,
                body_size: body.len() as u64,
                properties: warren_protocol::BasicProperties {
                    delivery_mode: Some(2),
                    ..Default::default()
                },
            },
        })
        .await;
        tokio::time::sleep(pause).await;
        raw.send(Frame::Body {
            channel: 1,
            payload: body.clone(),
        })
        .await;
        let (ch, ack) = raw.expect_method().await;
        assert_eq!(ch, 1);
        let Method::BasicAck(ack) = ack else {
            panic!("expected basic.ack {tag}, got {ack:?}")
        };
        assert_eq!((ack.delivery_tag, ack.multiple), (tag, false));
    }
    background.abort();
    drop(raw);
    broker.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Transactions: publishes

#[tokio::test]
async fn transactional_publishes_are_invisible_until_commit() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    ch.tx_select().await.expect("tx.select");
    publish_confirm(&ch, "q", b"1").await;
    publish_confirm(&ch, "q", b"2").await;
    let observer = conn.create_channel().await.expect("channel");
    // A round trip on the transactional channel: both publishes were handled, and held.
    assert_eq!(ready_count(&ch, "q").await, 0);
    assert_eq!(ready_count(&observer, "q").await, 0);
    ch.tx_commit().await.expect("tx.commit");
    assert_eq!(ready_count(&observer, "q").await, 2);
    assert_eq!(get_one(&observer, "q").await.delivery.data, b"1");
    assert_eq!(get_one(&observer, "q").await.delivery.data, b"2");
    observer
        .basic_ack(0, BasicAckOptions { multiple: true })
        .await
        .expect("ack");
    // The channel stays transactional: the next publish waits for the next commit.
    publish_confirm(&ch, "q", b"3").await;
    assert_eq!(ready_count(&ch, "q").await, 0);
    ch.tx_commit().await.expect("tx.commit");
    assert_eq!(ready_count(&ch, "q").await, 1);
    broker.finish().await;
}

#[tokio::test]
async fn rollback_discards_transactional_publishes() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    ch.tx_select().await.expect("tx.select");
    publish_confirm(&ch, "q", b"discarded").await;
    ch.tx_rollback().await.expect("tx.rollback");
    ch.tx_commit().await.expect("empty commit");
    assert_eq!(ready_count(&ch, "q").await, 0);
    publish_confirm(&ch, "q", b"kept").await;
    ch.tx_commit().await.expect("tx.commit");
    assert_eq!(get_one(&ch, "q").await.delivery.data, b"kept");
    ch.basic_ack(0, BasicAckOptions { multiple: true })
        .await
        .expect("ack");
    ch.tx_commit().await.expect("tx.commit");
    broker.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Transactions: acknowledgements

#[tokio::test]
async fn ack_inside_a_transaction_frees_prefetch_only_on_commit() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    for body in ["1", "2"] {
        publish_confirm(&ch, "q", body.as_bytes()).await;
    }
    ch.basic_qos(1, BasicQosOptions::default())
        .await
        .expect("qos");
    ch.tx_select().await.expect("tx.select");
    let mut consumer = ch
        .basic_consume(
            "q",
            "c",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let first = next(&mut consumer).await;
    assert_eq!(first.data, b"1");
    first.ack(BasicAckOptions::default()).await.expect("ack");
    // Not committed: the ack has not freed the consumer's one prefetch slot.
    assert_eq!(ready_count(&ch, "q").await, 1);
    if let Some(Some(d)) = futures_lite::future::poll_once(consumer.next()).await {
        panic!("delivered before commit: {d:?}");
    }
    ch.tx_commit().await.expect("tx.commit");
    let second = next(&mut consumer).await;
    assert_eq!(second.data, b"2");
    assert!(
        !second.redelivered,
        "the first ack stood; nothing was requeued"
    );
    second.ack(BasicAckOptions::default()).await.expect("ack");
    ch.tx_commit().await.expect("tx.commit");
    assert_eq!(ready_count(&ch, "q").await, 0);
    broker.finish().await;
}

#[tokio::test]
async fn rollback_leaves_acks_undone_and_the_tags_can_be_acked_again() {
    // RabbitMQ: ack, rollback, ack the same tag again, commit → the queue is empty (pika).
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    publish_confirm(&ch, "q", b"1").await;
    publish_confirm(&ch, "q", b"2").await;
    let one = get_one(&ch, "q").await.delivery.delivery_tag;
    let two = get_one(&ch, "q").await.delivery.delivery_tag;
    ch.tx_select().await.expect("tx.select");
    ch.basic_ack(two, BasicAckOptions { multiple: true })
        .await
        .expect("ack");
    ch.tx_rollback().await.expect("tx.rollback");
    ch.basic_ack(one, BasicAckOptions::default())
        .await
        .expect("ack");
    ch.tx_commit().await.expect("tx.commit");
    // Only '1' was acked; closing the channel requeues '2'.
    ch.close(200, "bye").await.expect("close");
    let other = conn.create_channel().await.expect("channel");
    let left = get_one(&other, "q").await.delivery;
    assert_eq!((left.data.as_slice(), left.redelivered), (&b"2"[..], true));
    assert!(other
        .basic_get("q", BasicGetOptions::default())
        .await
        .expect("get")
        .is_none());
    left.ack(BasicAckOptions::default()).await.expect("ack");
    broker.finish().await;
}

#[tokio::test]
async fn nack_with_requeue_inside_a_transaction_requeues_on_commit() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    publish_confirm(&ch, "q", b"again").await;
    let tag = get_one(&ch, "q").await.delivery.delivery_tag;
    ch.tx_select().await.expect("tx.select");
    ch.basic_nack(
        tag,
        BasicNackOptions {
            multiple: false,
            requeue: true,
        },
    )
    .await
    .expect("nack");
    assert_eq!(ready_count(&ch, "q").await, 0, "held until commit");
    ch.tx_commit().await.expect("tx.commit");
    let back = get_one(&ch, "q").await.delivery;
    assert_eq!(
        (back.data.as_slice(), back.redelivered),
        (&b"again"[..], true)
    );
    back.ack(BasicAckOptions::default()).await.expect("ack");
    ch.tx_commit().await.expect("tx.commit");
    broker.finish().await;
}

#[tokio::test]
async fn uncommitted_acks_are_requeued_when_the_channel_closes() {
    // RabbitMQ: get, tx.select, ack, channel.close → the message is back (checked with pika).
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    publish_confirm(&ch, "q", b"kept").await;
    let tag = get_one(&ch, "q").await.delivery.delivery_tag;
    ch.tx_select().await.expect("tx.select");
    ch.basic_ack(tag, BasicAckOptions::default())
        .await
        .expect("ack");
    ch.close(200, "bye").await.expect("close");
    let other = conn.create_channel().await.expect("channel");
    assert_eq!(ready_count(&other, "q").await, 1);
    broker.finish().await;
}

#[tokio::test]
async fn unknown_delivery_tag_inside_a_transaction_closes_the_channel_406_at_once() {
    // RabbitMQ checks the tag when the ack arrives, not at tx.commit (checked with pika).
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    ch.tx_select().await.expect("tx.select");
    let closed = on_channel_close(&ch);
    ch.basic_ack(5, BasicAckOptions::default())
        .await
        .expect("ack is sent");
    assert_eq!(
        closed_with(closed).await,
        (406, "PRECONDITION_FAILED - unknown delivery tag 5".into())
    );
    assert!(conn.status().connected());
    broker.finish().await;
}

#[tokio::test]
async fn acking_a_tag_twice_inside_a_transaction_closes_the_channel_406() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    declare(&ch, "q", &[]).await;
    publish_confirm(&ch, "q", b"x").await;
    let tag = get_one(&ch, "q").await.delivery.delivery_tag;
    ch.tx_select().await.expect("tx.select");
    let closed = on_channel_close(&ch);
    for _ in 0..2 {
        ch.basic_ack(tag, BasicAckOptions::default())
            .await
            .expect("ack is sent");
    }
    assert_eq!(
        closed_with(closed).await,
        (
            406,
            format!("PRECONDITION_FAILED - unknown delivery tag {tag}")
        )
    );
    broker.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Mode errors

#[tokio::test]
async fn commit_or_rollback_without_tx_select_closes_the_channel_406() {
    let broker = TestBroker::start().await;
    let (conn, ch) = broker.channel().await;
    let err = ch.tx_commit().await.expect_err("not transactional");
    assert_eq!(
        amqp_error(&err),
        Some((
            406,
            "PRECONDITION_FAILED - channel is not transactional".into()
        ))
    );
    let ch = conn.create_channel().await.expect("connection lives on");
    let err = ch.tx_rollback().await.expect_err("not transactional");
    assert_eq!(
        amqp_error(&err),
        Some((
            406,
            "PRECONDITION_FAILED - channel is not transactional".into()
        ))
    );
    broker.finish().await;
}

#[tokio::test]
async fn confirm_select_on_a_transactional_channel_closes_it_406() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    ch.tx_select().await.expect("tx.select");
    let err = ch
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect_err("tx channel");
    assert_eq!(
        amqp_error(&err),
        Some((
            406,
            "PRECONDITION_FAILED - cannot switch from tx to confirm mode".into()
        ))
    );
    broker.finish().await;
}

#[tokio::test]
async fn tx_select_on_a_confirm_channel_closes_it_406() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    let err = ch.tx_select().await.expect_err("confirm channel");
    assert_eq!(
        amqp_error(&err),
        Some((
            406,
            "PRECONDITION_FAILED - cannot switch from confirm to tx mode".into()
        ))
    );
    broker.finish().await;
}

/// tx.commit-ok, like a confirm, promises persistent messages in durable queues are on disk:
/// it waits for the journal, and the committed messages are there.
#[tokio::test]
async fn commit_of_persistent_messages_to_a_durable_queue_completes_after_the_journal() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare("tx.durable", durable, FieldTable::default())
        .await
        .expect("declare");
    ch.tx_select().await.expect("tx.select");
    for i in 0..50u8 {
        let props = BasicProperties::default().with_delivery_mode(2);
        ch.basic_publish(
            "",
            "tx.durable",
            BasicPublishOptions::default(),
            &[i],
            props,
        )
        .await
        .expect("publish");
    }
    within("tx.commit-ok", ch.tx_commit())
        .await
        .expect("commit");
    assert_eq!(ready_count(&ch, "tx.durable").await, 50);
    // A second, empty commit right after still gets its reply.
    within("the empty commit's reply", ch.tx_commit())
        .await
        .expect("commit");
    broker.finish().await;
}
