//! Streams (`x-queue-type: stream`) over AMQP 0-9-1 as RabbitMQ 3.10+ behaves (texts measured
//! with pika against 3.10.8: shared/RABBITMQ-FACTS.md), plus Warren's server-side offset
//! tracking and 3.13's filtering, each through lapin against a running broker; and a kill -9
//! of the real binary with a consumer resuming from its tracked offset.

mod common;

use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection};
use std::time::Duration;

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

async fn try_stream(
    ch: &Channel,
    name: &str,
    args: &[(&str, AMQPValue)],
    options: QueueDeclareOptions,
) -> lapin::Result<lapin::Queue> {
    let mut all = vec![("x-queue-type", s("stream"))];
    all.extend(args.iter().cloned());
    ch.queue_declare(name, options, table(&all)).await
}

async fn stream(ch: &Channel, name: &str, args: &[(&str, AMQPValue)]) {
    try_stream(ch, name, args, durable())
        .await
        .expect("stream queue.declare");
}

/// Publishes `n` messages `m0`… with confirms.
async fn fill(ch: &Channel, name: &str, n: usize) {
    for i in 0..n {
        assert!(confirmed(ch, name, &format!("m{i}")).await, "confirmed");
    }
}

/// A channel with a per-consumer prefetch of `prefetch`.
async fn consumer_channel(conn: &Connection, prefetch: u16) -> Channel {
    let ch = conn.create_channel().await.expect("channel");
    ch.basic_qos(prefetch, BasicQosOptions::default())
        .await
        .expect("qos");
    ch
}

fn offset_of(d: &lapin::message::Delivery) -> i64 {
    match header(&d.properties, "x-stream-offset") {
        Some(AMQPValue::LongLongInt(n)) => *n,
        other => panic!("x-stream-offset missing or of the wrong type: {other:?}"),
    }
}

/// Consumes from `offset` (an `x-stream-offset` value, or none) with acks; the offsets and
/// bodies delivered until `quiet` passes with nothing new.
async fn read_from(conn: &Connection, name: &str, offset: Option<AMQPValue>) -> Vec<(i64, String)> {
    let ch = consumer_channel(conn, 50).await;
    let args: Vec<(&str, AMQPValue)> = offset.into_iter().map(|o| ("x-stream-offset", o)).collect();
    let mut consumer = consume_with(&ch, name, "reader", false, &args)
        .await
        .expect("consume");
    let mut out = Vec::new();
    while let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(400), consumer.next()).await
    {
        let d = d.expect("delivery");
        out.push((offset_of(&d), text(&d).to_owned()));
        d.acker.ack(BasicAckOptions::default()).await.expect("ack");
    }
    let _ = ch.close(200, "done").await;
    out
}

