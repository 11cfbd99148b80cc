//! Sender-selected distribution (the `CC` and `BCC` headers) through lapin: extra routing keys
//! for direct, topic and default-exchange routing, `BCC` removed before delivery, and the 406 a
//! non-array header gets. Every expectation was first run with pika against RabbitMQ 3.10.8
//! (routing results, delivered headers and reply texts).

use crate::common::*;
use lapin::options::{BasicPublishOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString};
use lapin::{BasicProperties, Channel, ExchangeKind};

fn keys(keys: &[&str]) -> AMQPValue {
    let values: Vec<AMQPValue> = keys
        .iter()
        .map(|k| AMQPValue::LongString(LongString::from(*k)))
        .collect();
    AMQPValue::FieldArray(FieldArray::from(values))
}

fn headers(entries: Vec<(&str, AMQPValue)>) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(k.into(), v);
    }
    t
}

/// A new exclusive queue named `name`, bound to `exchange` with `key` unless `exchange` is "".
async fn queue(ch: &Channel, name: &str, exchange: &str, key: &str, arguments: FieldTable) {
    let options = QueueDeclareOptions {
        exclusive: true,
        ..Default::default()
    };
    ch.queue_declare(name, options, FieldTable::default())
        .await
        .expect("queue.declare");
    if !exchange.is_empty() {
        ch.queue_bind(name, exchange, key, QueueBindOptions::default(), arguments)
            .await
            .expect("queue.bind");
    }
}

/// Publishes with `headers` and, in confirm mode, waits for the confirm; returns whether the
/// (mandatory) message came back.
async fn mandatory_returned(ch: &Channel, exchange: &str, key: &str, headers: FieldTable) -> bool {
    let confirm = ch
        .basic_publish(
            exchange,
            key,
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"m",
            BasicProperties::default().with_headers(headers),
        )
        .await
        .expect("basic.publish");
    match within("the publisher confirm", confirm)
        .await
        .expect("confirm")
    {
        Confirmation::Ack(returned) => returned.is_some(),
        other => panic!("expected an ack, got {other:?}"),
    }
}

/// (routing key, headers) of every message in `queue`, taking them off it.
async fn drain_headers(ch: &Channel, queue: &str) -> Vec<(String, Option<FieldTable>)> {
    let all = drain_deliveries(ch, queue).await;
    all.iter()
        .map(|d| (d.routing_key.to_string(), d.properties.headers().clone()))
        .collect()
}

/// Direct exchange `d` with queues `qa`, `qb`, `qc` bound with keys `a`, `b`, `c`.
async fn direct_abc(ch: &Channel) {
    declare_exchange(ch, "d", ExchangeKind::Direct).await;
    for k in ["a", "b", "c"] {
        queue(ch, &format!("q{k}"), "d", k, FieldTable::default()).await;
    }
}

#[tokio::test]
async fn cc_and_bcc_keys_route_too_and_only_bcc_is_removed() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming_channel(&broker).await;
    direct_abc(&ch).await;
    let sent = headers(vec![
        ("CC", keys(&["b"])),
        ("BCC", keys(&["c"])),
        ("other", AMQPValue::LongString("kept".into())),
    ]);
    assert!(!mandatory_returned(&ch, "d", "a", sent).await);
    let delivered = headers(vec![
        ("CC", keys(&["b"])),
        ("other", AMQPValue::LongString("kept".into())),
    ]);
    for q in ["qa", "qb", "qc"] {
        // Every copy shows the routing key it was published with, not the CC/BCC key.
        assert_eq!(
            drain_headers(&ch, q).await,
            [("a".to_string(), Some(delivered.clone()))],
            "{q}"
        );
    }
    broker.finish().await;
}

#[tokio::test]
async fn a_queue_matched_by_several_keys_gets_one_copy() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming_channel(&broker).await;
    direct_abc(&ch).await;
    mandatory_returned(&ch, "d", "a", headers(vec![("CC", keys(&["a", "b", "a"]))])).await;
    mandatory_returned(&ch, "d", "a", headers(vec![("BCC", keys(&["b"]))])).await;
    assert_eq!(drain_headers(&ch, "qa").await.len(), 2);
    assert_eq!(drain_headers(&ch, "qb").await.len(), 2);
    assert_eq!(drain_headers(&ch, "qc").await.len(), 0);
    broker.finish().await;
}

