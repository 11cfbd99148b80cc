//! lapin helpers shared by the tests: declaring with x-arguments, publishing with properties,
//! reading headers the way a client sees them, and polling with a deadline.

use super::{amqp_error, within, TestBroker, WAIT};
use futures_lite::StreamExt;
use lapin::message::{BasicGetMessage, Delivery};
use lapin::options::*;
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, Consumer, ExchangeKind};
use std::future::Future;
use std::time::Duration;

/// A field table from `(key, value)` pairs.
pub fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert((*k).into(), v.clone());
    }
    t
}

/// A long-string field value.
pub fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(v.into())
}

/// A signed 32-bit field value (what most clients send for small numbers).
pub fn int(v: i32) -> AMQPValue {
    AMQPValue::LongInt(v)
}

/// A signed 64-bit field value.
pub fn long(v: i64) -> AMQPValue {
    AMQPValue::LongLongInt(v)
}

/// queue.declare with arguments and default flags.
pub async fn declare_with(
    ch: &Channel,
    name: &str,
    args: &[(&str, AMQPValue)],
) -> lapin::Result<lapin::Queue> {
    ch.queue_declare(name, QueueDeclareOptions::default(), table(args))
        .await
}

/// queue.declare that must succeed.
pub async fn declare(ch: &Channel, name: &str, args: &[(&str, AMQPValue)]) {
    declare_with(ch, name, args).await.expect("queue.declare");
}

/// The reply code and text of the close a failed call caused.
pub fn refused<T: std::fmt::Debug>(result: lapin::Result<T>) -> (u16, String) {
    let e = result.expect_err("the broker should refuse this");
    amqp_error(&e).unwrap_or_else(|| panic!("not an AMQP close: {e:?}"))
}

/// basic.publish (not waiting for a confirm).
pub async fn publish_props(
    ch: &Channel,
    exchange: &str,
    key: &str,
    body: impl AsRef<[u8]>,
    props: BasicProperties,
) {
    ch.basic_publish(
        exchange,
        key,
        BasicPublishOptions::default(),
        body.as_ref(),
        props,
    )
    .await
    .expect("basic.publish");
}

/// basic.publish to the default exchange without properties.
pub async fn publish(ch: &Channel, queue: &str, body: impl AsRef<[u8]>) {
    publish_props(ch, "", queue, body, BasicProperties::default()).await;
}

/// Publishes with a per-message TTL (`expiration`).
pub async fn publish_expiring(ch: &Channel, queue: &str, body: &str, ms: &str) {
    publish_props(
        ch,
        "",
        queue,
        body,
        BasicProperties::default().with_expiration(ms.into()),
    )
    .await;
}

/// Ready messages in `queue` (passive declare); also a round trip, so every publish on `ch`
/// before it was handled.
pub async fn ready_count(ch: &Channel, queue: &str) -> u32 {
    let options = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    ch.queue_declare(queue, options, FieldTable::default())
        .await
        .expect("passive queue.declare")
        .message_count()
}

/// Whether the queue exists, checked on a throwaway channel (a 404 closes it).
pub async fn queue_exists(conn: &lapin::Connection, queue: &str) -> bool {
    let ch = conn.create_channel().await.expect("channel");
    let options = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    match ch
        .queue_declare(queue, options, FieldTable::default())
        .await
    {
        Ok(_) => {
            let _ = ch.close(200, "bye").await;
            true
        }
        Err(e) => {
            assert_eq!(amqp_error(&e).map(|(c, _)| c), Some(404), "{e:?}");
            false
        }
    }
}

/// basic.get with acknowledgement required.
pub async fn get(ch: &Channel, queue: &str) -> Option<BasicGetMessage> {
    ch.basic_get(queue, BasicGetOptions { no_ack: false })
        .await
        .expect("basic.get")
}

/// basic.get with acknowledgement required, of a message that must be there.
pub async fn get_one(ch: &Channel, queue: &str) -> BasicGetMessage {
    get(ch, queue).await.expect("a message, not get-empty")
}