/// Declare flags, arguments, and the 406 text expected after `PRECONDITION_FAILED - `.
type Case = (QueueDeclareOptions, Vec<(&'static str, AMQPValue)>, String);

#[tokio::test]
async fn declare_checks_match_rabbitmq() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let cases: Vec<Case> = vec![
        (QueueDeclareOptions::default(), vec![], "invalid property 'non-durable' for queue 'q' in vhost '/'".into()),
        (QueueDeclareOptions { exclusive: true, ..durable() }, vec![], "invalid property 'exclusive-owner' for queue 'q' in vhost '/'".into()),
        (QueueDeclareOptions { auto_delete: true, ..durable() }, vec![], "invalid property 'auto-delete' for queue 'q' in vhost '/'".into()),
        (durable(), vec![("x-max-length", int(10))], "invalid arg 'x-max-length' for queue 'q' in vhost '/' of queue type rabbit_stream_queue".into()),
        (durable(), vec![("x-message-ttl", int(10))], "invalid arg 'x-message-ttl' for queue 'q' in vhost '/' of queue type rabbit_stream_queue".into()),
        (durable(), vec![("x-single-active-consumer", AMQPValue::Boolean(true))], "invalid arg 'x-single-active-consumer' for queue 'q' in vhost '/' of queue type rabbit_stream_queue".into()),
        (durable(), vec![("x-max-age", s("7d"))], "invalid arg 'x-max-age' for queue 'q' in vhost '/': invalid_max_age".into()),
        (durable(), vec![("x-max-age", s("bogus"))], "invalid arg 'x-max-age' for queue 'q' in vhost '/': invalid_max_age".into()),
        (durable(), vec![("x-max-age", int(5))], "invalid arg 'x-max-age' for queue 'q' in vhost '/': {unacceptable_type,signedint}".into()),
        (durable(), vec![("x-max-length-bytes", int(-1))], "invalid arg 'x-max-length-bytes' for queue 'q' in vhost '/': {value_negative,-1}".into()),
        (durable(), vec![("x-stream-max-segment-size-bytes", s("x"))], "invalid arg 'x-stream-max-segment-size-bytes' for queue 'q' in vhost '/': \"expected integer, got longstr\"".into()),
    ];
    for (options, args, text) in cases {
        let ch = conn.create_channel().await.expect("channel");
        let (code, got) = refused(try_stream(&ch, "q", &args, options).await);
        assert_eq!((code, got), (406, format!("PRECONDITION_FAILED - {text}")));
    }
    let ch = conn.create_channel().await.expect("channel");
    for age in ["7D", "12h", "30m", "10s", "1Y"] {
        stream(&ch, &format!("age-{age}"), &[("x-max-age", s(age))]).await;
    }
    stream(
        &ch,
        "s",
        &[
            ("x-max-length-bytes", long(1 << 30)),
            ("x-stream-max-segment-size-bytes", int(1 << 20)),
            ("x-initial-cluster-size", int(1)),
        ],
    )
    .await;
    stream(&ch, "plain", &[]).await;
    let (code, text) = refused(
        ch.queue_declare("plain", durable(), FieldTable::default())
            .await,
    );
    assert_eq!(code, 406);
    assert_eq!(
        text,
        "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'plain' in vhost '/': received none but current is the value 'stream' of type 'longstr'"
    );
    let ch = conn.create_channel().await.expect("channel");
    let quorum = table(&[("x-queue-type", s("quorum"))]);
    let (code, text) = refused(ch.queue_declare("plain", durable(), quorum).await);
    assert_eq!(
        (code, text.as_str()),
        (406, "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'plain' in vhost '/': received 'quorum' but current is 'stream'")
    );
}

#[tokio::test]
async fn offsets_select_where_a_consumer_starts() {
    let broker = TestBroker::start().await;
    let (conn, ch) = confirming_channel(&broker).await;
    stream(&ch, "s", &[]).await;
    fill(&ch, "s", 100).await;
    let declared = try_stream(&ch, "s", &[], durable())
        .await
        .expect("redeclare");
    assert_eq!(
        declared.message_count(),
        100,
        "declare-ok counts the messages kept"
    );

    let first = read_from(&conn, "s", Some(s("first"))).await;
    assert_eq!(first.len(), 100);
    assert_eq!(first[0], (0, "m0".to_owned()));
    assert_eq!(first[99], (99, "m99".to_owned()));
    // Published one confirm at a time: every message is a chunk of its own.
    assert_eq!(
        read_from(&conn, "s", Some(s("last"))).await,
        vec![(99, "m99".to_owned())]
    );
    assert!(read_from(&conn, "s", Some(s("next"))).await.is_empty());
    assert!(
        read_from(&conn, "s", None).await.is_empty(),
        "next is the default"
    );
    let from90 = read_from(&conn, "s", Some(long(90))).await;
    assert_eq!(
        from90.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
        (90..100).collect::<Vec<_>>()
    );
    assert_eq!(
        read_from(&conn, "s", Some(int(-5))).await.len(),
        100,
        "negative: the first"
    );
    assert_eq!(read_from(&conn, "s", Some(s("1h"))).await.len(), 100);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert_eq!(
        read_from(&conn, "s", Some(AMQPValue::Timestamp(now - 3600)))
            .await
            .len(),
        100
    );
    assert!(
        read_from(&conn, "s", Some(AMQPValue::Timestamp(now + 3600)))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn an_offset_past_the_end_waits_for_new_messages_and_consumers_are_independent() {
    let broker = TestBroker::start().await;
    let (conn, ch) = confirming_channel(&broker).await;
    stream(&ch, "s", &[]).await;
    fill(&ch, "s", 3).await;
    let c1 = consumer_channel(&conn, 10).await;
    let mut waiting = consume_with(&c1, "s", "ahead", false, &[("x-stream-offset", long(5))])
        .await
        .expect("consume");
    let c2 = consumer_channel(&conn, 10).await;
    let mut tail = consume_with(&c2, "s", "tail", false, &[("x-stream-offset", s("next"))])
        .await
        .expect("consume");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), waiting.next())
            .await
            .is_err(),
        "nothing at offset 5 yet"
    );
    fill(&ch, "s", 3).await; // offsets 3, 4, 5
    let d = next(&mut waiting).await;
    assert_eq!((offset_of(&d), text(&d)), (5, "m2"));
    for want in 3..6 {
        let d = next(&mut tail).await;
        assert_eq!(
            offset_of(&d),
            want,
            "the tail consumer sees every new message"
        );
        d.acker.ack(BasicAckOptions::default()).await.expect("ack");
    }
}

