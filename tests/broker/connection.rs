//! Connection-level behaviour: handshake, capabilities, authentication, tune limits, heartbeats,
//! close handshakes and graceful shutdown, through lapin and raw frames.

use crate::common::*;
use warren_protocol::{connection, FieldTable, FieldValue, Frame, Method, ReplyCode, ShortStr};

#[tokio::test]
async fn lapin_connects_and_closes() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    assert!(conn.status().connected());
    conn.close(200, "bye").await.expect("close");
    broker.finish().await;
}

#[tokio::test]
async fn connection_start_advertises_the_capabilities_warren_honours() {
    let broker = TestBroker::start().await;
    let mut raw = broker.raw().await;
    raw.send_bytes(b"AMQP\x00\x00\x09\x01").await;
    let (_, start) = raw.expect_method().await;
    let Method::ConnectionStart(start) = start else {
        panic!("expected connection.start, got {start:?}")
    };
    assert_eq!((start.version_major, start.version_minor), (0, 9));
    assert_eq!(&start.mechanisms[..], b"PLAIN AMQPLAIN");
    let Some(FieldValue::Table(caps)) = start.server_properties.get("capabilities") else {
        panic!("no capabilities")
    };
    for cap in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        // x-priority on basic.consume is honoured (src/queue/consumers.rs); RabbitMQ 3.10.8
        // advertises it, and amqp091-go showed Warren's table lacked it (interop/go).
        "consumer_priorities",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
    ] {
        assert_eq!(
            caps.get(cap),
            Some(&FieldValue::Bool(true)),
            "capability {cap}"
        );
    }
    // Each capability once: two commits added consumer_priorities at the same time.
    let mut names: Vec<&str> = caps.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    let count = names.len();
    names.dedup();
    assert_eq!(names.len(), count, "a capability is listed twice: {caps:?}");
    assert_eq!(
        start
            .server_properties
            .get("product")
            .and_then(FieldValue::as_str),
        Some("Warren")
    );
    drop(raw);
    broker.finish().await;
}

#[tokio::test]
async fn wrong_protocol_header_gets_ours_back_and_the_socket_closed() {
    let broker = TestBroker::start().await;
    let mut raw = broker.raw().await;
    raw.send_bytes(b"AMQP\x01\x01\x00\x0a").await;
    assert_eq!(raw.read_to_end().await, b"AMQP\x00\x00\x09\x01");
    let mut raw = broker.raw().await;
    raw.send_bytes(b"GET / HTTP/1.1\r\n\r\n").await;
    assert_eq!(raw.read_to_end().await, b"AMQP\x00\x00\x09\x01");
    drop(raw);
    broker.finish().await;
}

#[tokio::test]
async fn wrong_password_is_refused_with_403_when_the_client_asks_for_it() {
    let broker = TestBroker::start().await;
    let mut raw = broker.raw().await;
    raw.send_bytes(b"AMQP\x00\x00\x09\x01").await;
    let (_, start) = raw.expect_method().await;
    assert!(matches!(start, Method::ConnectionStart(_)));
    let caps: FieldTable = [(
        ShortStr::from("authentication_failure_close"),
        FieldValue::Bool(true),
    )]
    .into_iter()
    .collect();
    raw.send_method(0, start_ok_with_caps("guest", "wrong", caps))
        .await;
    let text = raw.expect_connection_close(ReplyCode::AccessRefused).await;
    assert!(
        text.starts_with("ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN"),
        "{text}"
    );
    drop(raw);
    broker.finish().await;
}

#[tokio::test]
async fn lapin_with_a_wrong_password_fails_to_connect() {
    let broker = TestBroker::start().await;
    let url = format!("amqp://guest:nope@{}/%2f", broker.addr());
    assert!(connect_url(&url).await.is_err());
    broker.finish().await;
}

#[tokio::test]
async fn unknown_vhost_is_refused_with_530() {
    let broker = TestBroker::start().await;
    let url = format!("amqp://guest:guest@{}/nowhere", broker.addr());
    let err = connect_url(&url).await.expect_err("vhost does not exist");
    assert_eq!(amqp_error(&err).map(|e| e.0), Some(530), "{err:?}");
    broker.finish().await;
}

#[tokio::test]
async fn frames_on_an_unopened_channel_close_the_connection_504() {
    let broker = TestBroker::start().await;
    let mut raw = broker.raw().await;
    raw.handshake().await;
    raw.send_method(
        7,
        warren_protocol::queue::Declare {
            queue: "q".into(),
            ..Default::default()
        },
    )
    .await;
    let text = raw.expect_connection_close(ReplyCode::ChannelError).await;
    assert!(text.contains("expected 'channel.open'"), "{text}");
    drop(raw);
    broker.finish().await;
}

