//! The interop scenarios written with `lapin` (2.5), the most used Rust AMQP client.

use crate::{ensure_eq, fib, pattern, retry_connect, scenarios, within, Ctx, Scenario, Skip};
use anyhow::{anyhow, bail, Context as _, Result};
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Every lapin scenario, in the order of `interop/README.md`.
pub const SCENARIOS: &[Scenario] = scenarios![
    hello_world,
    work_queues,
    publish_subscribe,
    routing,
    topics,
    rpc,
    rpc_direct_reply_to,
    confirms_single,
    confirms_batch,
    confirms_async,
    consumer_cancel_on_delete,
    mandatory_return,
    redeclare_406_channel_only,
    large_message,
    headers_roundtrip,
    restart_durable,
];

/// A lapin connection driven by the current tokio runtime.
pub async fn connect_url(url: &str) -> lapin::Result<Connection> {
    let props = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio)
        .with_connection_name("warren-interop lapin".into());
    Connection::connect(url, props).await
}

async fn connect(ctx: &Ctx) -> Result<Connection> {
    within("connection.open-ok", connect_url(&ctx.url))
        .await?
        .context("connecting")
}

async fn channel(conn: &Connection) -> Result<Channel> {
    conn.create_channel().await.context("opening a channel")
}

fn no_args() -> FieldTable {
    FieldTable::default()
}

async fn declare(ch: &Channel, name: &str, opts: QueueDeclareOptions) -> Result<String> {
    let q = ch
        .queue_declare(name, opts, no_args())
        .await
        .with_context(|| format!("declaring queue {name:?}"))?;
    Ok(q.name().to_string())
}

/// A server-named exclusive queue (tutorials 3-6).
async fn declare_exclusive(ch: &Channel) -> Result<String> {
    let opts = QueueDeclareOptions {
        exclusive: true,
        ..Default::default()
    };
    declare(ch, "", opts).await
}

async fn publish(ch: &Channel, exchange: &str, key: &str, body: &[u8]) -> Result<()> {
    ch.basic_publish(
        exchange,
        key,
        BasicPublishOptions::default(),
        body,
        BasicProperties::default(),
    )
    .await
    .with_context(|| format!("publishing to {exchange:?}/{key:?}"))?;
    Ok(())
}

/// Publishes and waits for the broker's ack (the channel must be in confirm mode).
async fn publish_confirmed(
    ch: &Channel,
    exchange: &str,
    key: &str,
    body: &[u8],
    props: BasicProperties,
) -> Result<()> {
    let confirm = ch
        .basic_publish(exchange, key, BasicPublishOptions::default(), body, props)
        .await
        .context("publishing")?;
    match within("a publisher confirm", confirm).await?? {
        Confirmation::Ack(None) => Ok(()),
        other => bail!("expected a plain ack, got {other:?}"),
    }
}

async fn consume(ch: &Channel, queue: &str, no_ack: bool) -> Result<Consumer> {
    let opts = BasicConsumeOptions {
        no_ack,
        ..Default::default()
    };
    ch.basic_consume(queue, "", opts, no_args())
        .await
        .with_context(|| format!("consuming from {queue:?}"))
}

async fn next(consumer: &mut Consumer, what: &str) -> Result<lapin::message::Delivery> {
    match within(what, consumer.next()).await? {
        Some(d) => d.with_context(|| format!("receiving {what}")),
        None => bail!("the consumer was cancelled while waiting for {what}"),
    }
}

/// Every message ready in `queue`, by basic.get with auto-ack.
async fn drain(ch: &Channel, queue: &str) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    while let Some(m) = ch
        .basic_get(queue, BasicGetOptions { no_ack: true })
        .await
        .context("basic.get")?
    {
        out.push(m.delivery.data);
    }
    Ok(out)
}

fn strings(bodies: Vec<Vec<u8>>) -> Vec<String> {
    bodies
        .into_iter()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect()
}