#[tokio::test]
async fn mandatory_message_routed_only_by_cc_or_bcc_is_not_returned() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming_channel(&broker).await;
    direct_abc(&ch).await;
    assert!(!mandatory_returned(&ch, "d", "none", headers(vec![("CC", keys(&["b"]))])).await);
    assert!(!mandatory_returned(&ch, "d", "none", headers(vec![("BCC", keys(&["b"]))])).await);
    assert!(mandatory_returned(&ch, "d", "none", headers(vec![("CC", keys(&["zz"]))])).await);
    // BCC was the only header: the table stays, empty, as RabbitMQ delivers it.
    assert_eq!(
        drain_headers(&ch, "qb").await,
        [
            (
                "none".to_string(),
                Some(headers(vec![("CC", keys(&["b"]))]))
            ),
            ("none".to_string(), Some(FieldTable::default())),
        ]
    );
    broker.finish().await;
}

#[tokio::test]
async fn topic_exchange_matches_cc_keys_against_patterns() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming_channel(&broker).await;
    declare_exchange(&ch, "t", ExchangeKind::Topic).await;
    queue(&ch, "qa", "t", "a.*", FieldTable::default()).await;
    queue(&ch, "qb", "t", "b.#", FieldTable::default()).await;
    mandatory_returned(&ch, "t", "a.x", headers(vec![("CC", keys(&["b.y.z"]))])).await;
    mandatory_returned(&ch, "t", "none", headers(vec![("BCC", keys(&["a.y"]))])).await;
    assert_eq!(drain_headers(&ch, "qa").await.len(), 2);
    assert_eq!(drain_headers(&ch, "qb").await.len(), 1);
    broker.finish().await;
}

#[tokio::test]
async fn default_exchange_delivers_to_every_queue_named_by_a_key() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming_channel(&broker).await;
    for q in ["qa", "qb", "qc"] {
        queue(&ch, q, "", "", FieldTable::default()).await;
    }
    let sent = headers(vec![
        ("CC", keys(&["qb", "nosuch"])),
        ("BCC", keys(&["qc"])),
    ]);
    assert!(!mandatory_returned(&ch, "", "qa", sent).await);
    for q in ["qa", "qb", "qc"] {
        let got = drain_headers(&ch, q).await;
        assert_eq!(got.len(), 1, "{q}");
        assert_eq!(got[0].0, "qa");
    }
    broker.finish().await;
}

#[tokio::test]
async fn fanout_and_headers_exchanges_ignore_cc() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming_channel(&broker).await;
    declare_exchange(&ch, "f", ExchangeKind::Fanout).await;
    declare_exchange(&ch, "h", ExchangeKind::Headers).await;
    queue(&ch, "qf", "f", "", FieldTable::default()).await;
    let match_k = headers(vec![
        ("x-match", AMQPValue::LongString("any".into())),
        ("k", AMQPValue::LongString("v".into())),
    ]);
    queue(&ch, "qh", "h", "", match_k).await;
    queue(&ch, "qx", "", "", FieldTable::default()).await;
    mandatory_returned(&ch, "f", "zz", headers(vec![("CC", keys(&["qx"]))])).await;
    let h = headers(vec![
        ("CC", keys(&["qx"])),
        ("k", AMQPValue::LongString("v".into())),
    ]);
    mandatory_returned(&ch, "h", "zz", h).await;
    assert_eq!(drain_headers(&ch, "qf").await.len(), 1);
    assert_eq!(drain_headers(&ch, "qh").await.len(), 1);
    assert_eq!(drain_headers(&ch, "qx").await.len(), 0);
    broker.finish().await;
}