#[tokio::test]
async fn body_without_header_is_unexpected_frame_505() {
    let broker = TestBroker::start().await;
    let mut raw = broker.raw().await;
    raw.handshake().await;
    raw.open_channel(1).await;
    raw.send(Frame::Body {
        channel: 1,
        payload: bytes::Bytes::from_static(b"hello"),
    })
    .await;
    raw.expect_connection_close(ReplyCode::UnexpectedFrame)
        .await;
    drop(raw);
    broker.finish().await;
}

#[tokio::test]
async fn oversized_frame_is_a_frame_error_501() {
    let broker = TestBroker::start().await;
    let mut raw = broker.raw().await;
    raw.handshake().await;
    raw.open_channel(1).await;
    // A body frame header announcing 1 MiB, above the negotiated frame_max of 128 KiB.
    raw.send_bytes(&[3, 0, 1, 0, 0x10, 0, 0]).await;
    raw.expect_connection_close(ReplyCode::FrameError).await;
    drop(raw);
    broker.finish().await;
}

#[tokio::test]
async fn bad_frame_end_is_a_frame_error_501() {
    let broker = TestBroker::start().await;
    let mut raw = broker.raw().await;
    raw.handshake().await;
    raw.send_bytes(&[8, 0, 0, 0, 0, 0, 0, 0x00]).await;
    raw.expect_connection_close(ReplyCode::FrameError).await;
    drop(raw);
    broker.finish().await;
}

#[tokio::test]
async fn unknown_field_type_is_a_syntax_error_502() {
    let broker = TestBroker::start().await;
    let mut raw = broker.raw().await;
    raw.handshake().await;
    raw.open_channel(1).await;
    // queue.declare "q" with an arguments table holding type letter 'Z'.
    let mut payload = vec![0, 50, 0, 10, 0, 0, 1, b'q', 0];
    payload.extend_from_slice(&[0, 0, 0, 3, 1, b'k', b'Z']);
    let mut frame = vec![1, 0, 1];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    frame.push(0xCE);
    raw.send_bytes(&frame).await;
    let text = raw.expect_connection_close(ReplyCode::SyntaxError).await;
    assert!(text.contains("unknown field value type"), "{text}");
    drop(raw);
    broker.finish().await;
}

#[tokio::test]
async fn unknown_method_is_not_implemented_540() {
    let broker = TestBroker::start().await;
    let mut raw = broker.raw().await;
    raw.handshake().await;
    raw.open_channel(1).await;
    raw.send_bytes(&[1, 0, 1, 0, 0, 0, 4, 0, 60, 0x03, 0xE7, 0xCE])
        .await;
    raw.expect_connection_close(ReplyCode::NotImplemented).await;
    drop(raw);
    broker.finish().await;
}

#[tokio::test]
async fn second_channel_open_is_a_channel_error_504() {
    let broker = TestBroker::start().await;
    let mut raw = broker.raw().await;
    raw.handshake().await;
    raw.open_channel(1).await;
    raw.send_method(1, warren_protocol::channel::Open::default())
        .await;
    raw.expect_connection_close(ReplyCode::ChannelError).await;
    drop(raw);
    broker.finish().await;
}

#[tokio::test]
async fn more_open_channels_than_channel_max_is_not_allowed_530() {
    // RabbitMQ limits the count of open channels, not their numbers (tests/compat_channels.rs).
    let broker = TestBroker::start_with(warren::Config {
        channel_max: 1,
        ..Default::default()
    })
    .await;
    let mut raw = broker.raw().await;
    raw.handshake().await;
    raw.open_channel(4000).await;
    raw.send_method(1, warren_protocol::channel::Open::default())
        .await;
    raw.expect_connection_close(ReplyCode::NotAllowed).await;
    drop(raw);
    broker.finish().await;
}

#[tokio::test]
async fn frame_max_below_the_minimum_is_refused() {
    let broker = TestBroker::start().await;
    let mut raw = broker.raw().await;
    raw.send_bytes(b"AMQP\x00\x00\x09\x01").await;
    raw.expect_method().await;
    raw.send_method(0, start_ok("guest", "guest")).await;
    raw.expect_method().await;
    raw.send_method(
        0,
        connection::TuneOk {
            channel_max: 0,
            frame_max: 1024,
            heartbeat: 0,
        },
    )
    .await;
    raw.expect_connection_close(ReplyCode::NotAllowed).await;
    drop(raw);
    broker.finish().await;
}

#[tokio::test]
async fn client_close_gets_close_ok() {
    let broker = TestBroker::start().await;
    let mut raw = broker.raw().await;
    raw.handshake().await;
    raw.send_method(
        0,
        connection::Close {
            reply_code: 200,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        },
    )
    .await;
    let (ch, m) = raw.expect_method().await;
    assert_eq!(ch, 0);
    assert!(matches!(m, Method::ConnectionCloseOk(_)), "{m:?}");
    assert!(raw.recv().await.is_none(), "socket closes after close-ok");
    drop(raw);
    broker.finish().await;
}