/// Tutorial 1: "Hello World!" through the default exchange.
pub async fn hello_world(ctx: Arc<Ctx>) -> Result<()> {
    let conn = connect(&ctx).await?;
    let ch = channel(&conn).await?;
    let queue = declare(&ch, &ctx.queue("hello"), Default::default()).await?;
    publish(&ch, "", &queue, b"Hello World!").await?;
    let mut consumer = consume(&ch, &queue, true).await?;
    let d = next(&mut consumer, "the message").await?;
    ensure_eq!(d.data, b"Hello World!".to_vec(), "body");
    ensure_eq!(d.routing_key.as_str(), queue.as_str(), "routing key");
    conn.close(200, "bye").await?;
    Ok(())
}

/// Tutorial 2: a durable task queue, persistent tasks, manual acks and prefetch 1, so a slow
/// worker holds one task while a fast one takes the rest (fair dispatch).
pub async fn work_queues(ctx: Arc<Ctx>) -> Result<()> {
    const TASKS: usize = 12;
    let queue = ctx.queue("task_queue");
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut workers = Vec::new();
    for (worker, pause_ms) in [("slow", 400u64), ("fast", 5)] {
        let conn = connect(&ctx).await?;
        let ch = channel(&conn).await?;
        declare(&ch, &queue, durable).await?;
        ch.basic_qos(1, BasicQosOptions::default()).await?;
        let mut consumer = consume(&ch, &queue, false).await?;
        let tx = tx.clone();
        workers.push(tokio::spawn(async move {
            while let Some(Ok(d)) = consumer.next().await {
                tokio::time::sleep(Duration::from_millis(pause_ms)).await;
                let _ = tx.send((worker, d.data.clone()));
                if d.ack(BasicAckOptions::default()).await.is_err() {
                    break;
                }
            }
            drop(conn);
        }));
    }
    let conn = connect(&ctx).await?;
    let ch = channel(&conn).await?;
    declare(&ch, &queue, durable).await?;
    for i in 0..TASKS {
        let props = BasicProperties::default().with_delivery_mode(2);
        let body = format!("task {i}");
        ch.basic_publish("", &queue, Default::default(), body.as_bytes(), props)
            .await?;
    }
    let mut done: HashMap<&str, Vec<String>> = HashMap::new();
    for _ in 0..TASKS {
        let (worker, body) = within("a worker to finish a task", rx.recv())
            .await?
            .ok_or_else(|| anyhow!("the workers stopped"))?;
        done.entry(worker)
            .or_default()
            .push(String::from_utf8_lossy(&body).into_owned());
    }
    for w in &workers {
        w.abort();
    }
    let slow = done.get("slow").map_or(0, Vec::len);
    let fast = done.get("fast").map_or(0, Vec::len);
    let mut all: Vec<String> = done.into_values().flatten().collect();
    all.sort_by_key(|s| s[5..].parse::<usize>().unwrap_or(usize::MAX));
    let expected: Vec<String> = (0..TASKS).map(|i| format!("task {i}")).collect();
    ensure_eq!(all, expected, "every task done exactly once");
    if slow > 2 || fast < TASKS - 2 {
        bail!("no fair dispatch with prefetch 1: slow worker did {slow} tasks, fast one {fast}");
    }
    conn.close(200, "bye").await?;
    Ok(())
}

/// Tutorial 3: a fanout exchange copies every message to each bound queue.
pub async fn publish_subscribe(ctx: Arc<Ctx>) -> Result<()> {
    let conn = connect(&ctx).await?;
    let ch = channel(&conn).await?;
    let logs = ctx.exchange("logs");
    ch.exchange_declare(&logs, ExchangeKind::Fanout, Default::default(), no_args())
        .await?;
    let mut consumers = Vec::new();
    for _ in 0..2 {
        let q = declare_exclusive(&ch).await?;
        ch.queue_bind(&q, &logs, "", Default::default(), no_args())
            .await?;
        consumers.push(consume(&ch, &q, true).await?);
    }
    let lines = ["info: one", "warning: two", "error: three"];
    for line in lines {
        publish(&ch, &logs, "ignored", line.as_bytes()).await?;
    }
    for consumer in &mut consumers {
        for line in lines {
            let d = next(consumer, "a log line").await?;
            ensure_eq!(String::from_utf8_lossy(&d.data), line, "log line");
        }
    }
    ch.exchange_delete(&logs, Default::default()).await?;
    conn.close(200, "bye").await?;
    Ok(())
}

