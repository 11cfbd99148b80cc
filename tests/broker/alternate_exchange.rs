//! Alternate exchanges (the `alternate-exchange` exchange argument) through lapin: what an
//! exchange cannot route goes to its alternate, recursively and without loops, and a mandatory
//! publish that an alternate routed is not returned. Every expectation was first run with pika
//! against RabbitMQ 3.10.8 (routing results, returns and reply texts).

use crate::common::*;
use lapin::options::{BasicPublishOptions, ExchangeBindOptions, ExchangeDeclareOptions};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, ExchangeKind};

fn with_alternate(name: &str) -> FieldTable {
    let mut t = FieldTable::default();
    t.insert(
        "alternate-exchange".into(),
        AMQPValue::LongString(name.into()),
    );
    t
}

/// (exchange, routing key, body) of every message in `queue`, taking them off it. basic.get is
/// ordered after every earlier publish on the channel, so no waiting is needed.
async fn drain_routed(ch: &Channel, queue: &str) -> Vec<(String, String, String)> {
    let all = drain_deliveries(ch, queue).await;
    all.iter()
        .map(|d| {
            (
                d.exchange.to_string(),
                d.routing_key.to_string(),
                text(d).to_owned(),
            )
        })
        .collect()
}

fn got(exchange: &str, key: &str, body: &str) -> (String, String, String) {
    (exchange.into(), key.into(), body.into())
}

/// Publishes `body` (mandatory) on a channel in confirm mode; returns the returned message's
/// (reply code, exchange, routing key) if the broker sent it back.
async fn publish_mandatory(
    ch: &Channel,
    exchange: &str,
    key: &str,
    body: &str,
) -> Option<(u16, String, String)> {
    let confirm = ch
        .basic_publish(
            exchange,
            key,
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            body.as_bytes(),
            BasicProperties::default(),
        )
        .await
        .expect("basic.publish");
    let confirmation = within("the publisher confirm", confirm)
        .await
        .expect("confirm");
    assert!(confirmation.is_ack(), "{confirmation:?}");
    let Confirmation::Ack(returned) = confirmation else {
        unreachable!()
    };
    returned.map(|r| {
        (
            r.reply_code,
            r.delivery.exchange.to_string(),
            r.delivery.routing_key.to_string(),
        )
    })
}

#[tokio::test]
async fn unroutable_message_goes_to_the_alternate_exchange_with_its_exchange_and_key() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming_channel(&broker).await;
    declare_exchange_args(&ch, "ae", ExchangeKind::Fanout, FieldTable::default()).await;
    declare_exchange_args(&ch, "main", ExchangeKind::Direct, with_alternate("ae")).await;
    let routed = bound_queue(&ch, "main", "known", FieldTable::default()).await;
    let caught = bound_queue(&ch, "ae", "", FieldTable::default()).await;
    assert_eq!(publish_mandatory(&ch, "main", "known", "one").await, None);
    assert_eq!(publish_mandatory(&ch, "main", "unknown", "two").await, None);
    assert_eq!(
        drain_routed(&ch, &routed).await,
        [got("main", "known", "one")]
    );
    // The alternate does not change what the consumer sees: still `main` and `unknown`.
    assert_eq!(
        drain_routed(&ch, &caught).await,
        [got("main", "unknown", "two")]
    );
    broker.finish().await;
}

#[tokio::test]
async fn alternate_exchanges_chain_until_one_routes() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming_channel(&broker).await;
    declare_exchange_args(&ch, "ae2", ExchangeKind::Fanout, FieldTable::default()).await;
    declare_exchange_args(&ch, "ae1", ExchangeKind::Direct, with_alternate("ae2")).await;
    declare_exchange_args(&ch, "main", ExchangeKind::Topic, with_alternate("ae1")).await;
    let q_main = bound_queue(&ch, "main", "a.*", FieldTable::default()).await;
    let q_ae1 = bound_queue(&ch, "ae1", "b", FieldTable::default()).await;
    let q_ae2 = bound_queue(&ch, "ae2", "", FieldTable::default()).await;
    for key in ["a.x", "b", "c"] {
        assert_eq!(publish_mandatory(&ch, "main", key, key).await, None);
    }
    assert_eq!(
        drain_routed(&ch, &q_main).await,
        [got("main", "a.x", "a.x")]
    );
    assert_eq!(drain_routed(&ch, &q_ae1).await, [got("main", "b", "b")]);
    assert_eq!(drain_routed(&ch, &q_ae2).await, [got("main", "c", "c")]);
    broker.finish().await;
}