#[tokio::test]
async fn acks_only_release_prefetch_credit() {
    let broker = TestBroker::start().await;
    let (conn, ch) = confirming_channel(&broker).await;
    stream(&ch, "s", &[]).await;
    fill(&ch, "s", 10).await;
    let c = consumer_channel(&conn, 3).await;
    let mut consumer = consume_with(&c, "s", "c", false, &[("x-stream-offset", s("first"))])
        .await
        .expect("consume");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(next(&mut consumer).await);
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), consumer.next())
            .await
            .is_err(),
        "prefetch 3: a fourth waits for an ack"
    );
    held[0]
        .acker
        .ack(BasicAckOptions::default())
        .await
        .expect("ack");
    assert_eq!(offset_of(&next(&mut consumer).await), 3);
    // Acked messages stay in the stream.
    assert_eq!(read_from(&conn, "s", Some(s("first"))).await.len(), 10);
}

#[tokio::test]
async fn consumers_need_a_prefetch_and_manual_acks() {
    let broker = TestBroker::start().await;
    let (conn, ch) = confirming_channel(&broker).await;
    stream(&ch, "s", &[]).await;
    let plain = conn.create_channel().await.expect("channel");
    let (code, text) = refused(consume_with(&plain, "s", "c", false, &[]).await);
    assert_eq!(
        (code, text.as_str()),
        (
            406,
            "PRECONDITION_FAILED - consumer prefetch count is not set for 'queue 's' in vhost '/''"
        )
    );
    let global = conn.create_channel().await.expect("channel");
    global
        .basic_qos(10, BasicQosOptions { global: true })
        .await
        .expect("qos");
    assert_eq!(
        refused(consume_with(&global, "s", "c", false, &[]).await).0,
        406
    );
    let bad = consumer_channel(&conn, 10).await;
    let (code, text) =
        refused(consume_with(&bad, "s", "c", false, &[("x-stream-offset", s("nonsense"))]).await);
    assert_eq!(
        (code, text.as_str()),
        (406, "PRECONDITION_FAILED - invalid offset specification 'nonsense' for consumer of queue 's' in vhost '/'")
    );
    let no_ack = consumer_channel(&conn, 10).await;
    let (code, text) = refused(consume_with(&no_ack, "s", "c", true, &[]).await);
    assert_eq!(
        (code, text.as_str()),
        (540, "NOT_IMPLEMENTED - automatic acknowledgement not supported by stream queues queue 's' in vhost '/'")
    );
}

#[tokio::test]
async fn get_purge_nack_and_reject_are_not_implemented() {
    let broker = TestBroker::start().await;
    for what in ["get", "purge", "nack", "reject"] {
        let (conn, ch) = confirming_channel(&broker).await;
        stream(&ch, "s", &[]).await;
        fill(&ch, "s", 1).await;
        let (code, text) = match what {
            "get" => refused(ch.basic_get("s", BasicGetOptions::default()).await),
            "purge" => refused(ch.queue_purge("s", QueuePurgeOptions::default()).await),
            _ => {
                let c = consumer_channel(&conn, 10).await;
                let mut consumer =
                    consume_with(&c, "s", "c", false, &[("x-stream-offset", s("first"))])
                        .await
                        .expect("consume");
                let d = next(&mut consumer).await;
                // 540 closes the connection.
                let (tx, closed) = tokio::sync::oneshot::channel();
                let tx = std::sync::Mutex::new(Some(tx));
                conn.on_error(move |e| {
                    if let Some(tx) = tx.lock().expect("lock").take() {
                        let _ = tx.send(e);
                    }
                });
                if what == "nack" {
                    let _ = d.acker.nack(BasicNackOptions::default()).await;
                } else {
                    let _ = d.acker.reject(BasicRejectOptions::default()).await;
                }
                closed_with(closed).await
            }
        };
        let method = match what {
            "get" => "basic.get",
            "purge" => "queue.purge",
            _ => "basic.nack and basic.reject",
        };
        assert_eq!(
            (code, text),
            (540, format!("NOT_IMPLEMENTED - {method} not supported by stream queues queue 's' in vhost '/'")),
            "{what}"
        );
    }
}