/// Tutorial 4: a direct exchange routes by exact key; a queue may bind several keys.
pub async fn routing(ctx: Arc<Ctx>) -> Result<()> {
    let conn = connect(&ctx).await?;
    let ch = channel(&conn).await?;
    ch.confirm_select(Default::default()).await?;
    let direct = ctx.exchange("direct_logs");
    ch.exchange_declare(&direct, ExchangeKind::Direct, Default::default(), no_args())
        .await?;
    let errors = declare_exclusive(&ch).await?;
    let all = declare_exclusive(&ch).await?;
    ch.queue_bind(&errors, &direct, "error", Default::default(), no_args())
        .await?;
    for key in ["info", "warning", "error"] {
        ch.queue_bind(&all, &direct, key, Default::default(), no_args())
            .await?;
    }
    for key in ["error", "info", "warning", "debug"] {
        let body = format!("{key} message");
        publish_confirmed(&ch, &direct, key, body.as_bytes(), Default::default()).await?;
    }
    ensure_eq!(
        strings(drain(&ch, &errors).await?),
        vec!["error message"],
        "queue bound to 'error'"
    );
    ensure_eq!(
        strings(drain(&ch, &all).await?),
        vec!["error message", "info message", "warning message"],
        "queue bound to info, warning and error"
    );
    ch.exchange_delete(&direct, Default::default()).await?;
    conn.close(200, "bye").await?;
    Ok(())
}

/// The routing keys of tutorial 5, in publish order.
pub const TOPIC_KEYS: [&str; 10] = [
    "quick.orange.rabbit",
    "lazy.orange.elephant",
    "quick.orange.fox",
    "lazy.brown.fox",
    "lazy.pink.rabbit",
    "quick.brown.fox",
    "quick.orange.new.rabbit",
    "lazy.orange.new.rabbit",
    "orange",
    "lazy",
];
/// What reaches the queue bound with `*.orange.*`.
pub const TOPIC_Q1: [&str; 3] = [
    "quick.orange.rabbit",
    "lazy.orange.elephant",
    "quick.orange.fox",
];
/// What reaches the queue bound with `*.*.rabbit` and `lazy.#` (each message once).
pub const TOPIC_Q2: [&str; 6] = [
    "quick.orange.rabbit",
    "lazy.orange.elephant",
    "lazy.brown.fox",
    "lazy.pink.rabbit",
    "lazy.orange.new.rabbit",
    "lazy",
];

/// Tutorial 5: a topic exchange with `*` and `#` patterns.
pub async fn topics(ctx: Arc<Ctx>) -> Result<()> {
    let conn = connect(&ctx).await?;
    let ch = channel(&conn).await?;
    ch.confirm_select(Default::default()).await?;
    let topic = ctx.exchange("topic_logs");
    ch.exchange_declare(&topic, ExchangeKind::Topic, Default::default(), no_args())
        .await?;
    let q1 = declare_exclusive(&ch).await?;
    let q2 = declare_exclusive(&ch).await?;
    ch.queue_bind(&q1, &topic, "*.orange.*", Default::default(), no_args())
        .await?;
    for pattern in ["*.*.rabbit", "lazy.#"] {
        ch.queue_bind(&q2, &topic, pattern, Default::default(), no_args())
            .await?;
    }
    for key in TOPIC_KEYS {
        publish_confirmed(&ch, &topic, key, key.as_bytes(), Default::default()).await?;
    }
    ensure_eq!(
        strings(drain(&ch, &q1).await?),
        TOPIC_Q1.to_vec(),
        "*.orange.*"
    );
    ensure_eq!(
        strings(drain(&ch, &q2).await?),
        TOPIC_Q2.to_vec(),
        "*.*.rabbit + lazy.#"
    );
    ch.exchange_delete(&topic, Default::default()).await?;
    conn.close(200, "bye").await?;
    Ok(())
}

