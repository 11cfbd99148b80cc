//! The memory alarm: past the high watermark, publishing connections get connection.blocked
//! and are not read from; consumers keep draining; below it they get connection.unblocked and
//! what they sent meanwhile arrives. (Its own test binary: the alarm counts every message in
//! the process.)

mod common;

use bytes::BytesMut;
use common::*;
use lapin::options::{QueueDeclareOptions, QueuePurgeOptions};
use lapin::types::FieldTable as LapinTable;
use warren::Config;
use warren_protocol::{basic, encode_content, FieldTable, FieldValue, Frame, Method, ShortStr};

async fn publish(raw: &mut RawClient, body_len: usize, count: usize) {
    let mut out = BytesMut::new();
    let publish = Method::BasicPublish(basic::Publish {
        routing_key: "fc".into(),
        ..Default::default()
    });
    for _ in 0..count {
        encode_content(
            1,
            &publish,
            &Default::default(),
            &vec![7u8; body_len],
            raw.frame_max,
            &mut out,
        );
    }
    raw.send_bytes(&out).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_are_blocked_above_the_watermark_and_unblocked_below_it() {
    let config = Config {
        memory_high_watermark: 256 * 1024,
        ..Config::default()
    };
    let broker = TestBroker::start_with(config).await;
    let (_conn, ch) = broker.channel().await;
    ch.queue_declare("fc", QueueDeclareOptions::default(), LapinTable::default())
        .await
        .expect("declare");

    let mut raw = broker.raw().await;
    let caps: FieldTable = [(ShortStr::from("connection.blocked"), FieldValue::Bool(true))]
        .into_iter()
        .collect();
    raw.handshake_with(caps, 0).await;
    raw.open_channel(1).await;

    publish(&mut raw, 64 * 1024, 8).await; // 512 KiB: twice the watermark
    let blocked = within("connection.blocked", async {
        loop {
            if let Some(Frame::Method {
                channel: 0,
                method: Method::ConnectionBlocked(b),
            }) = raw.recv().await
            {
                return b;
            }
        }
    })
    .await;
    assert_eq!(blocked.reason.as_str(), "low on memory");

    // Sent while blocked: not read until the alarm clears.
    publish(&mut raw, 1024, 3).await;
    let purged = ch
        .queue_purge("fc", QueuePurgeOptions::default())
        .await
        .expect("purge");
    assert!(
        purged >= 4,
        "the queue held the messages past the watermark: {purged}"
    );
    within("connection.unblocked", async {
        loop {
            if let Some(Frame::Method {
                channel: 0,
                method: Method::ConnectionUnblocked(_),
            }) = raw.recv().await
            {
                return;
            }
        }
    })
    .await;
    within("the messages sent while blocked", async {
        loop {
            let q = ch
                .queue_declare(
                    "fc",
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    LapinTable::default(),
                )
                .await
                .expect("passive");
            if q.message_count() >= 3 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    drop(raw);
    broker.finish().await;
}