#[tokio::test]
async fn filters_deliver_matching_values_and_optionally_unfiltered() {
    let broker = TestBroker::start().await;
    let (conn, ch) = confirming_channel(&broker).await;
    stream(&ch, "s", &[]).await;
    for (body, region) in [
        ("a", Some("eu")),
        ("b", Some("us")),
        ("c", None),
        ("d", Some("eu")),
    ] {
        let headers = match region {
            Some(r) => table(&[("x-stream-filter-value", s(r))]),
            None => FieldTable::default(),
        };
        let confirm = ch
            .basic_publish(
                "",
                "s",
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default().with_headers(headers),
            )
            .await
            .expect("publish");
        assert!(confirm.await.expect("confirm").is_ack());
    }
    let read = |args: Vec<(&'static str, AMQPValue)>| {
        let conn = &conn;
        async move {
            let c = consumer_channel(conn, 10).await;
            let mut all = vec![("x-stream-offset", s("first"))];
            all.extend(args);
            let mut consumer = consume_with(&c, "s", "f", false, &all)
                .await
                .expect("consume");
            let mut got = Vec::new();
            while let Ok(Some(d)) =
                tokio::time::timeout(Duration::from_millis(300), consumer.next()).await
            {
                got.push(text(&d.expect("delivery")).to_owned());
            }
            got
        }
    };
    assert_eq!(read(vec![("x-stream-filter", s("eu"))]).await, ["a", "d"]);
    assert_eq!(
        read(vec![
            ("x-stream-filter", s("eu")),
            ("x-stream-match-unfiltered", AMQPValue::Boolean(true))
        ])
        .await,
        ["a", "c", "d"]
    );
    assert_eq!(
        read(vec![(
            "x-stream-filter",
            AMQPValue::FieldArray(vec![s("us"), s("eu")].into())
        )])
        .await,
        ["a", "b", "d"]
    );
    assert_eq!(read(vec![]).await, ["a", "b", "c", "d"]);
}

#[tokio::test]
async fn a_named_consumer_resumes_after_its_last_acked_offset() {
    let broker = TestBroker::start().await;
    let (conn, ch) = confirming_channel(&broker).await;
    stream(&ch, "s", &[]).await;
    fill(&ch, "s", 20).await;
    let tracked = [
        ("x-stream-offset", s("first")),
        ("x-stream-offset-tracking-name", s("app")),
    ];
    let c = consumer_channel(&conn, 5).await;
    let mut consumer = consume_with(&c, "s", "c", false, &tracked)
        .await
        .expect("consume");
    for want in 0..8 {
        let d = next(&mut consumer).await;
        assert_eq!(offset_of(&d), want);
        d.acker.ack(BasicAckOptions::default()).await.expect("ack");
    }
    c.close(200, "bye").await.expect("close");
    let c = consumer_channel(&conn, 5).await;
    let mut again = consume_with(&c, "s", "c", false, &tracked)
        .await
        .expect("consume");
    let d = next(&mut again).await;
    assert_eq!(
        offset_of(&d),
        8,
        "resumes after the last acked offset, not at `first`"
    );
}

#[tokio::test]
async fn retention_drops_whole_old_segments() {
    let broker = TestBroker::start().await;
    let (conn, ch) = confirming_channel(&broker).await;
    stream(
        &ch,
        "s",
        &[
            ("x-max-length-bytes", int(20_000)),
            ("x-stream-max-segment-size-bytes", int(5_000)),
        ],
    )
    .await;
    let body = "x".repeat(900);
    for _ in 0..100 {
        assert!(confirmed(&ch, "s", &body).await);
    }
    let kept = read_from(&conn, "s", Some(s("first"))).await;
    assert!(
        kept.len() < 40 && kept.len() >= 15,
        "about 20 kB kept: {} messages",
        kept.len()
    );
    assert!(kept[0].0 > 0, "the oldest went");
    assert_eq!(kept.last().map(|k| k.0), Some(99), "the newest stay");
}