#[tokio::test]
async fn shutdown_sends_connection_forced_320() {
    let broker = TestBroker::start().await;
    let mut raw = broker.raw().await;
    raw.handshake().await;
    let handle = broker.handle;
    let stopping = tokio::spawn(handle.shutdown_and_audit());
    let text = raw
        .expect_connection_close(ReplyCode::ConnectionForced)
        .await;
    assert!(text.starts_with("CONNECTION_FORCED"), "{text}");
    let leftovers = within("shutdown", stopping)
        .await
        .expect("join")
        .expect("clean shutdown");
    assert_eq!(leftovers, Vec::<String>::new());
}

/// A client reconnecting while the broker shuts down is refused at once (RabbitMQ stops its
/// listeners first), not left in the listen backlog until the process exits: a celery worker in
/// interop/python hung 5 s in connect during BROKER_RESTART before this.
#[tokio::test]
async fn shutdown_stops_listening_before_closing_connections() {
    let broker = TestBroker::start().await;
    let addr = broker.addr();
    let mut raw = broker.raw().await;
    raw.handshake().await;
    let handle = broker.handle;
    let stopping = tokio::spawn(handle.shutdown_and_audit());
    // Not answering connection.close yet keeps the broker in its shutdown grace period.
    loop {
        match raw.recv().await {
            Some(Frame::Method {
                method: Method::ConnectionClose(_),
                ..
            }) => break,
            Some(_) => continue,
            None => panic!("socket closed without connection.close"),
        }
    }
    let reconnect = tokio::net::TcpStream::connect(addr).await;
    assert!(
        reconnect.is_err(),
        "a new connection was accepted during shutdown"
    );
    raw.send_method(0, connection::CloseOk {}).await;
    let leftovers = within("shutdown", stopping)
        .await
        .expect("join")
        .expect("clean shutdown");
    assert_eq!(leftovers, Vec::<String>::new());
}

/// A client that never answers the shutdown's connection.close (an idle pika
/// BlockingConnection does not read) holds the shutdown for the close-ok timeout (3 s) only,
/// not for a second wait on its socket past the 5 s grace period: restarts in interop/ took 5 s
/// where RabbitMQ's take 1.
#[tokio::test]
async fn shutdown_waits_for_a_silent_client_only_once() {
    let broker = TestBroker::start().await;
    let mut raw = broker.raw().await;
    raw.handshake().await;
    let started = std::time::Instant::now();
    let handle = broker.handle;
    let leftovers = handle.shutdown_and_audit().await.expect("clean shutdown");
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_millis(4500),
        "shutdown took {took:?}"
    );
    assert_eq!(leftovers, Vec::<String>::new());
    drop(raw);
}

#[tokio::test]
async fn silent_peer_is_dropped_after_two_heartbeat_intervals() {
    let broker = TestBroker::start().await;
    let mut raw = broker.raw().await;
    raw.handshake_with(FieldTable::new(), 1).await;
    // The broker sends heartbeats, then gives up on us after ~2 s of silence.
    let started = std::time::Instant::now();
    let mut saw_heartbeat = false;
    let mut buf = bytes::BytesMut::new();
    loop {
        use tokio::io::AsyncReadExt;
        let n = within("heartbeat or close", raw.stream.read_buf(&mut buf))
            .await
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        while let Ok(Some(f)) = warren_protocol::decode_frame(&mut buf, 0) {
            saw_heartbeat |= f == Frame::Heartbeat;
        }
    }
    assert!(saw_heartbeat, "broker sent heartbeats");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(1500),
        "not dropped too early"
    );
    drop(raw);
    broker.finish().await;
}

/// The teardown check (`TestBroker::finish`) sees what an open connection holds, so it can fail.
#[tokio::test]
async fn teardown_audit_lists_what_open_connections_hold() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    let exclusive = lapin::options::QueueDeclareOptions {
        exclusive: true,
        ..Default::default()
    };
    ch.queue_declare("held", exclusive, lapin::types::FieldTable::default())
        .await
        .expect("declare");
    ch.basic_consume(
        "held",
        "c1",
        lapin::options::BasicConsumeOptions::default(),
        lapin::types::FieldTable::default(),
    )
    .await
    .expect("consume");
    let mut held = broker.handle.leftovers();
    held.sort();
    assert_eq!(
        held,
        [
            "1 connections still running",
            "vhost /: exclusive queue held outlived its connection",
            "vhost /: queue held has 1 consumers",
        ]
    );
    broker.finish().await;
}