/// The RPC server of tutorial 6: answers fib(n) to each request's reply_to with its
/// correlation_id, acking after replying; reports each request's reply_to.
async fn rpc_server(
    ctx: &Ctx,
    queue: &str,
) -> Result<(
    tokio::task::JoinHandle<()>,
    tokio::sync::mpsc::UnboundedReceiver<String>,
)> {
    let conn = connect(ctx).await?;
    let ch = channel(&conn).await?;
    declare(&ch, queue, Default::default()).await?;
    ch.basic_qos(1, Default::default()).await?;
    let mut requests = consume(&ch, queue, false).await?;
    let (seen_tx, seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Some(Ok(d)) = requests.next().await {
            let n: u64 = String::from_utf8_lossy(&d.data).parse().unwrap_or(0);
            let reply_to = d
                .properties
                .reply_to()
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default();
            let _ = seen_tx.send(reply_to.clone());
            let mut props = BasicProperties::default();
            if let Some(id) = d.properties.correlation_id() {
                props = props.with_correlation_id(id.clone());
            }
            let answer = fib(n).to_string();
            let sent = ch
                .basic_publish("", &reply_to, Default::default(), answer.as_bytes(), props)
                .await;
            if sent.is_err() || d.ack(Default::default()).await.is_err() {
                break;
            }
        }
        drop(conn);
    });
    Ok((task, seen_rx))
}

/// Sends fib requests 0..10 with `reply_to`, reads the answers from `replies`.
async fn rpc_calls(
    ch: &Channel,
    queue: &str,
    reply_to: &str,
    replies: &mut Consumer,
) -> Result<()> {
    let mut pending = HashMap::new();
    for n in 0..10u64 {
        let id = format!("{n}-{}", std::process::id());
        let props = BasicProperties::default()
            .with_reply_to(reply_to.into())
            .with_correlation_id(id.as_str().into());
        ch.basic_publish(
            "",
            queue,
            Default::default(),
            n.to_string().as_bytes(),
            props,
        )
        .await?;
        pending.insert(id, fib(n));
    }
    while !pending.is_empty() {
        let d = next(replies, "an RPC reply").await?;
        let id = d
            .properties
            .correlation_id()
            .as_ref()
            .map(|s| s.to_string())
            .ok_or_else(|| anyhow!("a reply without correlation_id"))?;
        let expected = pending
            .remove(&id)
            .ok_or_else(|| anyhow!("a reply with unknown correlation_id {id:?}"))?;
        ensure_eq!(
            String::from_utf8_lossy(&d.data),
            expected.to_string(),
            "fib answer"
        );
    }
    Ok(())
}

/// Tutorial 6: RPC with an exclusive callback queue and correlation ids.
pub async fn rpc(ctx: Arc<Ctx>) -> Result<()> {
    let queue = ctx.queue("rpc_queue");
    let (server, _) = rpc_server(&ctx, &queue).await?;
    let conn = connect(&ctx).await?;
    let ch = channel(&conn).await?;
    let callback = declare_exclusive(&ch).await?;
    let mut replies = consume(&ch, &callback, true).await?;
    let result = rpc_calls(&ch, &queue, &callback, &mut replies).await;
    server.abort();
    result
}