/// kill -9 with a tracking consumer mid-stream: confirmed messages are all there after the
/// restart and the consumer resumes after the last offset it acked (stored within 200 ms).
#[tokio::test]
async fn kill_9_keeps_the_stream_and_the_tracked_offset() {
    let data = tempfile::tempdir().expect("temp dir");
    let start = || async {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_warren"));
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--management-listen",
            "none",
            "--prometheus-listen",
            "none",
            "--data-dir",
        ])
        .arg(data.path())
        .env("RUST_LOG", "warn");
        spawn_warren(&mut cmd).await
    };
    let (mut child, addr) = start().await;
    let url = format!("amqp://guest:guest@{addr}/%2f");
    let conn = connect_url(&url).await.expect("connects");
    let ch = confirm_channel_on(&conn).await;
    stream(&ch, "s", &[]).await;
    fill(&ch, "s", 50).await;
    let tracked = [
        ("x-stream-offset", s("first")),
        ("x-stream-offset-tracking-name", s("app")),
    ];
    let c = consumer_channel(&conn, 10).await;
    let mut consumer = consume_with(&c, "s", "c", false, &tracked)
        .await
        .expect("consume");
    for _ in 0..30 {
        let d = next(&mut consumer).await;
        d.acker.ack(BasicAckOptions::default()).await.expect("ack");
    }
    tokio::time::sleep(Duration::from_millis(600)).await; // the position is stored every 200 ms
    let _ = child.kill();
    let _ = child.wait();

    let (mut child, addr) = start().await;
    let url = format!("amqp://guest:guest@{addr}/%2f");
    let conn = connect_url(&url).await.expect("connects");
    let c = consumer_channel(&conn, 10).await;
    let mut consumer = consume_with(&c, "s", "c", false, &tracked)
        .await
        .expect("consume");
    let mut offsets = Vec::new();
    while let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(500), consumer.next()).await
    {
        let d = d.expect("delivery");
        offsets.push(offset_of(&d));
        d.acker.ack(BasicAckOptions::default()).await.expect("ack");
    }
    assert_eq!(
        offsets,
        (30..50).collect::<Vec<_>>(),
        "resumes at 30 and every confirmed message is there"
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// A damaged record in a stream segment stops startup with the file and byte offset named.
#[tokio::test]
async fn a_corrupt_segment_stops_startup_naming_the_file_and_offset() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_warren"));
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--management-listen",
        "none",
        "--prometheus-listen",
        "none",
        "--data-dir",
    ])
    .arg(data.path())
    .env("RUST_LOG", "warn");
    let (mut child, addr) = spawn_warren(&mut cmd).await;
    let conn = connect_url(&format!("amqp://guest:guest@{addr}/%2f"))
        .await
        .expect("connects");
    let ch = confirm_channel_on(&conn).await;
    stream(&ch, "s", &[]).await;
    fill(&ch, "s", 3).await;
    let _ = child.kill();
    let _ = child.wait();
    let segment = walk(data.path())
        .into_iter()
        .find(|p| {
            p.extension().is_some_and(|e| e == "seg") && p.to_string_lossy().contains("streams")
        })
        .expect("a stream segment on disk");
    let mut bytes = std::fs::read(&segment).expect("read");
    let second = bytes.len() / 3;
    bytes[second + 30] ^= 0xFF;
    std::fs::write(&segment, &bytes).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warren"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--management-listen",
            "none",
            "--prometheus-listen",
            "none",
            "--data-dir",
        ])
        .arg(data.path())
        .output()
        .expect("runs");
    assert!(!out.status.success(), "startup must stop");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&segment.display().to_string())
            && stderr.contains(&format!("at offset {second}")),
        "names the file and offset: {stderr}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// `x-max-age`: once a segment rolls over, whole segments whose newest message is older than
/// the age go (RabbitMQ applies retention at roll-over too).
#[tokio::test]
async fn max_age_drops_segments_older_than_the_age_at_roll_over() {
    let broker = TestBroker::start().await;
    let (conn, ch) = confirming_channel(&broker).await;
    stream(
        &ch,
        "s",
        &[
            ("x-max-age", s("1s")),
            ("x-stream-max-segment-size-bytes", int(3_000)),
        ],
    )
    .await;
    let body = "x".repeat(900);
    fill(&ch, "s", 10).await; // ~60 bytes each
                              // Offsets 10 and 11 fill the first segment; 12 starts the second.
    for _ in 0..3 {
        assert!(confirmed(&ch, "s", &body).await);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // 13 and 14 join the second segment; 15 rolls over, and the first segment (all older than
    // 1 s) goes.
    for _ in 0..3 {
        assert!(confirmed(&ch, "s", &body).await);
    }
    let kept = read_from(&conn, "s", Some(s("first"))).await;
    assert_eq!(
        kept.iter().map(|k| k.0).collect::<Vec<_>>(),
        (12..16).collect::<Vec<_>>(),
        "the first segment went, the newer ones stay"
    );
}