#[tokio::test]
async fn mandatory_publish_that_no_alternate_routes_is_returned_as_published() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming_channel(&broker).await;
    declare_exchange_args(&ch, "ae", ExchangeKind::Direct, FieldTable::default()).await;
    declare_exchange_args(&ch, "main", ExchangeKind::Direct, with_alternate("ae")).await;
    bound_queue(&ch, "ae", "only-this", FieldTable::default()).await;
    assert_eq!(
        publish_mandatory(&ch, "main", "other", "x").await,
        Some((312, "main".into(), "other".into()))
    );
    assert_eq!(publish_mandatory(&ch, "main", "only-this", "y").await, None);
    broker.finish().await;
}

#[tokio::test]
async fn alternate_exchanges_in_a_loop_stop_and_the_message_is_returned() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming_channel(&broker).await;
    // Declared before its alternate exists: allowed, as in RabbitMQ.
    declare_exchange_args(&ch, "loop1", ExchangeKind::Direct, with_alternate("loop2")).await;
    declare_exchange_args(&ch, "loop2", ExchangeKind::Direct, with_alternate("loop1")).await;
    assert_eq!(
        publish_mandatory(&ch, "loop1", "k", "x").await,
        Some((312, "loop1".into(), "k".into()))
    );
    // The loop is left as soon as something routes.
    let q = bound_queue(&ch, "loop2", "k", FieldTable::default()).await;
    assert_eq!(publish_mandatory(&ch, "loop1", "k", "y").await, None);
    assert_eq!(drain_routed(&ch, &q).await, [got("loop1", "k", "y")]);
    broker.finish().await;
}

#[tokio::test]
async fn missing_alternate_routes_nothing_until_it_is_declared() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming_channel(&broker).await;
    declare_exchange_args(&ch, "main", ExchangeKind::Direct, with_alternate("later")).await;
    assert_eq!(
        publish_mandatory(&ch, "main", "k", "x").await,
        Some((312, "main".into(), "k".into()))
    );
    declare_exchange_args(&ch, "later", ExchangeKind::Fanout, FieldTable::default()).await;
    let q = bound_queue(&ch, "later", "", FieldTable::default()).await;
    assert_eq!(publish_mandatory(&ch, "main", "k", "y").await, None);
    assert_eq!(drain_routed(&ch, &q).await, [got("main", "k", "y")]);
    broker.finish().await;
}

#[tokio::test]
async fn exchange_routing_to_another_exchange_does_not_use_its_alternate() {
    // RabbitMQ applies an exchange's alternate only when the exchange itself routed nowhere,
    // not even to an exchange; the destination exchange's own alternate still applies.
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming_channel(&broker).await;
    declare_exchange_args(&ch, "ae.src", ExchangeKind::Fanout, FieldTable::default()).await;
    declare_exchange_args(&ch, "ae.dst", ExchangeKind::Fanout, FieldTable::default()).await;
    declare_exchange_args(&ch, "src", ExchangeKind::Fanout, with_alternate("ae.src")).await;
    declare_exchange_args(&ch, "dst", ExchangeKind::Direct, with_alternate("ae.dst")).await;
    ch.exchange_bind(
        "dst",
        "src",
        "",
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange.bind");
    let q_src = bound_queue(&ch, "ae.src", "", FieldTable::default()).await;
    let q_dst = bound_queue(&ch, "ae.dst", "", FieldTable::default()).await;
    assert_eq!(publish_mandatory(&ch, "src", "k", "x").await, None);
    assert_eq!(drain_routed(&ch, &q_src).await, []);
    assert_eq!(drain_routed(&ch, &q_dst).await, [got("src", "k", "x")]);
    broker.finish().await;
}

#[tokio::test]
async fn internal_exchange_serves_as_an_alternate() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming_channel(&broker).await;
    let internal = ExchangeDeclareOptions {
        internal: true,
        ..Default::default()
    };
    ch.exchange_declare(
        "hidden",
        ExchangeKind::Fanout,
        internal,
        FieldTable::default(),
    )
    .await
    .expect("declare internal");
    declare_exchange_args(&ch, "main", ExchangeKind::Headers, with_alternate("hidden")).await;
    let q = bound_queue(&ch, "hidden", "", FieldTable::default()).await;
    assert_eq!(publish_mandatory(&ch, "main", "k", "x").await, None);
    assert_eq!(drain_routed(&ch, &q).await, [got("main", "k", "x")]);
    broker.finish().await;
}

