//! What more client libraries and hostile peers hit (issue 11), in raw frames: RabbitMQ 3.10's
//! frame-size allowance, field type `L`, crossing channel.close, channel.flow, channel numbers
//! and counts, tune-ok's channel_max, the handshake timeout, and the limits (connections, disk
//! free alarm, bodies being received counted by the memory alarm). The client libraries that
//! showed each item run the same scenarios in interop/python (amqpstorm, rabbitpy, aio-pika).

mod common;

use bytes::Bytes;
use common::*;
use std::time::{Duration, Instant};
use warren::Config;
use warren_protocol::{
    basic, channel, connection, queue, BasicProperties, ContentHeader, FieldTable, FieldValue,
    Frame, Method, ReplyCode, ShortStr,
};

fn header(body_size: u64, properties: BasicProperties) -> ContentHeader {
    ContentHeader {
        class_id: 60,
        weight: 0,
        body_size,
        properties,
    }
}

async fn declare_queue(raw: &mut RawClient, ch: u16, name: &str) {
    raw.send_method(
        ch,
        queue::Declare {
            queue: ShortStr::try_new(name).expect("short name"),
            ..Default::default()
        },
    )
    .await;
    let (_, m) = raw.expect_method().await;
    assert!(matches!(m, Method::QueueDeclareOk(_)), "{m:?}");
}

/// Publishes a one-byte message to the exchange `missing` on channel `ch`: the broker answers
/// with channel.close 404.
async fn publish_to_missing_exchange(raw: &mut RawClient, ch: u16) {
    raw.send_method(
        ch,
        basic::Publish {
            exchange: "missing".into(),
            ..Default::default()
        },
    )
    .await;
    raw.send(Frame::Header {
        channel: ch,
        header: header(1, BasicProperties::NONE),
    })
    .await;
    raw.send(Frame::Body {
        channel: ch,
        payload: Bytes::from_static(b"x"),
    })
    .await;
}

/// Publishes `body` to queue `q` in body frames of at most `payload` bytes each.
async fn publish_in_frames(
    raw: &mut RawClient,
    ch: u16,
    q: &str,
    body: &[u8],
    payload: usize,
    properties: BasicProperties,
) {
    raw.send_method(
        ch,
        basic::Publish {
            routing_key: ShortStr::try_new(q).expect("short name"),
            ..Default::default()
        },
    )
    .await;
    raw.send(Frame::Header {
        channel: ch,
        header: header(body.len() as u64, properties),
    })
    .await;
    for piece in body.chunks(payload) {
        raw.send(Frame::Body {
            channel: ch,
            payload: Bytes::copy_from_slice(piece),
        })
        .await;
    }
}

/// basic.get on `q`: the message's properties and body.
async fn get(raw: &mut RawClient, ch: u16, q: &str) -> (BasicProperties, Vec<u8>) {
    raw.send_method(
        ch,
        basic::Get {
            queue: ShortStr::try_new(q).expect("short name"),
            no_ack: true,
            ..Default::default()
        },
    )
    .await;
    let (_, m) = raw.expect_method().await;
    assert!(matches!(m, Method::BasicGetOk(_)), "{m:?}");
    let Some(Frame::Header { header, .. }) = raw.recv().await else {
        panic!("no content header after get-ok")
    };
    let mut body = Vec::new();
    while (body.len() as u64) < header.body_size {
        match raw.recv().await {
            Some(Frame::Body { payload, .. }) => {
                assert!(
                    payload.len() + 8 <= raw.frame_max as usize,
                    "the broker's frames stay within frame_max"
                );
                body.extend_from_slice(&payload)
            }
            other => panic!("expected a body frame, got {other:?}"),
        }
    }
    (header.properties, body)
}