#[tokio::test]
async fn array_elements_that_are_not_strings_are_ignored() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming_channel(&broker).await;
    direct_abc(&ch).await;
    let mixed = AMQPValue::FieldArray(FieldArray::from(vec![
        AMQPValue::LongString("b".into()),
        AMQPValue::LongInt(5),
        AMQPValue::ByteArray(b"c".to_vec().into()),
    ]));
    mandatory_returned(&ch, "d", "a", headers(vec![("CC", mixed)])).await;
    assert_eq!(drain_headers(&ch, "qa").await.len(), 1);
    assert_eq!(drain_headers(&ch, "qb").await.len(), 1);
    assert_eq!(drain_headers(&ch, "qc").await.len(), 0);
    // Header names are case-sensitive: `cc` is an ordinary header.
    mandatory_returned(&ch, "d", "a", headers(vec![("cc", keys(&["b"]))])).await;
    assert_eq!(drain_headers(&ch, "qb").await.len(), 0);
    broker.finish().await;
}

/// Publishes with `headers` on a fresh channel and returns the close it caused.
async fn refused_with_headers(
    conn: &lapin::Connection,
    exchange: &str,
    headers: FieldTable,
) -> (u16, String) {
    let ch = confirm_channel_on(conn).await;
    let confirm = ch
        .basic_publish(
            exchange,
            "a",
            BasicPublishOptions::default(),
            b"m",
            BasicProperties::default().with_headers(headers),
        )
        .await
        .expect("basic.publish is sent");
    let e = within("the channel to close", confirm)
        .await
        .expect_err("the publish is refused");
    amqp_error(&e).unwrap_or_else(|| panic!("not an AMQP close: {e:?}"))
}

#[tokio::test]
async fn cc_or_bcc_that_is_not_an_array_closes_the_channel_406() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    direct_abc(&ch).await;
    for (header, value, type_name) in [
        ("CC", AMQPValue::LongString("b".into()), "longstr"),
        ("BCC", AMQPValue::LongString("b".into()), "longstr"),
        ("CC", AMQPValue::LongInt(5), "signedint"),
        ("CC", AMQPValue::Boolean(true), "bool"),
        ("CC", AMQPValue::FieldTable(FieldTable::default()), "table"),
        ("CC", AMQPValue::Void, "void"),
    ] {
        assert_eq!(
            refused_with_headers(&conn, "d", headers(vec![(header, value)])).await,
            (
                406,
                format!(
                    "PRECONDITION_FAILED - invalid message: \
                     {{unacceptable_type_in_header,\"{header}\",{type_name}}}"
                )
            )
        );
    }
    // A good CC does not excuse a bad BCC.
    let both = headers(vec![("CC", keys(&["b"])), ("BCC", AMQPValue::LongInt(7))]);
    assert_eq!(
        refused_with_headers(&conn, "d", both).await.1,
        "PRECONDITION_FAILED - invalid message: {unacceptable_type_in_header,\"BCC\",signedint}"
    );
    // A missing exchange is reported first.
    let bad = headers(vec![("CC", AMQPValue::LongString("b".into()))]);
    assert_eq!(
        refused_with_headers(&conn, "nosuch", bad).await,
        (404, "NOT_FOUND - no exchange 'nosuch' in vhost '/'".into())
    );
    // None of the refused messages was routed, and the connection lives on.
    for q in ["qa", "qb", "qc"] {
        assert_eq!(drain_headers(&ch, q).await.len(), 0, "{q}");
    }
    broker.finish().await;
}

#[tokio::test]
async fn bad_cc_inside_a_transaction_is_refused_at_publish_not_commit() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    direct_abc(&ch).await;
    ch.tx_select().await.expect("tx.select");
    // Listen for the close before publishing: the broker closes the channel as soon as it reads
    // the publish, and lapin may see that close before the test's next call is even sent (it then
    // refuses that call locally with `InvalidChannelState(Closing)`, carrying no reply code).
    let closed = on_channel_close(&ch);
    ch.basic_publish(
        "d",
        "a",
        BasicPublishOptions::default(),
        b"m",
        BasicProperties::default()
            .with_headers(headers(vec![("CC", AMQPValue::LongString("b".into()))])),
    )
    .await
    .expect("basic.publish is sent");
    // No tx.commit is ever sent: the close comes from the publish alone.
    assert_eq!(
        closed_with(closed).await,
        (
            406,
            "PRECONDITION_FAILED - invalid message: {unacceptable_type_in_header,\"CC\",longstr}"
                .into()
        )
    );
    assert!(
        ch.tx_commit().await.is_err(),
        "the channel is closed, nothing to commit"
    );
    broker.finish().await;
}