/// Tutorial 6 with direct reply-to: the client consumes `amq.rabbitmq.reply-to` (no-ack) and
/// the server sees a rewritten `amq.rabbitmq.reply-to.…` address it can publish to.
pub async fn rpc_direct_reply_to(ctx: Arc<Ctx>) -> Result<()> {
    const REPLY_TO: &str = "amq.rabbitmq.reply-to";
    let queue = ctx.queue("rpc_queue_drt");
    let (server, mut seen) = rpc_server(&ctx, &queue).await?;
    let conn = connect(&ctx).await?;
    let ch = channel(&conn).await?;
    let mut replies = consume(&ch, REPLY_TO, true).await?;
    let result = rpc_calls(&ch, &queue, REPLY_TO, &mut replies).await;
    server.abort();
    result?;
    let reply_to = seen.recv().await.unwrap_or_default();
    if !reply_to.starts_with("amq.rabbitmq.reply-to.") {
        bail!("the server saw reply_to {reply_to:?}, not a rewritten amq.rabbitmq.reply-to.*");
    }
    Ok(())
}

async fn confirm_channel(ctx: &Ctx, what: &str) -> Result<(Connection, Channel, String)> {
    let conn = connect(ctx).await?;
    let ch = channel(&conn).await?;
    ch.confirm_select(Default::default()).await?;
    let queue = declare(&ch, &ctx.queue(what), Default::default()).await?;
    Ok((conn, ch, queue))
}

async fn message_count(ch: &Channel, queue: &str) -> Result<u32> {
    let opts = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    Ok(ch
        .queue_declare(queue, opts, no_args())
        .await?
        .message_count())
}

/// Publisher confirms, waiting for each one before the next publish.
pub async fn confirms_single(ctx: Arc<Ctx>) -> Result<()> {
    let (conn, ch, queue) = confirm_channel(&ctx, "confirms_single").await?;
    for i in 0..50u32 {
        publish_confirmed(&ch, "", &queue, &i.to_be_bytes(), Default::default()).await?;
    }
    ensure_eq!(
        message_count(&ch, &queue).await?,
        50,
        "messages in the queue"
    );
    conn.close(200, "bye").await?;
    Ok(())
}

/// Publisher confirms, waiting once per batch of 100.
pub async fn confirms_batch(ctx: Arc<Ctx>) -> Result<()> {
    let (conn, ch, queue) = confirm_channel(&ctx, "confirms_batch").await?;
    for batch in 0..5u32 {
        let mut confirms = Vec::new();
        for i in 0..100u32 {
            let body = (batch * 100 + i).to_be_bytes();
            confirms.push(
                ch.basic_publish("", &queue, Default::default(), &body, Default::default())
                    .await?,
            );
        }
        let returned = within("the batch's confirms", ch.wait_for_confirms()).await??;
        ensure_eq!(returned.len(), 0, "returned messages");
        for c in confirms {
            if !c.await?.is_ack() {
                bail!("a message of batch {batch} was nacked");
            }
        }
    }
    ensure_eq!(
        message_count(&ch, &queue).await?,
        500,
        "messages in the queue"
    );
    conn.close(200, "bye").await?;
    Ok(())
}

/// Publisher confirms handled asynchronously: a task collects confirms as they arrive while the
/// publisher goes on; every publish is acked once.
pub async fn confirms_async(ctx: Arc<Ctx>) -> Result<()> {
    const N: u32 = 2000;
    let (conn, ch, queue) = confirm_channel(&ctx, "confirms_async").await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let collector = tokio::spawn(async move {
        let mut acked = 0u32;
        while let Some(confirm) = rx.recv().await {
            let confirm: lapin::publisher_confirm::PublisherConfirm = confirm;
            match confirm.await {
                Ok(c) if c.is_ack() => acked += 1,
                other => return Err(anyhow!("a publish was not acked: {other:?}")),
            }
        }
        Ok(acked)
    });
    for i in 0..N {
        let c = ch
            .basic_publish(
                "",
                &queue,
                Default::default(),
                &i.to_be_bytes(),
                Default::default(),
            )
            .await?;
        tx.send(c)
            .map_err(|_| anyhow!("the confirm collector stopped"))?;
    }
    drop(tx);
    let acked = within("every confirm", collector).await???;
    ensure_eq!(acked, N, "acked publishes");
    ensure_eq!(
        message_count(&ch, &queue).await?,
        N,
        "messages in the queue"
    );
    conn.close(200, "bye").await?;
    Ok(())
}