fn caps(names: &[&str]) -> FieldTable {
    names
        .iter()
        .map(|n| {
            (
                ShortStr::try_new(*n).expect("short"),
                FieldValue::Bool(true),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Frame size: a payload of frame_max bytes (amqpstorm, rabbitpy)

#[tokio::test]
async fn body_frames_with_a_payload_of_frame_max_are_accepted() {
    let broker = TestBroker::start().await;
    let mut raw = broker.raw().await;
    raw.handshake().await;
    raw.open_channel(1).await;
    declare_queue(&mut raw, 1, "big").await;
    let frame_max = raw.frame_max as usize;
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    // Frames of frame_max + 8 bytes, as amqpstorm and rabbitpy write them.
    publish_in_frames(&mut raw, 1, "big", &body, frame_max, BasicProperties::NONE).await;
    let (_, got) = get(&mut raw, 1, "big").await;
    assert_eq!(got.len(), body.len());
    assert!(got == body, "the body arrives unchanged");
}

#[tokio::test]
async fn a_payload_one_byte_over_frame_max_is_a_frame_error_501() {
    let broker = TestBroker::start().await;
    let mut raw = broker.raw().await;
    raw.handshake().await;
    raw.open_channel(1).await;
    let frame_max = raw.frame_max;
    let body = vec![0u8; frame_max as usize + 1];
    publish_in_frames(&mut raw, 1, "q", &body, body.len(), BasicProperties::NONE).await;
    let text = raw.expect_connection_close(ReplyCode::FrameError).await;
    assert!(
        text.contains(&format!(
            "payload of {} bytes is larger than frame_max {frame_max}",
            frame_max + 1
        )),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Field type `L` (pika 1.3) and every letter RabbitMQ's parser knows

#[tokio::test]
async fn every_field_type_rabbitmq_reads_comes_back_unchanged() {
    let broker = TestBroker::start().await;
    let mut raw = broker.raw().await;
    raw.handshake().await;
    raw.open_channel(1).await;
    declare_queue(&mut raw, 1, "h").await;
    let table: FieldTable = [
        ("L", FieldValue::I64Upper(-5)),
        ("l", FieldValue::I64(-5)),
        ("t", FieldValue::Bool(true)),
        ("b", FieldValue::I8(-1)),
        ("B", FieldValue::U8(255)),
        ("s", FieldValue::I16(-2)),
        ("u", FieldValue::U16(65535)),
        ("I", FieldValue::I32(-3)),
        ("i", FieldValue::U32(4_000_000_000)),
        ("f", FieldValue::F32(1.5)),
        ("d", FieldValue::F64(-0.25)),
        ("S", FieldValue::from("text")),
        ("x", FieldValue::ByteArray(Bytes::from_static(&[0, 1, 255]))),
        ("T", FieldValue::Timestamp(1_700_000_000)),
        ("V", FieldValue::Void),
        (
            "A",
            FieldValue::Array(vec![FieldValue::I64Upper(7), FieldValue::Void]),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (ShortStr::from(k), v))
    .collect();
    let properties = BasicProperties {
        headers: Some(table.clone()),
        ..BasicProperties::NONE
    };
    publish_in_frames(&mut raw, 1, "h", b"x", 1, properties).await;
    let (props, _) = get(&mut raw, 1, "h").await;
    assert_eq!(props.headers, Some(table), "same letters, same values");
}

// ---------------------------------------------------------------------------------------------
// 2. Crossing channel.close (amqp091-go)

#[tokio::test]
async fn crossing_channel_close_gets_close_ok_and_the_connection_lives_on() {
    let broker = TestBroker::start().await;
    let mut raw = broker.raw().await;
    raw.handshake().await;
    raw.open_channel(1).await;
    raw.open_channel(2).await;
    // Publish to a missing exchange and close the channel at once, before the broker's
    // channel.close arrives.
    publish_to_missing_exchange(&mut raw, 1).await;
    raw.send_method(
        1,
        channel::Close {
            reply_code: 200,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        },
    )
    .await;
    // Anything else on the closing channel is ignored, not answered and not an error.
    raw.send_method(1, basic::Qos::default()).await;
    let (ch, m) = raw.expect_method().await;
    assert_eq!(ch, 1);
    let Method::ChannelClose(close) = m else {
        panic!("expected the broker's channel.close, got {m:?}")
    };
    assert_eq!(close.reply_code, 404);
    assert_eq!(
        close.reply_text.as_str(),
        "NOT_FOUND - no exchange 'missing' in vhost '/'"
    );
    let (ch, m) = raw.expect_method().await;
    assert_eq!(ch, 1);
    assert!(
        matches!(m, Method::ChannelCloseOk(_)),
        "our close is answered: {m:?}"
    );
    // Our close-ok for the broker's close: no 504, the connection stays.
    raw.send_method(1, channel::CloseOk {}).await;
    declare_queue(&mut raw, 2, "still-here").await;
    // The channel number is free again.
    raw.open_channel(1).await;
    declare_queue(&mut raw, 1, "reopened").await;
}

/// The other order of a crossing close (amqpstorm and aio-pika send it when their I/O thread
/// answers the broker's close before the application's own close goes out): close-ok first,
/// which frees the channel, then the client's channel.close. It is answered with close-ok and
/// the connection lives on, instead of a 504 for a frame on an unopened channel.
#[tokio::test]
async fn a_late_channel_close_after_close_ok_is_answered_and_the_connection_lives_on() {
    let broker = TestBroker::start().await;
    let mut raw = broker.raw().await;
    raw.handshake().await;
    raw.open_channel(1).await;
    raw.open_channel(2).await;
    publish_to_missing_exchange(&mut raw, 1).await;
    let (ch, m) = raw.expect_method().await;
    assert_eq!(ch, 1);
    assert!(matches!(m, Method::ChannelClose(_)), "{m:?}");
    raw.send_method(1, channel::CloseOk {}).await;
    raw.send_method(
        1,
        channel::Close {
            reply_code: 200,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        },
    )
    .await;
    let (ch, m) = raw.expect_method().await;
    assert_eq!(ch, 1);
    assert!(
        matches!(m, Method::ChannelCloseOk(_)),
        "the late close is answered: {m:?}"
    );
    declare_queue(&mut raw, 2, "still-here").await;
}

// ---------------------------------------------------------------------------------------------
// 3. channel.flow

#[tokio::test]
async fn channel_flow_active_false_is_not_implemented_540_by_default() {
    let broker = TestBroker::start().await;
    let mut raw = broker.raw().await;
    raw.handshake().await;
    raw.open_channel(1).await;
    raw.send_method(1, channel::Flow { active: true }).await;
    let (_, m) = raw.expect_method().await;
    assert!(
        matches!(m, Method::ChannelFlowOk(channel::FlowOk { active: true })),
        "{m:?}"
    );
    raw.send_method(1, channel::Flow { active: false }).await;
    let text = raw.expect_connection_close(ReplyCode::NotImplemented).await;
    assert_eq!(text, "NOT_IMPLEMENTED - active=false");
}

#[tokio::test]
async fn channel_flow_active_false_is_honoured_when_configured() {
    let broker = TestBroker::start_with(Config {
        honour_channel_flow: true,
        ..Default::default()
    })
    .await;
    let mut raw = broker.raw().await;
    raw.handshake().await;
    raw.open_channel(1).await;
    raw.send_method(1, channel::Flow { active: false }).await;
    let (_, m) = raw.expect_method().await;
    assert!(
        matches!(m, Method::ChannelFlowOk(channel::FlowOk { active: false })),
        "{m:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Channel numbers up to 65535; only the count is limited

#[tokio::test]
async fn any_channel_number_opens_and_the_count_is_limited_530() {
    let broker = TestBroker::start_with(Config {
        channel_max: 2,
        ..Default::default()
    })
    .await;
    let mut raw = broker.raw().await;
    raw.handshake().await;
    raw.open_channel(65535).await;
    declare_queue(&mut raw, 65535, "on-65535").await;
    raw.open_channel(3).await;
    raw.send_method(7, channel::Open::default()).await;
    let text = raw.expect_connection_close(ReplyCode::NotAllowed).await;
    assert_eq!(
        text,
        "NOT_ALLOWED - number of channels opened (2) has reached the negotiated channel_max (2)"
    );
}

#[tokio::test]
async fn a_closed_channel_frees_its_place_in_the_count() {
    let broker = TestBroker::start_with(Config {
        channel_max: 1,
        ..Default::default()
    })
    .await;
    let mut raw = broker.raw().await;
    raw.handshake().await;
    for id in [10, 20, 30] {
        raw.open_channel(id).await;
        raw.send_method(
            id,
            channel::Close {
                reply_code: 200,
                reply_text: "".into(),
                class_id: 0,
                method_id: 0,
            },
        )
        .await;
        let (_, m) = raw.expect_method().await;
        assert!(matches!(m, Method::ChannelCloseOk(_)), "{m:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// 5. tune-ok with a channel_max above the server's

async fn tune_ok_with_channel_max(channel_max: u16) -> String {
    let broker = TestBroker::start().await;
    let mut raw = broker.raw().await;
    raw.send_bytes(b"AMQP\x00\x00\x09\x01").await;
    raw.expect_method().await;
    raw.send_method(0, start_ok("guest", "guest")).await;
    let (_, tune) = raw.expect_method().await;
    let Method::ConnectionTune(tune) = tune else {
        panic!("expected tune, got {tune:?}")
    };
    raw.send_method(
        0,
        connection::TuneOk {
            channel_max,
            frame_max: tune.frame_max,
            heartbeat: 0,
        },
    )
    .await;
    loop {
        match raw.recv().await {
            Some(Frame::Method {
                channel: 0,
                method: Method::ConnectionClose(c),
            }) => {
                assert_eq!(c.reply_code, 530, "{}", c.reply_text);
                assert_eq!(
                    (c.class_id, c.method_id),
                    (10, 30),
                    "caused by connection.tune"
                );
                return c.reply_text.to_string();
            }
            Some(_) => continue,
            None => panic!("socket closed without connection.close"),
        }
    }
}

#[tokio::test]
async fn tune_ok_channel_max_above_the_servers_is_refused_530() {
    let max = Config::default().channel_max;
    assert_eq!(
        tune_ok_with_channel_max(max + 1).await,
        format!(
            "NOT_ALLOWED - negotiated channel_max = {} is higher than the maximum allowed value ({max})",
            max + 1
        )
    );
    assert_eq!(
        tune_ok_with_channel_max(0).await,
        format!(
            "NOT_ALLOWED - negotiated channel_max = 0 (no limit) is higher than the maximum allowed value ({max})"
        )
    );
}

// ---------------------------------------------------------------------------------------------
// Handshake timeout: silent and slowloris peers

#[tokio::test]
async fn a_silent_peer_is_dropped_after_the_handshake_timeout() {
    let timeout = Duration::from_millis(400);
    let broker = TestBroker::start_with(Config {
        handshake_timeout: timeout,
        ..Default::default()
    })
    .await;
    // Nothing at all after connecting.
    let started = Instant::now();
    let mut raw = broker.raw().await;
    raw.read_to_end().await;
    assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
    // The protocol header, connection.start, then silence.
    let started = Instant::now();
    let mut raw = broker.raw().await;
    raw.send_bytes(b"AMQP\x00\x00\x09\x01").await;
    let (_, start) = raw.expect_method().await;
    assert!(matches!(start, Method::ConnectionStart(_)));
    assert!(raw.recv().await.is_none(), "socket closed");
    assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_slowloris_peer_cannot_stretch_the_handshake() {
    let timeout = Duration::from_millis(500);
    let broker = TestBroker::start_with(Config {
        handshake_timeout: timeout,
        ..Default::default()
    })
    .await;
    let mut raw = broker.raw().await;
    let started = Instant::now();
    raw.send_bytes(b"AMQP\x00\x00\x09\x01").await;
    // One byte of start-ok every 50 ms: each read succeeds, the deadline still holds.
    let mut out = bytes::BytesMut::new();
    warren_protocol::encode_method(0, &start_ok("guest", "guest").into(), &mut out);
    let mut closed = false;
    for b in out.iter().cycle().take(200) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        use tokio::io::AsyncWriteExt;
        if raw.stream.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
    }
    let elapsed = started.elapsed();
    assert!(closed, "the broker closed the socket");
    assert!(
        elapsed >= timeout && elapsed < timeout * 6,
        "closed after {elapsed:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Limits: connections, disk free alarm, bodies being received

#[tokio::test]
async fn connections_above_connection_max_are_refused_530() {
    let broker = TestBroker::start_with(Config {
        connection_max: 2,
        ..Default::default()
    })
    .await;
    let mut first = broker.raw().await;
    first.handshake().await;
    let mut second = broker.raw().await;
    second.handshake().await;
    let mut third = broker.raw().await;
    third.send_bytes(b"AMQP\x00\x00\x09\x01").await;
    third.expect_method().await;
    third.send_method(0, start_ok("guest", "guest")).await;
    let (_, tune) = third.expect_method().await;
    let Method::ConnectionTune(tune) = tune else {
        panic!("{tune:?}")
    };
    third
        .send_method(
            0,
            connection::TuneOk {
                channel_max: tune.channel_max,
                frame_max: tune.frame_max,
                heartbeat: 0,
            },
        )
        .await;
    third
        .send_method(
            0,
            connection::Open {
                virtual_host: "/".into(),
                ..Default::default()
            },
        )
        .await;
    let text = third.expect_connection_close(ReplyCode::NotAllowed).await;
    assert_eq!(
        text,
        "NOT_ALLOWED - connection refused: node connection limit (2) is reached"
    );
    // A connection that closes gives its place back.
    drop(first);
    within("a place to free up", async {
        loop {
            let mut again = broker.raw().await;
            again.send_bytes(b"AMQP\x00\x00\x09\x01").await;
            again.expect_method().await;
            again.send_method(0, start_ok("guest", "guest")).await;
            again.expect_method().await;
            again
                .send_method(
                    0,
                    connection::TuneOk {
                        channel_max: tune.channel_max,
                        frame_max: tune.frame_max,
                        heartbeat: 0,
                    },
                )
                .await;
            again
                .send_method(
                    0,
                    connection::Open {
                        virtual_host: "/".into(),
                        ..Default::default()
                    },
                )
                .await;
            if let (_, Method::ConnectionOpenOk(_)) = again.expect_method().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

/// Waits for connection.blocked and returns its reason.
async fn expect_blocked(raw: &mut RawClient) -> String {
    loop {
        match raw.recv().await {
            Some(Frame::Method {
                channel: 0,
                method: Method::ConnectionBlocked(b),
            }) => return b.reason.to_string(),
            Some(_) => continue,
            None => panic!("socket closed before connection.blocked"),
        }
    }
}

#[tokio::test]
async fn below_disk_free_limit_publishers_are_blocked() {
    // A limit above any real free space: the alarm is on from the start.
    let broker = TestBroker::start_with(Config {
        disk_free_limit: u64::MAX,
        ..Default::default()
    })
    .await;
    let mut publisher = broker.raw().await;
    publisher
        .handshake_with(caps(&["connection.blocked"]), 0)
        .await;
    publisher.open_channel(1).await;
    declare_queue(&mut publisher, 1, "d").await;
    publish_in_frames(&mut publisher, 1, "d", b"m", 1, BasicProperties::NONE).await;
    assert_eq!(expect_blocked(&mut publisher).await, "low on disk");
    // The publisher's connection is no longer read: its next command goes unanswered.
    publisher.send_method(1, basic::Qos::default()).await;
    let unanswered = tokio::time::timeout(Duration::from_millis(300), publisher.recv()).await;
    assert!(unanswered.is_err(), "{unanswered:?}");
    // A connection that has not published is not blocked.
    let mut other = broker.raw().await;
    other.handshake().await;
    other.open_channel(1).await;
    declare_queue(&mut other, 1, "d").await;
}

#[tokio::test]
async fn bodies_being_received_count_for_the_memory_alarm() {
    let broker = TestBroker::start_with(Config {
        memory_high_watermark: 1 << 20,
        ..Default::default()
    })
    .await;
    let mut publisher = broker.raw().await;
    publisher
        .handshake_with(caps(&["connection.blocked"]), 0)
        .await;
    publisher.open_channel(1).await;
    // 4 MiB announced, 2 MiB sent: no message exists yet, but the broker holds 2 MiB.
    raw_partial_publish(&mut publisher, 4 << 20, 2 << 20).await;
    assert_eq!(expect_blocked(&mut publisher).await, "low on memory");
}

async fn raw_partial_publish(raw: &mut RawClient, announced: u64, sent: usize) {
    raw.send_method(
        1,
        basic::Publish {
            routing_key: "nowhere".into(),
            ..Default::default()
        },
    )
    .await;
    raw.send(Frame::Header {
        channel: 1,
        header: header(announced, BasicProperties::NONE),
    })
    .await;
    let chunk = vec![0u8; raw.frame_max as usize - 8];
    let mut left = sent;
    while left > 0 {
        let n = left.min(chunk.len());
        raw.send(Frame::Body {
            channel: 1,
            payload: Bytes::copy_from_slice(&chunk[..n]),
        })
        .await;
        left -= n;
    }
}