/// basic.get no-ack; the body.
pub async fn get_body(ch: &Channel, queue: &str) -> Option<String> {
    ch.basic_get(queue, BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
        .map(|m| text(&m.delivery).to_owned())
}

/// Every ready message, taken no-ack. basic.get is ordered after every earlier publish on the
/// same channel, so no waiting is needed.
pub async fn drain_deliveries(ch: &Channel, queue: &str) -> Vec<Delivery> {
    let mut all = Vec::new();
    let options = BasicGetOptions { no_ack: true };
    while let Some(m) = ch.basic_get(queue, options).await.expect("basic.get") {
        all.push(m.delivery);
    }
    all
}

/// Every ready message's body, taken no-ack.
pub async fn drain(ch: &Channel, queue: &str) -> Vec<String> {
    let all = drain_deliveries(ch, queue).await;
    all.iter().map(|d| text(d).to_owned()).collect()
}

/// basic.consume with arguments.
pub async fn consume_with(
    ch: &Channel,
    queue: &str,
    tag: &str,
    no_ack: bool,
    args: &[(&str, AMQPValue)],
) -> lapin::Result<Consumer> {
    let options = BasicConsumeOptions {
        no_ack,
        ..Default::default()
    };
    ch.basic_consume(queue, tag, options, table(args)).await
}

/// basic.consume (acknowledgement required, no arguments) that must succeed.
pub async fn consume(ch: &Channel, queue: &str, tag: &str) -> Consumer {
    consume_with(ch, queue, tag, false, &[])
        .await
        .expect("basic.consume")
}

/// The next delivery of `consumer`.
pub async fn next(consumer: &mut Consumer) -> Delivery {
    within("a delivery", consumer.next())
        .await
        .expect("consumer stream ended")
        .expect("delivery")
}

/// Asserts nothing more was delivered to `consumer`: deliveries are written before the reply to
/// any later method on the same connection, so after a round trip on `ch` (same connection)
/// anything the broker meant to deliver is in the stream.
pub async fn assert_no_delivery(consumer: &mut Consumer, ch: &Channel, queue: &str) {
    ready_count(ch, queue).await;
    if let Some(Some(d)) = futures_lite::future::poll_once(consumer.next()).await {
        panic!("unexpected delivery: {:?}", d.map(|d| text(&d).to_owned()));
    }
}

/// A delivery's body as text.
pub fn text(d: &Delivery) -> &str {
    std::str::from_utf8(&d.data).expect("utf-8 body")
}

/// Polls `check` every 10 ms until it yields `Some`, failing after [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `queue` holds exactly `n` ready messages.
pub async fn wait_ready(ch: &Channel, queue: &str, n: u32) {
    eventually(&format!("{n} ready messages in {queue}"), || async {
        (ready_count(ch, queue).await == n).then_some(())
    })
    .await
}

/// A header of a delivered message.
pub fn header<'a>(props: &'a BasicProperties, key: &str) -> Option<&'a AMQPValue> {
    props.headers().as_ref()?.inner().get(key)
}

/// A header that must be a long string.
pub fn header_str(props: &BasicProperties, key: &str) -> Option<String> {
    header(props, key)?.as_long_string().map(|s| s.to_string())
}

/// The `x-death` entries of a message, most recent first.
pub fn x_death(props: &BasicProperties) -> Vec<FieldTable> {
    match header(props, "x-death") {
        Some(AMQPValue::FieldArray(a)) => a
            .as_slice()
            .iter()
            .map(|v| {
                v.as_field_table()
                    .expect("x-death entries are tables")
                    .clone()
            })
            .collect(),
        other => panic!("no x-death array: {other:?}"),
    }
}

/// A string field of an `x-death` entry.
pub fn field_str(t: &FieldTable, key: &str) -> String {
    match t.inner().get(key) {
        Some(AMQPValue::LongString(s)) => s.to_string(),
        other => panic!("{key} is not a long string: {other:?}"),
    }
}