/// Deleting a queue with a consumer sends basic.cancel (consumer_cancel_notify): lapin ends the
/// consumer's stream, and the channel stays open.
pub async fn consumer_cancel_on_delete(ctx: Arc<Ctx>) -> Result<()> {
    let conn = connect(&ctx).await?;
    let ch = channel(&conn).await?;
    let queue = declare(&ch, &ctx.queue("cancel_me"), Default::default()).await?;
    let mut consumer = consume(&ch, &queue, false).await?;
    let other = channel(&conn).await?;
    other.queue_delete(&queue, Default::default()).await?;
    match within("basic.cancel from the broker", consumer.next()).await? {
        None => {}
        Some(d) => bail!("expected the consumer to be cancelled, got {d:?}"),
    }
    if !ch.status().connected() {
        bail!("the consumer's channel closed after basic.cancel");
    }
    declare(&ch, &ctx.queue("after_cancel"), Default::default())
        .await
        .context("using the channel after the cancel")?;
    conn.close(200, "bye").await?;
    Ok(())
}

/// A mandatory publish with no route comes back as basic.return 312 NO_ROUTE before its ack.
pub async fn mandatory_return(ctx: Arc<Ctx>) -> Result<()> {
    let conn = connect(&ctx).await?;
    let ch = channel(&conn).await?;
    ch.confirm_select(Default::default()).await?;
    let mandatory = BasicPublishOptions {
        mandatory: true,
        ..Default::default()
    };
    let nowhere = ctx.queue("no_such_queue");
    for (exchange, key) in [("", nowhere.as_str()), ("amq.direct", nowhere.as_str())] {
        let props = BasicProperties::default().with_message_id("m-1".into());
        let confirm = ch
            .basic_publish(exchange, key, mandatory, b"undeliverable", props)
            .await?;
        let returned = match within("the confirm", confirm).await?? {
            Confirmation::Ack(Some(m)) => m,
            other => bail!("expected an ack with a returned message, got {other:?}"),
        };
        ensure_eq!(returned.reply_code, 312, "reply code");
        ensure_eq!(returned.reply_text.as_str(), "NO_ROUTE", "reply text");
        ensure_eq!(returned.delivery.exchange.as_str(), exchange, "exchange");
        ensure_eq!(returned.delivery.routing_key.as_str(), key, "routing key");
        ensure_eq!(returned.delivery.data, b"undeliverable".to_vec(), "body");
        ensure_eq!(
            returned
                .delivery
                .properties
                .message_id()
                .as_ref()
                .map(|s| s.as_str()),
            Some("m-1"),
            "message_id"
        );
    }
    conn.close(200, "bye").await?;
    Ok(())
}

/// Redeclaring a queue with other properties closes only that channel with 406.
pub async fn redeclare_406_channel_only(ctx: Arc<Ctx>) -> Result<()> {
    let conn = connect(&ctx).await?;
    let ch1 = channel(&conn).await?;
    let queue = declare(&ch1, &ctx.queue("redeclare"), Default::default()).await?;
    let ch2 = channel(&conn).await?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let err = match ch2.queue_declare(&queue, durable, no_args()).await {
        Ok(_) => bail!("redeclaring a transient queue as durable succeeded"),
        Err(e) => e,
    };
    match &err {
        lapin::Error::ProtocolError(e) => {
            ensure_eq!(e.get_id(), 406, "reply code");
            let text = e.get_message().to_string();
            if !text.starts_with("PRECONDITION_FAILED - inequivalent arg 'durable'") {
                bail!("reply text {text:?}");
            }
        }
        other => bail!("expected a 406 channel close, got {other}"),
    }
    if ch2.status().connected() {
        bail!("the channel that failed is still open");
    }
    if !conn.status().connected() {
        bail!("the connection closed");
    }
    publish(&ch1, "", &queue, b"still here").await?;
    let got = within("basic.get on the other channel", async {
        loop {
            if let Some(m) = ch1
                .basic_get(&queue, BasicGetOptions { no_ack: true })
                .await?
            {
                return Ok::<_, lapin::Error>(m.delivery.data);
            }
        }
    })
    .await??;
    ensure_eq!(got, b"still here".to_vec(), "body on the surviving channel");
    let ch3 = channel(&conn).await?;
    declare(&ch3, &queue, Default::default())
        .await
        .context("a new channel on the same connection")?;
    conn.close(200, "bye").await?;
    Ok(())
}