#[tokio::test]
async fn default_exchange_as_alternate_routes_nothing() {
    // RabbitMQ 3.10 accepts `alternate-exchange: ""` but routes nothing through it (checked
    // with pika: the message is returned even though a queue named like the key exists).
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming_channel(&broker).await;
    declare_exchange_args(&ch, "main", ExchangeKind::Direct, with_alternate("")).await;
    let q = bound_queue(&ch, "amq.fanout", "", FieldTable::default()).await;
    assert_eq!(
        publish_mandatory(&ch, "main", &q, "x").await,
        Some((312, "main".into(), q.clone()))
    );
    assert_eq!(drain_routed(&ch, &q).await, []);
    broker.finish().await;
}

#[tokio::test]
async fn alternate_exchange_argument_of_another_type_closes_the_channel_406() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    for (value, type_name) in [
        (AMQPValue::LongInt(5), "signedint"),
        (AMQPValue::Boolean(true), "bool"),
        (AMQPValue::ByteArray(b"x".to_vec().into()), "binary"),
        (AMQPValue::FieldTable(FieldTable::default()), "table"),
        (AMQPValue::Void, "void"),
    ] {
        let ch = conn.create_channel().await.expect("channel");
        let mut args = FieldTable::default();
        args.insert("alternate-exchange".into(), value);
        let e = ch
            .exchange_declare("bad", ExchangeKind::Direct, Default::default(), args)
            .await
            .expect_err("declare is refused");
        assert_eq!(
            amqp_error(&e),
            Some((
                406,
                format!(
                    "PRECONDITION_FAILED - invalid type '{type_name}' for arg \
                     'alternate-exchange' in exchange 'bad' in vhost '/'"
                )
            ))
        );
    }
    // Nothing was declared.
    let ch = conn.create_channel().await.expect("channel");
    let passive = ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let e = ch
        .exchange_declare("bad", ExchangeKind::Direct, passive, FieldTable::default())
        .await
        .expect_err("no such exchange");
    assert_eq!(amqp_error(&e).map(|(code, _)| code), Some(404));
    broker.finish().await;
}

#[tokio::test]
async fn redeclare_must_repeat_the_alternate_exchange() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    declare_exchange_args(&ch, "main", ExchangeKind::Direct, with_alternate("a")).await;
    declare_exchange_args(&ch, "main", ExchangeKind::Direct, with_alternate("a")).await;
    let e = ch
        .exchange_declare(
            "main",
            ExchangeKind::Direct,
            Default::default(),
            FieldTable::default(),
        )
        .await
        .expect_err("inequivalent");
    assert_eq!(
        amqp_error(&e),
        Some((
            406,
            "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange 'main' in \
             vhost '/': received none but current is the value 'a' of type 'longstr'"
                .into()
        ))
    );
    // An existing exchange is compared, not validated: RabbitMQ reports the mismatch.
    let ch = conn.create_channel().await.expect("channel");
    let mut args = FieldTable::default();
    args.insert("alternate-exchange".into(), AMQPValue::LongInt(5));
    let e = ch
        .exchange_declare("main", ExchangeKind::Direct, Default::default(), args)
        .await
        .expect_err("inequivalent");
    assert_eq!(
        amqp_error(&e),
        Some((
            406,
            "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange 'main' in \
             vhost '/': received '5' but current is 'a'"
                .into()
        ))
    );
    broker.finish().await;
}

#[tokio::test]
async fn alternate_exchange_also_catches_sender_selected_misses() {
    // CC keys count as routing keys: a message routed only by its CC does not reach the
    // alternate, and one that neither key routes does.
    let broker = TestBroker::start().await;
    let (_conn, ch) = confirming_channel(&broker).await;
    declare_exchange_args(&ch, "ae", ExchangeKind::Fanout, FieldTable::default()).await;
    declare_exchange_args(&ch, "main", ExchangeKind::Direct, with_alternate("ae")).await;
    let q_b = bound_queue(&ch, "main", "b", FieldTable::default()).await;
    let q_ae = bound_queue(&ch, "ae", "", FieldTable::default()).await;
    for (cc, body) in [("b", "routed by cc"), ("c", "to the alternate")] {
        let mut headers = FieldTable::default();
        headers.insert(
            "CC".into(),
            AMQPValue::FieldArray(vec![AMQPValue::LongString(LongString::from(cc))].into()),
        );
        ch.basic_publish(
            "main",
            "a",
            BasicPublishOptions::default(),
            body.as_bytes(),
            BasicProperties::default().with_headers(headers),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    }
    assert_eq!(
        drain_routed(&ch, &q_b).await,
        [got("main", "a", "routed by cc")]
    );
    assert_eq!(
        drain_routed(&ch, &q_ae).await,
        [got("main", "a", "to the alternate")]
    );
    broker.finish().await;
}