/// The `count` of an `x-death` entry (a long, as RabbitMQ writes it).
pub fn death_count(t: &FieldTable) -> i64 {
    match t.inner().get("count") {
        Some(AMQPValue::LongLongInt(n)) => *n,
        other => panic!("count is not a long: {other:?}"),
    }
}

/// The `routing-keys` of an `x-death` entry.
pub fn routing_keys(t: &FieldTable) -> Vec<String> {
    match t.inner().get("routing-keys") {
        Some(AMQPValue::FieldArray(a)) => a
            .as_slice()
            .iter()
            .map(|v| {
                v.as_long_string()
                    .expect("routing keys are strings")
                    .to_string()
            })
            .collect(),
        other => panic!("routing-keys is not an array: {other:?}"),
    }
}

/// Publishes to the default exchange and waits for the broker's confirm (the channel must be in
/// confirm mode).
pub async fn publish_confirm(ch: &Channel, queue: &str, body: impl AsRef<[u8]>) -> Confirmation {
    let confirm = ch
        .basic_publish(
            "",
            queue,
            BasicPublishOptions::default(),
            body.as_ref(),
            BasicProperties::default(),
        )
        .await
        .expect("basic.publish");
    within("a publisher confirm", confirm)
        .await
        .expect("confirmation")
}

/// Waits for a confirm and says whether it was an ack.
pub async fn confirmed(ch: &Channel, queue: &str, body: &str) -> bool {
    publish_confirm(ch, queue, body).await.is_ack()
}

/// exchange.declare with arguments and default flags, which must succeed.
pub async fn declare_exchange_args(
    ch: &Channel,
    name: &str,
    kind: ExchangeKind,
    arguments: FieldTable,
) {
    ch.exchange_declare(name, kind, ExchangeDeclareOptions::default(), arguments)
        .await
        .unwrap_or_else(|e| panic!("exchange.declare {name}: {e:?}"));
}

/// exchange.declare without arguments, which must succeed.
pub async fn declare_exchange(ch: &Channel, name: &str, kind: ExchangeKind) {
    declare_exchange_args(ch, name, kind, FieldTable::default()).await;
}

/// queue.bind without arguments.
pub async fn try_bind(ch: &Channel, queue: &str, exchange: &str, key: &str) -> lapin::Result<()> {
    ch.queue_bind(
        queue,
        exchange,
        key,
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
}

/// queue.bind without arguments, which must succeed.
pub async fn bind(ch: &Channel, queue: &str, exchange: &str, key: &str) {
    try_bind(ch, queue, exchange, key)
        .await
        .expect("queue.bind");
}

/// A new exclusive server-named queue.
pub async fn temp_queue(ch: &Channel) -> String {
    let options = QueueDeclareOptions {
        exclusive: true,
        ..Default::default()
    };
    let q = ch
        .queue_declare("", options, FieldTable::default())
        .await
        .expect("queue.declare");
    q.name().to_string()
}

/// A new exclusive queue bound to `exchange` with `key` and `arguments`.
pub async fn bound_queue(ch: &Channel, exchange: &str, key: &str, arguments: FieldTable) -> String {
    let q = temp_queue(ch).await;
    ch.queue_bind(&q, exchange, key, QueueBindOptions::default(), arguments)
        .await
        .expect("queue.bind");
    q
}

/// basic.publish of a message whose body is its routing key, so a queue's contents show how
/// each message was routed.
pub async fn publish_key(ch: &Channel, exchange: &str, key: &str) {
    publish_props(ch, exchange, key, key, BasicProperties::default()).await;
}

/// A new channel on `conn` in confirm mode.
pub async fn confirm_channel_on(conn: &Connection) -> Channel {
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    ch
}

/// A connection to `broker` and a channel on it in confirm mode.
pub async fn confirming_channel(broker: &TestBroker) -> (Connection, Channel) {
    let conn = broker.connect().await;
    let ch = confirm_channel_on(&conn).await;
    (conn, ch)
}