/// Bodies of several MiB (many body frames), and at the frame boundary, arrive intact.
pub async fn large_message(ctx: Arc<Ctx>) -> Result<()> {
    let conn = connect(&ctx).await?;
    let ch = channel(&conn).await?;
    ch.confirm_select(Default::default()).await?;
    let queue = declare(&ch, &ctx.queue("large"), Default::default()).await?;
    for (i, size) in crate::LARGE_SIZES.into_iter().enumerate() {
        publish_confirmed(&ch, "", &queue, &pattern(size, i as u8), Default::default()).await?;
    }
    let mut consumer = consume(&ch, &queue, false).await?;
    for (i, size) in crate::LARGE_SIZES.into_iter().enumerate() {
        let d = next(&mut consumer, "a large message").await?;
        ensure_eq!(d.data.len(), size, "body length");
        if d.data != pattern(size, i as u8) {
            bail!("the body of {size} bytes came back different");
        }
        d.ack(Default::default()).await?;
    }
    conn.close(200, "bye").await?;
    Ok(())
}

/// A header table with every field type lapin writes faithfully (not `LongLongUInt`, written as
/// `l` and read back signed, nor the short string, which has no type letter in RabbitMQ's
/// reading), nested in a table and an array too.
pub fn all_field_types() -> FieldTable {
    let scalars: Vec<(&str, AMQPValue)> = vec![
        ("bool", AMQPValue::Boolean(true)),
        ("i8", AMQPValue::ShortShortInt(-8)),
        ("u8", AMQPValue::ShortShortUInt(200)),
        ("i16", AMQPValue::ShortInt(-1600)),
        ("u16", AMQPValue::ShortUInt(65_000)),
        ("i32", AMQPValue::LongInt(-320_000)),
        ("u32", AMQPValue::LongUInt(4_000_000_000)),
        ("i64", AMQPValue::LongLongInt(-6_400_000_000_000)),
        ("f32", AMQPValue::Float(1.5)),
        ("f64", AMQPValue::Double(-2.25e100)),
        (
            "decimal",
            AMQPValue::DecimalValue(DecimalValue {
                scale: 2,
                value: 12345,
            }),
        ),
        (
            "string",
            AMQPValue::LongString(LongString::from("héllo wörld")),
        ),
        ("empty", AMQPValue::LongString(LongString::from(""))),
        ("timestamp", AMQPValue::Timestamp(1_700_000_000)),
        (
            "bytes",
            AMQPValue::ByteArray(ByteArray::from(vec![0u8, 1, 254, 255])),
        ),
        ("void", AMQPValue::Void),
    ];
    let mut table = FieldTable::default();
    let mut nested = FieldTable::default();
    let mut array = FieldArray::default();
    for (k, v) in scalars {
        table.insert(k.into(), v.clone());
        nested.insert(k.into(), v.clone());
        array.push(v);
    }
    table.insert("table".into(), AMQPValue::FieldTable(nested));
    table.insert("array".into(), AMQPValue::FieldArray(array));
    table.insert(
        "empty_array".into(),
        AMQPValue::FieldArray(FieldArray::default()),
    );
    table.insert(
        "empty_table".into(),
        AMQPValue::FieldTable(FieldTable::default()),
    );
    table
}

/// Every basic property and every header field type reads back intact.
pub async fn headers_roundtrip(ctx: Arc<Ctx>) -> Result<()> {
    let conn = connect(&ctx).await?;
    let ch = channel(&conn).await?;
    ch.confirm_select(Default::default()).await?;
    let queue = declare(&ch, &ctx.queue("headers"), Default::default()).await?;
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("gzip".into())
        .with_headers(all_field_types())
        .with_delivery_mode(2)
        .with_priority(7)
        .with_correlation_id("corr-1".into())
        .with_reply_to("reply.queue".into())
        .with_expiration("600000".into())
        .with_message_id("msg-1".into())
        .with_timestamp(1_700_000_123)
        .with_type("order.created".into())
        .with_user_id("guest".into())
        .with_app_id("warren-interop".into())
        .with_cluster_id("cluster-a".into());
    publish_confirmed(&ch, "", &queue, b"{}", props.clone()).await?;
    let m = ch
        .basic_get(&queue, BasicGetOptions { no_ack: true })
        .await?
        .ok_or_else(|| anyhow!("the message is not in the queue"))?;
    if m.delivery.properties != props {
        let sent = format!("{props:?}");
        let got = format!("{:?}", m.delivery.properties);
        bail!("properties differ:\n sent {sent}\n got  {got}");
    }
    conn.close(200, "bye").await?;
    Ok(())
}

/// A durable exchange, queue and binding and persistent messages survive a broker restart; the
/// client reconnects and finds them (the transient message is gone).
pub async fn restart_durable(ctx: Arc<Ctx>) -> Result<()> {
    let Some(restart) = ctx.restart.clone() else {
        return Err(Skip("BROKER_RESTART is not set".into()).into());
    };
    let exchange = ctx.exchange("durable");
    let queue = ctx.queue("durable");
    let durable_q = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let durable_x = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let conn = connect(&ctx).await?;
    let ch = channel(&conn).await?;
    ch.confirm_select(Default::default()).await?;
    ch.exchange_declare(&exchange, ExchangeKind::Direct, durable_x, no_args())
        .await?;
    declare(&ch, &queue, durable_q).await?;
    ch.queue_bind(&queue, &exchange, "k", Default::default(), no_args())
        .await?;
    let persistent = BasicProperties::default().with_delivery_mode(2);
    for i in 0..20 {
        let body = format!("persistent {i}");
        publish_confirmed(&ch, &exchange, "k", body.as_bytes(), persistent.clone()).await?;
    }
    publish_confirmed(&ch, &exchange, "k", b"transient", Default::default()).await?;
    restart().await.context("restarting the broker")?;
    // The old connection is gone: the broker closed it (320) or the socket dropped.
    if within("the old connection to notice", async {
        while conn.status().connected() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .is_err()
    {
        bail!("the connection opened before the restart still looks open");
    }
    let conn = retry_connect(|| async { Ok(connect_url(&ctx.url).await?) }).await?;
    let ch = channel(&conn).await?;
    ch.exchange_declare(
        &exchange,
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            passive: true,
            ..durable_x
        },
        no_args(),
    )
    .await
    .context("the durable exchange after the restart")?;
    ensure_eq!(
        message_count(&ch, &queue).await?,
        20,
        "messages in the durable queue after the restart"
    );
    publish(&ch, &exchange, "k", b"after restart").await?;
    let mut expected: Vec<String> = (0..20).map(|i| format!("persistent {i}")).collect();
    expected.push("after restart".into());
    let got = within("the messages", async {
        let mut got = Vec::new();
        while got.len() < expected.len() {
            got.extend(strings(drain(&ch, &queue).await?));
        }
        Ok::<_, anyhow::Error>(got)
    })
    .await??;
    ensure_eq!(
        got,
        expected,
        "messages after the restart (the binding survived too)"
    );
    conn.close(200, "bye").await?;
    Ok(())
}
